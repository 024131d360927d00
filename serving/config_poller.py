"""Re-reading `--model_config_file` every N seconds (TF Serving's `--model_config_file_poll_wait_seconds`).

A file that does not parse, or whose config cannot be applied, is logged (once
per distinct problem) and skipped: the config in force stays. A file whose
config equals the last one adopted from it is not applied again, so a config
sent with HandleReloadConfigRequest stays in force until the file changes.
"""
import logging
from collections.abc import Callable

from enja.serving.model_config import ModelConfigError, ModelServerConfig, naming_file, read_model_config
from enja.serving.periodic import Periodic

log = logging.getLogger(__name__)


class ConfigFilePoller:
    """Hands each new config found in a file to `apply`, which raises ModelConfigError to refuse it."""

    def __init__(self, path: str, adopted: ModelServerConfig, apply: Callable[[ModelServerConfig], None],
                 interval_s: float) -> None:
        self._path = path
        self._adopted = adopted  # the config last adopted from the file
        self._apply = apply
        self._problem: str | None = None  # the last problem logged, so a bad file is reported once
        self._periodic = Periodic(self.poll, interval_s, name=f"config-poller {path}")

    def poll(self) -> None:
        """One look at the file: apply its config if it changed since the last one adopted from it."""
        try:
            config = read_model_config(self._path)
            if config != self._adopted:
                with naming_file(self._path):
                    self._apply(config)
                self._adopted = config
                log.info("adopted the model config in %s", self._path)
        except ModelConfigError as error:
            if str(error) != self._problem:
                log.error("keeping the model config in force: %s", error)
            self._problem = str(error)
        else:
            self._problem = None

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
