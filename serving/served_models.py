"""The models a server serves, as its ModelServerConfig says, and changes to that config.

A new config is checked in full, labels against the versions on disk included,
before anything changes, so a bad one is rejected and the config in force
stays. Applying one reconfigures each listed model (newly aspired versions load
and warm up before the others are dropped), adds new models and drops the
models no longer listed.
"""
import threading
from collections.abc import Callable

from tensorflow_serving.apis import model_pb2

from enja.serving.errors import not_found
from enja.serving.loader import LoadedModel
from enja.serving.model_config import ModelConfig, ModelServerConfig, check_model_config
from enja.serving.versions import VersionManager, check_served_labels

NewManager = Callable[[ModelConfig], VersionManager]


def check_config(config: ModelServerConfig) -> None:
    """Raise ModelConfigError if the config cannot be served now (base paths must be resolved)."""
    check_model_config(config)
    for model in config.model_config_list.config:
        check_served_labels(model)


class ServedModels:
    """Maps a request's ModelSpec to a loaded version of one of the configured models."""

    def __init__(self, config: ModelServerConfig, new_manager: NewManager) -> None:
        check_config(config)
        self._new_manager = new_manager
        self._apply_lock = threading.Lock()  # one config change at a time
        # Replaced, never mutated, so request threads read it without a lock.
        self._managers = {model.name: new_manager(model) for model in config.model_config_list.config}

    @property
    def managers(self) -> dict[str, VersionManager]:
        return dict(self._managers)

    def start(self) -> None:
        """Load what the config asks for (before the server takes calls, like TF Serving), then poll."""
        for manager in self._managers.values():
            manager.poll()
            manager.start()

    def stop(self) -> None:
        for manager in self._managers.values():
            manager.stop()

    def apply(self, config: ModelServerConfig) -> None:
        """Serve as a new config says, or raise ModelConfigError and change nothing."""
        with self._apply_lock:
            check_config(config)
            wanted = {model.name: model for model in config.model_config_list.config}
            kept = {name: manager for name, manager in self._managers.items() if name in wanted}
            for name, manager in kept.items():
                manager.configure(wanted[name])
            added = {name: self._new_manager(model) for name, model in wanted.items() if name not in kept}
            for manager in added.values():
                manager.poll()
                manager.start()
            dropped = [manager for name, manager in self._managers.items() if name not in wanted]
            self._managers = {**kept, **added}
            for manager in dropped:
                manager.stop()

    def versions(self, model_name: str) -> VersionManager:
        manager = self._managers.get(model_name)
        if manager is None:
            served = ", ".join(repr(name) for name in sorted(self._managers))
            raise not_found(f"Servable not found for request: model '{model_name}' is not served "
                            f"(this server serves {served})")
        return manager

    def resolve(self, spec: model_pb2.ModelSpec) -> LoadedModel:
        """The version a spec names by number or label, or the newest one; NOT_FOUND otherwise."""
        versions = self.versions(spec.name)
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            return versions.get_labeled(spec.version_label)
        return versions.get(spec.version.value if choice == "version" else None)

    def version_of(self, spec: model_pb2.ModelSpec) -> int | None:
        """The version number a spec names (by number or label), or None if it names none."""
        versions = self.versions(spec.name)
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            return versions.label_version(spec.version_label)
        return spec.version.value if choice == "version" else None
