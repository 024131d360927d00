"""The batcher answers callers whose deadline passed at once, and never runs their rows."""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from enja.serving.batcher import Batcher
from enja.serving.batching_config import BatchOptions
from enja.serving.errors import ServingError

# One worker, and batches that wait half a second to fill: long enough for a deadline to pass.
SLOW_BATCHES = BatchOptions(max_batch_size=8, batch_timeout_s=0.5, num_batch_threads=1)
# Batches that wait far longer than any test: they run when the batcher closes.
HELD_BATCHES = BatchOptions(max_batch_size=8, batch_timeout_s=60.0, num_batch_threads=1)
KEY = ("model", "signature")


class RecordingRun:
    """A run function that remembers the rows and the deadline of each batch it ran."""

    def __init__(self):
        self.batches: list[tuple[list[int], float | None]] = []

    def __call__(self, inputs, deadline):
        self.batches.append((inputs["x"].tolist(), deadline))
        return {"y": inputs["x"] * 2}


def _submit(batcher: Batcher, run: RecordingRun, value: int, deadline: float | None,
            results: dict) -> threading.Thread:
    def call():
        try:
            results[value] = batcher.run(KEY, {"x": np.array([value])}, run, deadline)["y"].tolist()
        except ServingError as error:
            results[value] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_caller_whose_deadline_passes_in_the_queue_is_answered_then_and_left_out():
    """Batches here wait a minute to fill, so the expired caller can only have been answered without
    its batch; closing the batcher then runs what is queued."""
    batcher, run, results = Batcher(HELD_BATCHES), RecordingRun(), {}
    try:
        expiring = _submit(batcher, run, 1, time.monotonic() + 0.1, results)
        waiting = _submit(batcher, run, 2, None, results)
        expiring.join(30)
        assert not expiring.is_alive(), "the caller waited for the batch past its deadline"
        assert run.batches == [] and 2 not in results  # no batch has run yet
    finally:
        batcher.close()
    waiting.join(30)
    expired = results[1]
    assert isinstance(expired, ServingError) and expired.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert results[2] == [4]
    assert run.batches == [([2], None)]  # the expired row was never run


def test_a_batch_runs_within_the_latest_deadline_of_its_callers():
    batcher, run, results = Batcher(SLOW_BATCHES), RecordingRun(), {}
    now = time.monotonic()
    try:
        threads = [_submit(batcher, run, value, now + seconds, results)
                   for value, seconds in ((1, 5.0), (2, 9.0))]
        for thread in threads:
            thread.join(5)
    finally:
        batcher.close()
    [(rows, deadline)] = run.batches
    assert sorted(rows) == [1, 2] and deadline == pytest.approx(now + 9.0)
    assert (results[1], results[2]) == ([2], [4])


def test_a_caller_already_past_its_deadline_queues_nothing():
    batcher, run = Batcher(SLOW_BATCHES), RecordingRun()
    try:
        with pytest.raises(ServingError) as raised:
            batcher.run(KEY, {"x": np.array([1])}, run, time.monotonic() - 1)
    finally:
        batcher.close()
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and run.batches == []
