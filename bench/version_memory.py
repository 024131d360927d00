"""Where a swapped-out version's memory goes: resident size over load/serve/drop cycles, in one process.

    .venv/bin/python bench/version_memory.py pipeline_output/serving_model/enja/<version> --swaps 20
    .venv/bin/python bench/version_memory.py DIR --threads 1                 # requests from one thread
    .venv/bin/python bench/version_memory.py DIR --keep-memory               # no malloc_trim on a drop
    .venv/bin/python bench/version_memory.py DIR --arena-max 0               # glibc's default arenas

Each cycle loads the version as the server does (`LoadedModel`, the TF1 session loader),
replays its warm-up requests, answers --requests one-sentence Predicts from --threads
threads, then drops it the way the server's version manager does (`DroppedVersions`). The
switches isolate the causes bench/serving_swap_memory.py's server-level measurement cannot: the
threads that ran requests (glibc gives each its own malloc arena), the trim after a drop,
and the cap on arenas that the server sets as it is built.
"""
import argparse
import os
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from enja.serving import (
    contract,
    memory,
)
from enja.serving.config import RequestLimits
from enja.serving.loader import LoadedModel


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def cycle(version_dir: str, pool: futures.ThreadPoolExecutor, requests: int,
          dropped: memory.DroppedVersions) -> None:
    """Load, warm up, serve `requests` calls from the pool, drop."""
    model = LoadedModel(version_dir, 1)
    model.warm_up(RequestLimits())
    inputs = {contract.TEXT_INPUT: np.array([b"i like cats ."], dtype=object)}
    calls = [pool.submit(model.run, contract.SERVING_SIGNATURE, inputs, (contract.TRANSLATIONS_OUTPUT,))
             for _ in range(requests)]
    for call in calls:
        call.result()
    dropped.add(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version_dir", help="one version of a pushed model")
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--requests", type=int, default=64, help="per cycle")
    parser.add_argument("--keep-memory", action="store_true", help="do not malloc_trim after a drop")
    parser.add_argument("--arena-max", type=int, default=os.cpu_count() or 1,
                        help="glibc malloc arenas at most (0: glibc's default, 8 a core); default: one a "
                             "core, as the server sets")
    args = parser.parse_args()
    if args.arena_max:
        memory.cap_malloc_arenas(args.arena_max)
    release = (lambda: None) if args.keep_memory else memory.release_free_memory
    dropped = memory.DroppedVersions(release=release)
    print("| swaps | RSS MiB |\n|---|---|")
    with futures.ThreadPoolExecutor(args.threads) as pool:
        for swap in range(1, args.swaps + 1):
            cycle(args.version_dir, pool, args.requests, dropped)
            dropped.release_gone()
            print(f"| {swap} | {rss_mib():.0f} |", flush=True)


if __name__ == "__main__":
    main()
