"""Where the parallel corpus lives, and how users with a network fetch it."""
from __future__ import annotations

import os
import urllib.request

from enja.serving import files
from enja.serving.config import ServingConfig

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


def download(dest: str = DEFAULT_DOWNLOAD_DIR) -> str:
    """Fetches the corpus into `dest` and cuts train.{en,ja} into the five 10k-pair spans."""
    os.makedirs(dest, exist_ok=True)
    for name in CORPUS_FILES:
        with urllib.request.urlopen(CORPUS_URL.format(name=name), timeout=60) as response:
            data = response.read()
        files.write_atomically(os.path.join(dest, name), data)
        if name.startswith("train."):
            lines = data.splitlines(keepends=True)
            span_size = -(-len(lines) // SPANS)
            for span in range(SPANS):
                files.write_atomically(os.path.join(dest, f"{name}.{span:03d}"),
                                  b"".join(lines[span * span_size:(span + 1) * span_size]))
    return dest


def sample_sentences(data_root: str | None, count: int = 5) -> list[str]:
    """The first dev sentences when a corpus is at hand (like what the model learned from),
    else the serving warm-up sentences."""
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        return list(ServingConfig.warmup_sentences)
    with open(os.path.join(resolve_data_root(root), "dev.en"), encoding="utf-8") as lines:
        return [line.strip() for line, _ in zip(lines, range(count), strict=False)]
