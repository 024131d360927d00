"""Features derived from each sentence pair, for the data checks and the evaluation slices.

The schema constrains them (token counts within range, each side written in its
language's script) and compares their distributions between spans; the Evaluator
slices BLEU by the source-length bucket. They are derived once, in ExampleGen, so
every later component sees the same values.
"""
from __future__ import annotations

from enja.preprocessing import features

# Source-length buckets: (label, longest member in whitespace tokens; None: no limit).
# The labels sort in length order; on dev they hold 141, 182, 122 and 55 of 500 sentences.
LENGTH_BUCKETS = (("01-06", 6), ("07-08", 8), ("09-10", 10), ("11+", None))

JAPANESE, LATIN, NO_LETTERS = "japanese", "latin", "none"
# Kana, CJK ideographs, CJK punctuation and full-width forms.
_JAPANESE_RANGES = ((0x3000, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
                    (0xFF00, 0xFFEF))


def _is_japanese(char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in _JAPANESE_RANGES)


def script(text: str) -> str:
    """JAPANESE if any character is Japanese, else LATIN if any is a Latin letter."""
    if any(_is_japanese(char) for char in text):
        return JAPANESE
    if any(char.isalpha() and ord(char) < 0x250 for char in text):
        return LATIN
    return NO_LETTERS


def length_bucket(tokens: int) -> str:
    return next(label for label, longest in LENGTH_BUCKETS if longest is None or tokens <= longest)


def derive(source: str, target: str) -> dict[str, int | str]:
    """The derived features of one pair, by feature name."""
    source_tokens, target_tokens = len(source.split()), len(target.split())
    return {
        features.SOURCE_TOKENS_KEY: source_tokens,
        features.TARGET_TOKENS_KEY: target_tokens,
        features.SOURCE_SCRIPT_KEY: script(source),
        features.TARGET_SCRIPT_KEY: script(target),
        features.SOURCE_LENGTH_BUCKET_KEY: length_bucket(source_tokens),
    }
