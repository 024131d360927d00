"""A daemon thread that calls a function every N seconds until stopped.

The version managers poll the model folders and the config poller the config file
this way; an exception in one round is logged and the next round still comes, as a
flaky file system must not end polling.
"""
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, function: Callable[[], None], interval_s: float, name: str) -> None:
        self._function = function
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._function()
            except Exception:  # a failed round is logged and retried: the thread must live
                log.exception("%s failed; trying again in %s s", self._thread.name, self._interval_s)
