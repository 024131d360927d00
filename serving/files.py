"""Files that readers poll or open while they are being written: never seen half-written."""
from __future__ import annotations

import contextlib
import os
import tempfile

NEW_FILE_MODE = 0o644  # readable by a server running as another user (e.g. in a container)


def write_atomically(path: str, data: bytes) -> None:
    """Writes through a temporary file beside `path`, synced, then renamed over it.

    A reader (a server polling its model config file, a browser opening a report) sees the
    old file or the new one, never part of one, and an interrupted write leaves no temporary
    file behind. A file that existed keeps its permissions; a new one is readable by all, as
    one written directly would be.
    """
    folder = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".partial-{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
