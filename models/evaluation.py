"""`enja evaluate`: translate a source file with an exported SavedModel and score it with BLEU.

Only the SavedModel's serving signature is used, so any exported model can be scored
without the project's model code.
"""
from __future__ import annotations

import functools
import time
from typing import Callable, Sequence

import tensorflow as tf

from enja.models import bleu, contract


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as lines:
        return [line.rstrip("\n") for line in lines]


def translate(signature: Callable[..., dict[str, tf.Tensor]], sentences: Sequence[str], batch_size: int) -> list[str]:
    """Translates `sentences` through a serving signature, `batch_size` at a time."""
    translations: list[str] = []
    for start in range(0, len(sentences), batch_size):
        batch = tf.constant(sentences[start : start + batch_size], dtype=tf.string)
        outputs = signature(**{contract.TEXT_INPUT: batch})
        translations.extend(text.decode("utf-8") for text in outputs[contract.TRANSLATIONS_OUTPUT].numpy())
    return translations


def evaluate_saved_model(model_dir: str, src_file: str, ref_file: str, batch_size: int = 64,
                         beam_width: int | None = None) -> dict:
    """Scores the model's translations of `src_file` against `ref_file` (one sentence a line).

    `beam_width` None decodes as serving_default does; a width goes through the
    `translate_with_options` signature, to compare widths on one exported model.
    Returns corpus BLEU (sacreBLEU, 0–100), the seed article's BLEU (0–1), the number of
    sentences and the translation wall time in seconds (model loading excluded).
    """
    sources = _read_lines(src_file)
    references = _read_lines(ref_file)
    if len(sources) != len(references):
        raise ValueError(
            f"Source and reference files differ in length: {src_file} has {len(sources)} lines, "
            f"{ref_file} has {len(references)}."
        )
    if not sources:
        raise ValueError(f"{src_file} has no sentences to translate.")
    model = tf.saved_model.load(model_dir)  # Keep a reference: the signature uses the model's resources.
    if beam_width is None:
        signature = model.signatures[contract.SERVING_SIGNATURE]
    else:
        signature = functools.partial(
            model.signatures[contract.OPTIONS_SIGNATURE],
            **{contract.BEAM_WIDTH_INPUT: tf.constant(beam_width, tf.int32)})
    start = time.perf_counter()
    hypotheses = translate(signature, sources, batch_size)
    seconds = time.perf_counter() - start
    return {
        "bleu": bleu.corpus_bleu(hypotheses, references),
        "seed_bleu": bleu.seed_bleu(hypotheses, references),
        "sentences": len(sources),
        "seconds": seconds,
    }
