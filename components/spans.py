"""Which span files a run reads: data arriving over time as numbered files.

A pattern such as `train.en.{SPAN:3}` names spans `train.en.000`, `train.en.001`, …; a
run reads a window of them that ends at the latest span on disk (or at a chosen one).
This is resolved by the ExampleGen's executor, not by a TFX driver: the Kubeflow
Pipelines v2 compiler replaces the driver of every FileBasedExampleGen with its own
stock one, and the window must mean the same wherever the pipeline runs.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable

# TFX's span spec: {SPAN} (any width) or {SPAN:n} (zero-padded to n digits).
_SPAN_SPEC = re.compile(r"\{SPAN(?::(\d+))?\}")

# Lists the paths matching a glob; lets the ExampleGen use TFX's filesystem layer.
Globber = Callable[[str], list[str]]


class SpanError(ValueError):
    """A span window that the files on disk cannot satisfy."""


@dataclasses.dataclass(frozen=True)
class SpanWindow:
    """The spans a run reads: the latest `spans` of them (0: all), up to `end_span`."""

    spans: int = 0
    # The last span of the window; -1 is the latest span on disk.
    end_span: int = -1

    def __post_init__(self) -> None:
        if self.spans < 0:
            raise ValueError(f"a span window holds 0 (all) or more spans, not {self.spans}")


def has_span_spec(pattern: str) -> bool:
    return bool(_SPAN_SPEC.search(pattern))


def as_glob(pattern: str) -> str:
    """The pattern with its span spec as `*`: every file that may belong to a span."""
    return _SPAN_SPEC.sub("*", pattern)


def _as_regex(pattern: str) -> re.Pattern[str]:
    """Matches the paths of a span pattern, capturing the span number."""
    pieces, last = [], 0
    for spec in _SPAN_SPEC.finditer(pattern):
        pieces.append(re.escape(pattern[last:spec.start()]))
        pieces.append(rf"(\d{{{spec.group(1)}}})" if spec.group(1) else r"(\d+)")
        last = spec.end()
    pieces.append(re.escape(pattern[last:]))
    return re.compile("".join(pieces) + r"\Z")


def available_spans(input_base: str, pattern: str, glob: Globber) -> dict[int, str]:
    """{span number: path} of the files under `input_base` that match a span pattern."""
    path_pattern = os.path.join(input_base, pattern)
    regex = _as_regex(path_pattern)
    found: dict[int, str] = {}
    for path in glob(as_glob(path_pattern)):
        match = regex.match(path)
        if match:
            found[int(match.group(1))] = path
    return found


def select(available: dict[int, str], window: SpanWindow, pattern: str) -> dict[int, str]:
    """The spans of the window, oldest first; fails naming the pattern if none can be read."""
    if not available:
        raise SpanError(f"no file matches the span pattern {pattern!r}")
    end = max(available) if window.end_span < 0 else window.end_span
    if end not in available:
        raise SpanError(f"span {end} of {pattern!r} does not exist; spans on disk: "
                        f"{sorted(available)}")
    chosen = sorted(span for span in available if span <= end)
    if window.spans:
        chosen = chosen[-window.spans:]
    return {span: available[span] for span in chosen}
