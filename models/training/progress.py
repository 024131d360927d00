"""Progress of long work as one line, with the time it has left: rewritten in place on a
terminal, a line every few minutes in a log.

An epoch of the default preset trains for minutes and a pipeline run for an hour; a user
watching a terminal wants to see it move and know when it ends, while a log (a file, a pipe,
Kubeflow's container output) wants a few lines, not one per step. The line goes to stderr,
so stdout keeps only results.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import keras

# In a log, the least time between two lines about the same work.
LOG_INTERVAL_S = 120.0
# On a terminal, the least time between two rewrites of the line.
REDRAW_INTERVAL_S = 0.25


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "42 s", "3:05", "1:02:10"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressLine:
    """One line of progress: `update` shows where the work is, `done` what it finished."""

    def __init__(self, stream: TextIO | None = None, log_interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream or sys.stderr
        self._terminal = self._stream.isatty()
        self._log_interval_s = log_interval_s
        self._clock = clock
        self._last_written = -float("inf")
        self._lock = threading.Lock()  # a ticker thread and the work may both write

    def update(self, text: str) -> None:
        """Shows `text` in place of the last update: on a terminal a few times a second at
        most, in a log only if the last line is `log_interval_s` old."""
        with self._lock:
            interval = REDRAW_INTERVAL_S if self._terminal else self._log_interval_s
            if self._clock() - self._last_written >= interval:
                self._write(text)

    def show(self, text: str) -> None:
        """Shows `text` at once, in place of the last update (in a log, as a line)."""
        with self._lock:
            self._write(text)

    def _write(self, text: str) -> None:
        self._last_written = self._clock()
        self._stream.write(f"\r\x1b[K{text}" if self._terminal else f"{text}\n")
        self._stream.flush()

    def done(self, text: str) -> None:
        """Writes `text` as a line of its own, replacing the update a terminal shows."""
        with self._lock:
            self._write(text)
            if self._terminal:
                self._stream.write("\n")
                self._stream.flush()


class EpochProgress(keras.callbacks.Callback):
    """Training's place and what is left of it: the epoch, the step, the running loss, and the
    time left in the epoch and in the whole training.

    Epochs after the first are estimated from the first's time, validation included; early
    stopping may end training sooner than the estimate.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, line: ProgressLine,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._epochs, self._steps = epochs, steps_per_epoch
        self._line, self._clock = line, clock
        self._epoch = 0
        self._epoch_started = 0.0
        self._paced_from = (0.0, 0)  # (time, step) the epoch's pace is measured from
        self._epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch, self._epoch_started = epoch, self._clock()
        self._paced_from = (self._epoch_started, 0)

    def _left_after_this_epoch(self) -> float | None:
        """From the epochs after the first once there are some: the first also builds the step."""
        if not self._epoch_seconds:
            return None
        typical = self._epoch_seconds[1:] or self._epoch_seconds
        return sum(typical) / len(typical) * (self._epochs - self._epoch - 1)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step, now = batch + 1, self._clock()
        loss = (logs or {}).get("loss")
        text = (f"training: epoch {self._epoch + 1}/{self._epochs}, step {step}/{self._steps}"
                + (f", loss {loss:.3f}" if loss is not None else ""))
        if self._epoch == 0 and step == 1:  # the very first step also builds the graph
            self._paced_from = (now, 1)
            self._line.update(text)
            return
        since, from_step = self._paced_from
        per_step = (now - since) / (step - from_step)
        epoch_left = per_step * (self._steps - step)
        later = self._left_after_this_epoch()
        if later is None:  # the first epoch: its own pace, validation not yet measured
            later = per_step * self._steps * (self._epochs - self._epoch - 1)
        self._line.update(f"{text} · epoch {duration(epoch_left)} left, "
                          f"training about {duration(epoch_left + later)} left")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = self._clock() - self._epoch_started
        self._epoch_seconds.append(seconds)
        logs = logs or {}
        measured = ", ".join(f"{label} {logs[key]:{digits}}" for key, label, digits in (
            ("loss", "loss", ".3f"), ("val_loss", "dev loss", ".3f"), ("val_bleu", "dev BLEU", ".1f"))
            if key in logs)
        left = self._left_after_this_epoch()
        self._line.done(f"training: epoch {epoch + 1}/{self._epochs} took {duration(seconds)}: {measured}"
                        + (f" · about {duration(left)} left" if left else ""))
