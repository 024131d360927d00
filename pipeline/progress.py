"""Which step of a local run is running, and about how long the run has left.

TFX's LocalDagRunner runs the components one after another and logs each one's start and end;
this listens to those two records. A step's time left is estimated from the same step in the
last run recorded in this output folder's ML Metadata (a first run has no estimates, only the
time each step has taken). The Trainer shows its own epochs and steps
(models/training/progress.py), so the line stays still while it trains.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence

from absl import logging as absl_logging

from enja.components import names
from enja.models.training.progress import ProgressLine, duration

# What TFX's local runner logs (absl, on the "absl" logger) around each component.
_RUNNING, _FINISHED = "Component %s is running.", "Component %s is finished."
TICK_S = 1.0
# Steps that report their own progress on the line.
SELF_REPORTING = frozenset({names.TRAINER})


class StageProgress(logging.Handler):
    """Follows TFX's component records and keeps the progress line about the running step."""

    def __init__(self, node_ids: Sequence[str], estimates: dict[str, float], line: ProgressLine) -> None:
        super().__init__()
        self._node_ids, self._estimates, self._line = list(node_ids), estimates, line
        self._running: str | None = None
        self._started = 0.0
        self._finished: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg not in (_RUNNING, _FINISHED) or not record.args:
            return
        node_id = str(record.args[0])
        if record.msg == _RUNNING:
            self._running, self._started = node_id, time.monotonic()
            # A step that reports itself starts on a line of its own, below this one.
            show = self._line.done if node_id in SELF_REPORTING else self._line.show
            show(self._describe(node_id, started=True))
        else:
            self._finished.add(node_id)
            self._running = None
            self._line.done(self._describe(node_id, took=time.monotonic() - self._started))

    def _left(self, node_id: str, elapsed: float | None = None) -> float | None:
        """Seconds the run has left: after `node_id` finished, or `elapsed` into it; None unless
        every step left has an estimate."""
        later = [n for n in self._node_ids if n not in self._finished and n != node_id]
        running = [node_id] if elapsed is not None else []
        if any(n not in self._estimates for n in running + later):
            return None
        now = max(0.0, self._estimates[node_id] - elapsed) if running else 0.0
        return now + sum(self._estimates[n] for n in later)

    def _describe(self, node_id: str, started: bool = False, took: float | None = None,
                  elapsed: float = 0.0) -> str:
        number = self._node_ids.index(node_id) + 1 if node_id in self._node_ids else 0
        text = f"[{number:>2}/{len(self._node_ids)}] {node_id}"
        if took is not None:
            text += f" took {duration(took)}"
            left = self._left(node_id)
            return text + (f" · the run about {duration(left)} left" if left else "")
        estimate = self._estimates.get(node_id)
        if started:
            return text + (f" (last time {duration(estimate)})" if estimate is not None else "")
        text += f" {duration(elapsed)}" + (f" of about {duration(estimate)}" if estimate else "")
        left = self._left(node_id, elapsed)
        return text + (f" · the run about {duration(left)} left" if left is not None else "")

    def tick(self) -> None:
        """Shows how long the running step has run, unless it reports its own progress."""
        node_id = self._running
        if node_id is not None and node_id not in SELF_REPORTING:
            self._line.update(self._describe(node_id, elapsed=time.monotonic() - self._started))


class _PassOn(logging.Handler):
    """Hands the absl records the terminal showed before (WARNING and up, by default) to the
    root logger's handlers, as propagation did."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


@contextlib.contextmanager
def reporting(node_ids: Sequence[str], estimates: dict[str, float],
              line: ProgressLine | None = None) -> Iterator[StageProgress]:
    """Shows the run's progress while the block runs the pipeline."""
    stages = StageProgress(node_ids, estimates, line or ProgressLine())
    # TFX logs the components' start and end at INFO, which the absl logger drops by default:
    # it takes INFO for the progress alone, and hands on only what it showed before. The level is
    # set through absl's verbosity, which TensorFlow saves and restores around a SavedModel save.
    absl_logger = logging.getLogger("absl")
    saved = absl_logging.get_verbosity(), absl_logger.propagate
    pass_on = _PassOn(absl_logger.getEffectiveLevel())
    if absl_logger.getEffectiveLevel() > logging.INFO:
        absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger.propagate = False
    absl_logger.addHandler(stages)
    absl_logger.addHandler(pass_on)
    stopped = threading.Event()

    def tick() -> None:
        while not stopped.wait(TICK_S):
            stages.tick()

    ticker = threading.Thread(target=tick, name="progress", daemon=True)
    ticker.start()
    try:
        yield stages
    finally:
        stopped.set()
        ticker.join()
        absl_logger.removeHandler(stages)
        absl_logger.removeHandler(pass_on)
        absl_logging.set_verbosity(saved[0])
        absl_logger.propagate = saved[1]
