"""Which versions of a model are served, following TF Serving's file-system source.

Versions are the numeric folders under <base>/<model>/. The newest
`num_versions` are aspired; a new version is published only after it loaded
and replayed its warm-up requests, and only then is an older one dropped, so
a broken push never leaves the model unavailable. Failed loads are retried on
later polls, a bounded number of times (a push may still be copying).
"""
import dataclasses
import logging
import threading
from collections.abc import Callable

import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from enja.serving.errors import not_found
from enja.serving.loader import LoadedModel

State = get_model_status_pb2.ModelVersionStatus.State
log = logging.getLogger(__name__)


@dataclasses.dataclass
class VersionStatus:
    state: int = State.START
    error: str = ""  # why the version ended, if it failed
    attempts: int = 0


class VersionManager:
    """Loads, publishes and drops versions of one model; lookups are lock-protected."""

    def __init__(self, model_dir: str, load: Callable[[str, int], LoadedModel], poll_interval_s: float = 1.0,
                 num_versions: int = 1, max_load_retries: int = 5):
        self.model_dir = model_dir
        self._load = load
        self._poll_interval_s = poll_interval_s
        self._num_versions = num_versions
        self._max_attempts = 1 + max_load_retries
        self._lock = threading.Lock()
        self._available: dict[int, LoadedModel] = {}
        self._statuses: dict[int, VersionStatus] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name="version-poller", daemon=True)

    def on_disk(self) -> list[int]:
        if not tf.io.gfile.isdir(self.model_dir):
            return []
        return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(self.model_dir)
                      if name.rstrip("/").isdigit())

    def poll(self) -> None:
        """One round: load aspired versions that are not yet served, then drop surplus ones."""
        found = self.on_disk()
        for version in found[-self._num_versions:]:
            with self._lock:
                status = self._statuses.setdefault(version, VersionStatus())
            if version in self._available or status.attempts >= self._max_attempts:
                continue
            self._try_load(version, status)
        with self._lock:
            candidates = sorted(v for v in self._available if v in found) or sorted(self._available)
            for version in set(self._available) - set(candidates[-self._num_versions:]):
                # In-flight requests keep their reference; the session closes when the last one ends.
                del self._available[version]
                self._statuses[version] = VersionStatus(State.END)
                log.info("unloaded %s version %d", self.model_dir, version)

    def _try_load(self, version: int, status: VersionStatus) -> None:
        with self._lock:
            status.attempts += 1
            status.state = State.LOADING
        path = tf.io.gfile.join(self.model_dir, str(version))
        try:
            model = self._load(path, version)
        except Exception as error:  # any failure, including a corrupt saved_model.pb, just fails this version
            with self._lock:
                status.state, status.error = State.END, f"{type(error).__name__}: {error}"
            log.warning("version %d of %s failed to load (attempt %d): %s",
                        version, self.model_dir, status.attempts, status.error)
            return
        with self._lock:
            self._available[version] = model
            status.state, status.error = State.AVAILABLE, ""
        log.info("serving %s version %d", self.model_dir, version)

    def get(self, version: int | None = None) -> LoadedModel:
        """The named version, or the newest available one; NOT_FOUND otherwise."""
        with self._lock:
            if version is None and self._available:
                return self._available[max(self._available)]
            if version in self._available:
                return self._available[version]
        wanted = "latest version" if version is None else f"version {version}"
        raise not_found(f"Servable not found: {wanted} of {self.model_dir} is not available")

    def statuses(self) -> dict[int, VersionStatus]:
        with self._lock:
            return {version: dataclasses.replace(status) for version, status in self._statuses.items()}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _poll_forever(self) -> None:
        while not self._stopped.wait(self._poll_interval_s):
            try:
                self.poll()
            except Exception:  # a flaky file system must not end polling
                log.exception("polling %s failed", self.model_dir)
