"""Where things are: the checkout (for files the tests read, not import) and these helpers."""
from __future__ import annotations

import pathlib

SUPPORT_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = SUPPORT_DIR.parents[1]
# Run as a subprocess by path: importing it would block `enja` in the importing process.
LOADER_SCRIPT = SUPPORT_DIR / "load_exported_model.py"
