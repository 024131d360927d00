"""Reading and validating a line-aligned parallel corpus, without TFX.

Line N of the source file translates line N of the target file, and the two files
differ only in the language code of their names (`train.en.003` / `train.ja.003`).
ExampleGen scans each file pair with `scan_pair` before its Beam pipeline writes
anything. The scan also cuts what is to be read into `Chunk`s — runs of lines, as
byte ranges of both files — which Beam workers then read independently with
`read_chunk`, so a distributed runner can spread one file pair over many workers.
`read_pairs` reads a file pair whole; every reader shares one line splitter and
decoder, so whatever the scan accepts the pipeline reads the same way.
"""
from __future__ import annotations

import dataclasses
import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

# Opens a path for reading bytes; lets callers substitute e.g. TFX's `fileio.open`.
Opener = Callable[[str], BinaryIO]
# A decoded line and its size in bytes (the byte offsets of chunks add these up).
Line = tuple[str, int]


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")  # the caller closes it


class CorpusError(ValueError):
    """A parallel corpus that cannot be turned into aligned pairs."""


class LineCountMismatchError(CorpusError):
    """The two sides of a file pair have different numbers of lines."""

    def __init__(self, source: str, source_lines: int, target: str, target_lines: int) -> None:
        super().__init__(
            f"{source} has {source_lines} lines but {target} has {target_lines}; "
            "a parallel corpus needs one line per sentence on each side"
        )


class InvalidUtf8Error(CorpusError):
    """A line is not valid UTF-8."""

    def __init__(self, path: str, line_number: int, error: UnicodeDecodeError) -> None:
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


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Consecutive line pairs of a file pair: the byte range [start, end) of each side.

    What one worker reads (`read_chunk`); `first_line` (1-based) lets an error name
    the line.
    """

    source: str
    target: str
    source_range: tuple[int, int]
    target_range: tuple[int, int]
    first_line: int


@dataclasses.dataclass(frozen=True)
class PairScan:
    """What `scan_pair` found: the pair's counts, and the chunks that read it."""

    counts: PairCounts
    chunks: tuple[Chunk, ...]


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


def _lines(path: str, raw_lines: Iterable[bytes], first_line: int = 1) -> Iterator[Line]:
    """Yields each line decoded, without surrounding whitespace, and its size in bytes.

    `raw_lines` iterates a binary file or buffer, which splits on b"\\n" only:
    `str.splitlines` would also break at characters such as U+2028 that can occur
    inside a sentence and would misalign the two sides.
    """
    for number, line in enumerate(raw_lines, start=first_line):
        try:
            yield line.decode("utf-8").strip(), len(line)
        except UnicodeDecodeError as error:
            raise InvalidUtf8Error(path, number, error) from None


def _file_lines(path: str, opener: Opener) -> Iterator[Line]:
    with opener(path) as raw_lines:
        yield from _lines(path, raw_lines)


def _range_lines(path: str, byte_range: tuple[int, int], first_line: int, opener: Opener) -> list[str]:
    """The lines in bytes [start, end) of `path`: one seek and one read, wherever it is stored."""
    start, end = byte_range
    with opener(path) as file:
        file.seek(start)
        data = file.read(end - start)
    return [text for text, _ in _lines(path, io.BytesIO(data), first_line)]


def _aligned_lines(source: str, target: str, opener: Opener) -> Iterator[tuple[Line, Line]]:
    """Yields (source, target) line pairs; raises once either file runs out first."""
    source_lines, target_lines = _file_lines(source, opener), _file_lines(target, opener)
    for number, (source_line, target_line) in enumerate(
        itertools.zip_longest(source_lines, target_lines), start=1
    ):
        if source_line is None:
            raise LineCountMismatchError(source, number - 1, target, number + sum(1 for _ in target_lines))
        if target_line is None:
            raise LineCountMismatchError(source, number + sum(1 for _ in source_lines), target, number - 1)
        yield source_line, target_line


def _non_empty(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    return ((s, t) for s, t in pairs if s and t)


def read_pairs(
    source: str, target: str, max_pairs: int = 0, opener: Opener = _open_binary
) -> Iterator[tuple[str, str]]:
    """Yields the pairs with both sides non-empty among the first `max_pairs` lines (0: all).

    Reads the file pair whole, in one process: the reference for what its chunks yield.
    """
    pairs = ((s, t) for (s, _), (t, _) in _aligned_lines(source, target, opener))
    if max_pairs > 0:
        pairs = itertools.islice(pairs, max_pairs)
    return _non_empty(pairs)


def read_chunk(chunk: Chunk, opener: Opener = _open_binary) -> Iterator[tuple[str, str]]:
    """Yields the chunk's pairs with both sides non-empty, as `read_pairs` yields them."""
    source_lines = _range_lines(chunk.source, chunk.source_range, chunk.first_line, opener)
    target_lines = _range_lines(chunk.target, chunk.target_range, chunk.first_line, opener)
    if len(source_lines) != len(target_lines):
        # The scan found the ranges aligned, so a file was changed after it.
        raise CorpusError(
            f"{chunk.source} or {chunk.target} changed after it was scanned: the chunk from "
            f"line {chunk.first_line} now holds {len(source_lines)} and {len(target_lines)} lines")
    return _non_empty(zip(source_lines, target_lines, strict=True))


class _ChunkCutter:
    """Cuts a file pair into chunks of `chunk_lines` lines (0: one chunk) as it is scanned."""

    def __init__(self, source: str, target: str, chunk_lines: int) -> None:
        self._source, self._target, self._chunk_lines = source, target, chunk_lines
        self._chunks: list[Chunk] = []
        self._first_line, self._lines = 1, 0
        self._start = self._end = (0, 0)  # Byte offsets of the current chunk in both files.

    def add(self, source_bytes: int, target_bytes: int) -> None:
        """Extends the current chunk by the next line pair, and cuts it once it is full."""
        self._end = (self._end[0] + source_bytes, self._end[1] + target_bytes)
        self._lines += 1
        if self._lines == self._chunk_lines:
            self._cut()

    def _cut(self) -> None:
        self._chunks.append(Chunk(self._source, self._target, (self._start[0], self._end[0]),
                                  (self._start[1], self._end[1]), self._first_line))
        self._first_line += self._lines
        self._lines, self._start = 0, self._end

    def chunks(self) -> tuple[Chunk, ...]:
        """Every chunk, the last one possibly shorter."""
        if self._lines:
            self._cut()
        return tuple(self._chunks)


def scan_pair(
    source: str, target: str, max_pairs: int = 0, opener: Opener = _open_binary,
    chunk_lines: int = 0,
) -> PairScan:
    """Validates a whole file pair, counts what it yields, and cuts it into chunks.

    The counts are of what `read_pairs` keeps and drops; the chunks of `chunk_lines`
    lines each (0: one chunk) yield the same pairs with `read_chunk`. Reads to the end
    even with `max_pairs`, so a smoke run rejects the same data that a full run would;
    the chunks cover only the first `max_pairs` lines.
    """
    kept = dropped = empty_source = empty_target = 0
    cutter = _ChunkCutter(source, target, chunk_lines)
    for number, ((source_line, source_bytes), (target_line, target_bytes)) in enumerate(
        _aligned_lines(source, target, opener), start=1
    ):
        if max_pairs > 0 and number > max_pairs:
            continue
        cutter.add(source_bytes, target_bytes)
        empty_source += not source_line
        empty_target += not target_line
        if source_line and target_line:
            kept += 1
        else:
            dropped += 1
    return PairScan(PairCounts(kept, dropped, empty_source, empty_target), cutter.chunks())
