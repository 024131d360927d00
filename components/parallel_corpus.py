"""Reading and validating a line-aligned parallel corpus, without TFX.

Line N of the source file translates line N of the target file, and the two files
differ only in the language code of their names (`train.en.003` / `train.ja.003`).
ExampleGen scans each file pair with `scan_pair` before its Beam pipeline writes
anything, then streams the same pairs with `read_pairs`; both share one reader, so
whatever the scan accepts the pipeline reads the same way.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import BinaryIO, Callable, Iterator

# Opens a path for reading bytes; lets callers substitute e.g. TFX's `fileio.open`.
Opener = Callable[[str], BinaryIO]


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")  # pylint: disable=consider-using-with


class CorpusError(ValueError):
    """A parallel corpus that cannot be turned into aligned pairs."""


class LineCountMismatchError(CorpusError):
    """The two sides of a file pair have different numbers of lines."""

    def __init__(self, source: str, source_lines: int, target: str, target_lines: int):
        super().__init__(
            f"{source} has {source_lines} lines but {target} has {target_lines}; "
            "a parallel corpus needs one line per sentence on each side"
        )


class InvalidUtf8Error(CorpusError):
    """A line is not valid UTF-8."""

    def __init__(self, path: str, line_number: int, error: UnicodeDecodeError):
        super().__init__(
            f"{path}, line {line_number}: invalid UTF-8 ({error.reason} at byte {error.start})"
        )


class PatternError(CorpusError):
    """A file name from which the other side's name cannot be derived."""


@dataclasses.dataclass(frozen=True)
class PairCounts:
    """What a file pair yields: `kept` pairs, and pairs dropped for an empty side.

    `empty_source` and `empty_target` count the empty lines of each side (a pair
    empty on both sides counts in both), so a check can name the side at fault.
    """

    kept: int
    dropped_empty: int
    empty_source: int = 0
    empty_target: int = 0


def target_path(source_path: str, source_lang: str, target_lang: str) -> str:
    """Returns the target-side file name: the dot-separated `source_lang` swapped.

    Only the base name is rewritten, and it must contain the code exactly once, so
    that `dev.en` → `dev.ja` never turns into something ambiguous like `en.en`.
    """
    directory, name = os.path.split(source_path)
    parts = name.split(".")
    if parts.count(source_lang) != 1:
        raise PatternError(
            f"{source_path!r} must contain the language code {source_lang!r} exactly once "
            f"as a dot-separated part of its file name (e.g. 'train.{source_lang}')"
        )
    parts[parts.index(source_lang)] = target_lang
    return os.path.join(directory, ".".join(parts))


def _lines(path: str, opener: Opener) -> Iterator[str]:
    """Yields the decoded lines of `path` without surrounding whitespace.

    Splits on b"\\n" only: `str.splitlines` would also break at characters such as
    U+2028 that can occur inside a sentence and would misalign the two sides.
    """
    with opener(path) as lines:
        for number, line in enumerate(lines, start=1):
            try:
                yield line.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                raise InvalidUtf8Error(path, number, error) from None


def _aligned_lines(source: str, target: str, opener: Opener) -> Iterator[tuple[str, str]]:
    """Yields (source, target) line pairs; raises once either file runs out first."""
    source_lines, target_lines = _lines(source, opener), _lines(target, opener)
    for number, (source_line, target_line) in enumerate(
        itertools.zip_longest(source_lines, target_lines), start=1
    ):
        if source_line is None:
            raise LineCountMismatchError(source, number - 1, target, number + sum(1 for _ in target_lines))
        if target_line is None:
            raise LineCountMismatchError(source, number + sum(1 for _ in source_lines), target, number - 1)
        yield source_line, target_line


def read_pairs(
    source: str, target: str, max_pairs: int = 0, opener: Opener = _open_binary
) -> Iterator[tuple[str, str]]:
    """Yields the pairs with both sides non-empty among the first `max_pairs` lines (0: all)."""
    pairs = _aligned_lines(source, target, opener)
    if max_pairs > 0:
        pairs = itertools.islice(pairs, max_pairs)
    return ((s, t) for s, t in pairs if s and t)


def scan_pair(
    source: str, target: str, max_pairs: int = 0, opener: Opener = _open_binary
) -> PairCounts:
    """Validates a whole file pair and counts what `read_pairs` would keep and drop.

    Reads to the end even with `max_pairs`, so a smoke run rejects the same data
    that a full run would.
    """
    kept = dropped = empty_source = empty_target = 0
    for number, (source_line, target_line) in enumerate(
        _aligned_lines(source, target, opener), start=1
    ):
        if max_pairs > 0 and number > max_pairs:
            continue
        empty_source += not source_line
        empty_target += not target_line
        if source_line and target_line:
            kept += 1
        else:
            dropped += 1
    return PairCounts(kept, dropped, empty_source, empty_target)
