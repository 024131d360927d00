"""A corpus folder for choosing settings: the training spans with a sample of their pairs held
out, and those pairs as its dev set.

    .venv/bin/python bench/tuning_split.py --corpus CORPUS_DIR --dest TUNING_DIR
    .venv/bin/python bench/quality.py --presets default --data-root TUNING_DIR --output-dir RUNS_DIR

Settings chosen by their score on dev and then reported on dev look better than they are: the
choice fits dev's quirks. Choosing on pairs held out of train instead leaves dev a fair score of
the chosen settings. The same pairs are held out on every call (a seeded sample, the same number
from each span), so candidates tuned on different days are compared on one set. CORPUS_DIR is a
corpus folder as `enja download-data` writes it; TUNING_DIR is written anew.
"""
from __future__ import annotations

import argparse
import glob
import os
import random
import shutil

from enja.components import parallel_corpus

SEED = 0


def split(corpus: str, dest: str, held_out: int) -> dict[str, int]:
    """Writes the tuning corpus; returns the pairs in each file written."""
    spans = sorted(glob.glob(os.path.join(corpus, "train.en.[0-9][0-9][0-9]")))
    if not spans:
        raise SystemExit(f"{corpus} has no training spans (train.en.000 …)")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    rng = random.Random(SEED)
    tuning: list[tuple[str, str]] = []
    written = {}
    for source in spans:
        target = parallel_corpus.target_path(source, "en", "ja")
        with open(source, encoding="utf-8") as en, open(target, encoding="utf-8") as ja:
            pairs = list(zip(en, ja, strict=True))
        chosen = set(rng.sample(range(len(pairs)), held_out // len(spans)))
        tuning += [pair for index, pair in enumerate(pairs) if index in chosen]
        kept = [pair for index, pair in enumerate(pairs) if index not in chosen]
        for path, side in ((source, 0), (target, 1)):
            name = os.path.basename(path)
            with open(os.path.join(dest, name), "w", encoding="utf-8") as out:
                out.writelines(pair[side] for pair in kept)
            written[name] = len(kept)
    for name, side in (("dev.en", 0), ("dev.ja", 1)):
        with open(os.path.join(dest, name), "w", encoding="utf-8") as out:
            out.writelines(pair[side] for pair in tuning)
        written[name] = len(tuning)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="a corpus folder with train.en.000 … and dev.*")
    parser.add_argument("--dest", required=True, help="the tuning corpus folder to write (replaced)")
    parser.add_argument("--held-out", type=int, default=1000, help="pairs held out of train, in all")
    args = parser.parse_args()
    for name, pairs in split(args.corpus, args.dest, args.held_out).items():
        print(f"{name}: {pairs} pairs")


if __name__ == "__main__":
    main()
