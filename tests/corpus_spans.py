"""Span files for tests: the first pairs of the real spans, and spans made bad on purpose."""
from __future__ import annotations

import pathlib
from typing import Callable

from enja.pipeline import data

Lines = list[str]


def real_pairs(span: int, count: int) -> tuple[Lines, Lines]:
    """The first `count` pairs of a real span of the corpus ($ENJA_DATA_ROOT)."""
    root = pathlib.Path(data.resolve_data_root(None))
    sides = [(root / f"train.{lang}.{span:03d}").read_text(encoding="utf-8").splitlines()[:count]
             for lang in ("en", "ja")]
    return sides[0], sides[1]


def write_span(root: pathlib.Path, span: int, en: Lines, ja: Lines) -> None:
    for lang, lines in (("en", en), ("ja", ja)):
        (root / f"train.{lang}.{span:03d}").write_text("".join(f"{line}\n" for line in lines),
                                                        encoding="utf-8")


def write_dev(root: pathlib.Path, count: int) -> None:
    """The first `count` dev pairs of the corpus."""
    source = pathlib.Path(data.resolve_data_root(None))
    for lang in ("en", "ja"):
        lines = (source / f"dev.{lang}").read_text(encoding="utf-8").splitlines()[:count]
        (root / f"dev.{lang}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _joined_in_threes(lines: Lines) -> Lines:
    """Each line followed by the next two: sentences about three times the corpus's length."""
    return [" ".join(lines[(i + k) % len(lines)] for k in range(3)) for i in range(len(lines))]


# Ways to spoil a span, each the way the data would arrive in real life.
BAD_SPANS: dict[str, Callable[[Lines, Lines], tuple[Lines, Lines]]] = {
    # The two files of the span exchanged.
    "swapped": lambda en, ja: (ja, en),
    # Sentences far longer than the corpus's (still aligned and in the right languages).
    "long": lambda en, ja: (_joined_in_threes(en), _joined_in_threes(ja)),
    # Nine in ten Japanese lines lost.
    "mostly_empty_ja": lambda en, ja: (en, [line if i % 10 == 0 else "" for i, line in enumerate(ja)]),
}
