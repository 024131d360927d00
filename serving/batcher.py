"""Server-side batching: concurrent Predict calls share one session run.

A decoder step costs nearly the same for one sentence as for thirty-two, so
merging requests is what lets throughput grow with concurrency. Requests are
grouped by what they run (model version, signature, outputs, trailing input
shapes); a group is run when it reaches `max_batch_size` rows or its oldest
request has waited `batch_timeout_s`. A request whose deadline passes while it waits is
answered DEADLINE_EXCEEDED at once and left out of its batch, and a batch's run is bounded by
the latest deadline in it.
"""
import collections
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
import numpy as np

from enja.serving.batching_config import BatchOptions
from enja.serving.errors import ServingError, seconds_left

Arrays = dict[str, np.ndarray]
# Runs a batch's inputs within a deadline (a time.monotonic() value; None: none).
RunFn = Callable[[Arrays, float | None], Arrays]


def _expired_in_queue() -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded while waiting for a batch")


class _Task:
    def __init__(self, inputs: Arrays, rows: int, deadline: float | None) -> None:
        self.inputs = inputs
        self.rows = rows
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.future: futures.Future = futures.Future()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and self.deadline <= now


class Batcher:
    """Queues of tasks keyed by what they run, drained by `num_batch_threads` workers."""

    def __init__(self, options: BatchOptions) -> None:
        self._options = options
        self._queues: dict[tuple, collections.deque[_Task]] = {}
        self._run_fns: dict[tuple, RunFn] = {}
        self._queued_rows = 0
        self._closed = False
        self._cond = threading.Condition()
        self._workers = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for worker in self._workers:
            worker.start()

    def run(self, key: tuple, inputs: Arrays, run_fn: RunFn, deadline: float | None = None) -> Arrays:
        """Run `inputs` (all with the same leading batch size) as part of a batch; block for the
        result until `deadline` (a time.monotonic() value) at the latest.

        `key` must identify what `run_fn` runs; requests are merged only with equal keys and row shapes.
        """
        seconds_left(deadline)
        rows = len(next(iter(inputs.values())))
        group = key + tuple(sorted((alias, array.shape[1:]) for alias, array in inputs.items()))
        task = _Task(inputs, rows, deadline)
        with self._cond:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            if self._queued_rows + rows > self._options.max_enqueued_batches * self._options.max_batch_size:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "batch queue is full, retry later")
            self._queues.setdefault(group, collections.deque()).append(task)
            self._run_fns[group] = run_fn
            self._queued_rows += rows
            self._cond.notify()
        try:
            return task.future.result(timeout=seconds_left(deadline))
        except futures.TimeoutError:  # a worker that takes the task later leaves it out
            raise _expired_in_queue() from None

    def close(self) -> None:
        """Run what is queued, then stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()

    def _take_batch(self) -> tuple[RunFn, list[_Task]] | None:
        with self._cond:
            while True:
                now, wait = time.monotonic(), None
                for key, queue in self._queues.items():
                    deadline = queue[0].enqueued + self._options.batch_timeout_s
                    full = sum(task.rows for task in queue) >= self._options.max_batch_size
                    if self._closed or deadline <= now or full:
                        return self._run_fns[key], self._pop(key)
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                if self._closed:
                    return None
                self._cond.wait(wait)

    def _pop(self, key: tuple) -> list[_Task]:
        """Up to max_batch_size rows from the front of one queue (a single larger task goes alone)."""
        queue, tasks, rows = self._queues[key], [], 0
        while queue and (not tasks or rows + queue[0].rows <= self._options.max_batch_size):
            tasks.append(queue.popleft())
            rows += tasks[-1].rows
        if not queue:
            del self._queues[key], self._run_fns[key]
        self._queued_rows -= rows
        return tasks

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._run(*batch)
            del batch  # an idle worker must not keep the last batch's version (perhaps swapped out) alive

    def _run(self, run_fn: RunFn, tasks: list[_Task]) -> None:
        """Run one batch and hand each task its rows of the outputs; a failure fails the batch's
        tasks only."""
        now = time.monotonic()
        for task in tasks:
            if task.expired(now):
                task.future.set_exception(_expired_in_queue())
        tasks = [task for task in tasks if not task.expired(now)]
        if not tasks:
            return
        deadlines = [task.deadline for task in tasks]
        try:
            inputs = {alias: np.concatenate([t.inputs[alias] for t in tasks]) for alias in tasks[0].inputs}
            outputs = run_fn(inputs, None if None in deadlines else max(deadlines))
            total = sum(t.rows for t in tasks)
            bad = [key for key, array in outputs.items() if np.ndim(array) == 0 or len(array) != total]
            if bad:
                raise ServingError(grpc.StatusCode.INTERNAL,
                                   f"outputs {bad} have no batch dimension, so batches cannot be split")
            splits = np.cumsum([t.rows for t in tasks])[:-1]
            parts = {key: np.split(array, splits) for key, array in outputs.items()}
            for i, task in enumerate(tasks):
                task.future.set_result({key: part[i] for key, part in parts.items()})
        except Exception as error:  # the batch's requests fail; the worker lives on
            for task in tasks:
                task.future.set_exception(error)
