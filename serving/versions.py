"""Which versions of a model are served, following TF Serving's file-system source and its
availability-preserving policy.

Versions are the numeric folders under the model's base path; its
model_version_policy says which of them are aspired (the newest N, specific
ones, or all). A newly aspired version is loaded and replays its warm-up
requests before any version that is no longer aspired is dropped, and the
version labels move in the same step as the drop, so a new push, a rollback or
a broken version never leaves the model (or a label) unavailable. A failed load
is retried, as TF Serving does, up to `max_load_retries` times at least
`load_retry_interval_s` apart; the version stays LOADING until it loads or its
retries are spent. A version folder is not loaded before its graph file
(saved_model.pb or .pbtxt) is there: TFX's Pusher copies straight into the
numbered folder and writes saved_model.pb last, as the sign that the version is
whole, so a push caught half-way waits for the next poll instead of failing a
load and waiting out a retry interval. Retries cover writers that do not keep
that order. A dropped version's
memory goes back to the operating system once the last request holding it ends
(serving/memory.py).
"""
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from enja.serving.errors import not_found
from enja.serving.loader import LoadedModel
from enja.serving.memory import DroppedVersions
from enja.serving.model_config import ModelConfig, check_labels
from enja.serving.periodic import Periodic
from enja.serving.served import aspired_versions, versions_on_disk

State = get_model_status_pb2.ModelVersionStatus.State
log = logging.getLogger(__name__)
GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")  # a SavedModel holds one of them


@dataclasses.dataclass
class VersionStatus:
    state: int = State.START
    error: str = ""  # why the last load failed, if it did
    failures: int = 0  # failed loads so far
    retry_at: float = 0.0  # time.monotonic() before which it is not loaded again


def check_served_labels(model: ModelConfig) -> None:
    """Every label must name a version the policy serves among those on disk now."""
    check_labels(model, aspired_versions(model.model_version_policy, versions_on_disk(model.base_path)))


class VersionManager:
    """Loads, publishes and drops versions of one model as its ModelConfig asks; lookups are
    lock-protected."""

    def __init__(self, config: ModelConfig, load: Callable[[str, int], LoadedModel],
                 poll_interval_s: float = 1.0,
                 max_load_retries: int = 5, load_retry_interval_s: float = 60.0,
                 on_round: Callable[[], None] = lambda: None) -> None:
        """`on_round` is called after each poll or reconfiguration, so health and metrics follow
        availability."""
        # What is asked for; its labels go live once the round that loads their versions ends.
        self._config = config
        self._load = load
        self._max_failures = 1 + max_load_retries
        self._retry_interval_s = load_retry_interval_s
        self._lock = threading.Lock()  # guards what requests read: _available, _statuses, _labels
        self._round_lock = threading.Lock()  # one poll or reconfiguration at a time
        self._available: dict[int, LoadedModel] = {}
        self._statuses: dict[int, VersionStatus] = {}
        self._labels: dict[str, int] = {}
        self._on_round = on_round
        self._dropped = DroppedVersions()
        self._periodic = Periodic(self.poll, poll_interval_s, name=f"version-poller {config.name}")

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def model_dir(self) -> str:
        """The folder holding the numbered versions (the config's base_path)."""
        return self._config.base_path

    def configure(self, config: ModelConfig) -> None:
        """Follow a new base path, policy and labels; returns once newly aspired versions serve (or
        failed)."""
        with self._round_lock:
            self._config = config
            self._round()
            self._dropped.release_gone()
        self._on_round()

    def poll(self) -> None:
        """One round: load aspired versions that are not yet served, then drop the ones no longer aspired."""
        with self._round_lock:
            self._round()
            self._dropped.release_gone()
        self._on_round()

    def _round(self) -> None:
        config = self._config
        aspired = aspired_versions(config.model_version_policy, versions_on_disk(config.base_path))
        for version in reversed(aspired):  # newest first: it is what unversioned requests get
            with self._lock:
                status = self._statuses.setdefault(version, VersionStatus())
            if (version not in self._available and status.failures < self._max_failures
                    and time.monotonic() >= status.retry_at and self._graph_written(version)):
                self._try_load(version, status)
        with self._lock:
            self._labels = dict(config.version_labels)
            if not any(version in self._available for version in aspired):
                return  # keep serving what we have until an aspired version serves
            for version in set(self._available) - set(aspired):
                # In-flight requests keep their reference; the session closes when the last one ends.
                self._dropped.add(self._available.pop(version))
                self._statuses[version] = VersionStatus(State.END)
                log.info("unloaded %s version %d", self.model_dir, version)

    def _graph_written(self, version: int) -> bool:
        """Whether the version's graph file has landed, the last file TFX's Pusher copies."""
        path = tf.io.gfile.join(self.model_dir, str(version))
        return any(tf.io.gfile.exists(tf.io.gfile.join(path, name)) for name in GRAPH_FILES)

    def _try_load(self, version: int, status: VersionStatus) -> None:
        with self._lock:
            status.state = State.LOADING
        path = tf.io.gfile.join(self.model_dir, str(version))
        try:
            model = self._load(path, version)
        except Exception as error:  # any failure, including a corrupt saved_model.pb, just fails this version
            with self._lock:
                status.failures += 1
                status.error = f"{type(error).__name__}: {error}"
                status.retry_at = time.monotonic() + self._retry_interval_s
                status.state = State.LOADING if status.failures < self._max_failures else State.END
            log.warning("version %d of %s failed to load (attempt %d of %d): %s", version, self.model_dir,
                        status.failures, self._max_failures, status.error)
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
        # TF Serving's words; never the server's folders, which are no business of a client.
        wanted = f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"
        raise not_found(f"Servable not found for request: {wanted}")

    def _label(self, label: str) -> int:
        """The version a label names (caller holds the lock); NOT_FOUND naming an undefined label."""
        if label not in self._labels:
            raise not_found(f"Unrecognized servable version label: {label} "
                            f"(model '{self.name}' has labels {sorted(self._labels)})")
        return self._labels[label]

    def label_version(self, label: str) -> int:
        with self._lock:
            return self._label(label)

    def get_labeled(self, label: str) -> LoadedModel:
        """The version a label names, looked up in one step so that moving a label never fails a request."""
        with self._lock:
            version = self._label(label)
            if version in self._available:
                return self._available[version]
        raise not_found(f"Servable not found for request: Specific({self.name}, {version}) (label '{label}')")

    def available_versions(self) -> list[int]:
        with self._lock:
            return sorted(self._available)

    def statuses(self) -> dict[int, VersionStatus]:
        with self._lock:
            return {version: dataclasses.replace(status) for version, status in self._statuses.items()}

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
