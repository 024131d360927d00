"""What `enja` shows in a terminal: the libraries' start-up noise hidden, real warnings kept."""
from __future__ import annotations

import logging
import os
import re
import warnings

# Read once, when TensorFlow and gRPC load. Level 3 hides TensorFlow's C++ log lines up to ERROR:
# on a machine without a GPU, XLA's "Unable to register cuDNN/cuFFT/cuBLAS factory" at import, the
# CUDA and TensorRT probes, oneDNN's notes (errors that stop a command reach Python as exceptions).
# gRPC's core logs through absl: ERROR spares its INFO lines (on a fork, say) and with them the
# "All log messages before absl::InitializeLog()" banner absl prints before the first one.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}


class _Dropping(logging.Filter):
    """Drops a library's log records whose message matches `pattern` from its start."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self._pattern = re.compile(pattern, re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._pattern.match(record.getMessage())


# Notices about the libraries' own code, which recur on every run and leave a user nothing to do:
# TensorFlow's that a library (TFMA, reading evaluations) calls a deprecated function; TFX's that
# its own artifact queries lack a feature and that its Examples predate a property; TF
# Transform's that its lookup tables are initialised inside a tf.function.
_LIBRARY_NOTICES = {
    "tensorflow": _Dropping(r"From .* is deprecated"),
    "absl": _Dropping("|".join(map(re.escape, (
        "ArtifactQuery.property_predicate is not supported",
        "Examples artifact does not have payload_format custom property",
        "Tables initialized inside a tf.function")))),
}


def quiet_library_noise() -> None:
    """Hides the libraries' chatter, which says nothing about this run. Our own logs stay, and
    Python's warnings and the libraries' other warnings."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # an operator's own setting wins
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")  # "Python 3.10 is old"
    for logger, dropping in _LIBRARY_NOTICES.items():
        logging.getLogger(logger).addFilter(dropping)
