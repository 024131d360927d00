"""What `enja` shows in a terminal: the libraries' start-up noise hidden, real warnings kept."""
from __future__ import annotations

import logging
import os
import warnings

# Read once, when TensorFlow and gRPC load. Level 3 hides TensorFlow's C++ log lines up to ERROR:
# on a machine without a GPU, XLA's "Unable to register cuDNN/cuFFT/cuBLAS factory" at import, the
# CUDA and TensorRT probes, oneDNN's notes (errors that stop a command reach Python as exceptions).
# gRPC's core logs through absl: ERROR spares its INFO lines (on a fork, say) and with them the
# "All log messages before absl::InitializeLog()" banner absl prints before the first one.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}


class _NoDeprecationNotices(logging.Filter):
    """Drops TensorFlow's notices that a library calls a deprecated TensorFlow function (TFMA
    does, reading evaluations): about the library's code, nothing the user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is deprecated" not in str(record.msg)


_NO_DEPRECATION_NOTICES = _NoDeprecationNotices()


def quiet_library_noise() -> None:
    """Hides the libraries' chatter, which says nothing about this run. Our own logs stay, and
    Python's warnings and TensorFlow's Python-side ones but the few named here."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # an operator's own setting wins
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")  # "Python 3.10 is old"
    logging.getLogger("tensorflow").addFilter(_NO_DEPRECATION_NOTICES)
