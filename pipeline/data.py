"""Where the parallel corpus lives, and how users with a network fetch it."""
from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.request

DATA_ROOT_ENV = "ENJA_DATA_ROOT"
DEFAULT_DOWNLOAD_DIR = os.path.join("data", "small_parallel_enja")
# The public corpus (Yusuke Oda's small_parallel_enja), file by file.
CORPUS_URL = "https://raw.githubusercontent.com/odashi/small_parallel_enja/master/{name}"
CORPUS_FILES = ("train.en", "train.ja", "dev.en", "dev.ja")
SPANS = 5
# What a corpus folder needs before a run starts; the training spans may arrive later.
REQUIRED_FILES = ("dev.en", "dev.ja")


class MissingCorpusError(FileNotFoundError):
    pass


def resolve_data_root(data_root: str | None) -> str:
    """The corpus folder from the flag, else $ENJA_DATA_ROOT; fails saying how to get one."""
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    how = (f"Pass --data-root DIR or set {DATA_ROOT_ENV}; to fetch the public corpus into "
           f"{DEFAULT_DOWNLOAD_DIR}/, run `enja download-data`.")
    if not root:
        raise MissingCorpusError(f"No corpus folder given. {how}")
    missing = [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(root, name))]
    if missing:
        raise MissingCorpusError(
            f"Corpus folder {root} lacks {', '.join(missing)}. {how}")
    return os.path.abspath(root)


def write_atomically(path: str, data: bytes) -> None:
    """Writes through a temporary file so an interrupted write leaves the old file or none, never part
    of one (nor the temporary file); the file is readable by all, as one written directly would be."""
    handle, tmp_path = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


def download(dest: str = DEFAULT_DOWNLOAD_DIR) -> str:
    """Fetches the corpus into `dest` and cuts train.{en,ja} into the five 10k-pair spans."""
    os.makedirs(dest, exist_ok=True)
    for name in CORPUS_FILES:
        with urllib.request.urlopen(CORPUS_URL.format(name=name), timeout=60) as response:
            data = response.read()
        write_atomically(os.path.join(dest, name), data)
        if name.startswith("train."):
            lines = data.splitlines(keepends=True)
            span_size = -(-len(lines) // SPANS)
            for span in range(SPANS):
                write_atomically(os.path.join(dest, f"{name}.{span:03d}"),
                                  b"".join(lines[span * span_size:(span + 1) * span_size]))
    return dest
