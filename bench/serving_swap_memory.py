"""The server's memory over version swaps: whether a dropped version's memory is given back; exits
1 if a check fails.

    .venv/bin/python bench/serving_swap_memory.py --model-base-path SERVING_DIR
    # a smoke run:
    .venv/bin/python bench/serving_swap_memory.py --model-base-path SERVING_DIR --swaps 1 2 3 \\
        --swap-clients 2 --swap-seconds 1

SERVING_DIR is the folder holding <model-name>/<version>/: an `enja run` output's serving_model/
(pipeline_output/serving_model after `make run`); it is never written. One server
(serving_harness.ServerProcess: its own process, batching and the REST API on) serves a temporary
copy of its newest version. A swap pushes a new version while --swap-clients threads (half gRPC,
half REST) call, waits until GetModelStatus reports the new version as the only one available,
lets the clients call it for --swap-seconds more, then removes the old versions from disk. The
server's VmRSS is read at each of the --swaps checkpoints. Checks: no request failed, and RSS after
the last checkpoint is at most 10 % above RSS after the second (20 and 2 by default), which is how
a version's memory that is never released shows. bench/version_memory.py isolates the causes in
one process.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc

from serving_harness import (
    Client,
    ModelFolder,
    Outcome,
    ServerProcess,
    argument_parser,
    available_versions,
    calling,
    check,
    check_on_copy,
    failures,
    load_clients,
    print_errors,
    rss_mib,
)

SWAP_TIMEOUT_S = 300.0  # for a pushed version to become the only one served
MAX_RSS_GROWTH = 0.10


def wait_until_only(status_stub, model_name: str, version: int) -> float:
    """Seconds until GetModelStatus reports `version` as the only available one."""
    start = time.monotonic()
    while available_versions(status_stub, model_name) != [version]:
        if time.monotonic() - start > SWAP_TIMEOUT_S:
            raise TimeoutError(f"version {version} was not the only one served after {SWAP_TIMEOUT_S:g} s")
        time.sleep(0.1)
    return time.monotonic() - start


def swap(folder: ModelFolder, status_stub, clients: list[Client],
         args: argparse.Namespace) -> tuple[float, list[Outcome]]:
    """Push while the clients call, wait until only the new version is served, let them call it, drop the
    old from disk; the wait's seconds and the calls' outcomes."""
    with calling(clients) as outcomes:
        waited = wait_until_only(status_stub, args.model_name, folder.push())
        time.sleep(args.swap_seconds)
    folder.remove_old()
    return waited, outcomes


def memory_over_swaps(server: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
                      args: argparse.Namespace) -> bool:
    status_stub = model_service_pb2_grpc.ModelServiceStub(channels[0])
    rss, outcomes, waits = {0: rss_mib(server.pid)}, [], []
    with load_clients(server, channels, args.model_name, args.swap_clients) as clients:
        for swaps in range(1, args.swaps[-1] + 1):
            waited, swap_outcomes = swap(folder, status_stub, clients, args)
            waits.append(waited)
            outcomes += swap_outcomes
            if swaps in args.swaps:
                rss[swaps] = rss_mib(server.pid)
    baseline, last = args.swaps[1], args.swaps[-1]
    print(f"\n## Memory over version swaps\n\n{args.swap_clients} clients calling; {len(outcomes)} requests, "
          f"{len(failures(outcomes))} failed; a push took {min(waits):.1f}-{max(waits):.1f} s to be the only "
          f"version served\n")
    print(f"| swaps | server RSS MiB | vs after {baseline} |\n|---|---|---|")
    for swaps, mib in rss.items():
        print(f"| {swaps} | {mib:.0f} | {mib / rss[baseline] - 1:+.1%} |")
    print_errors(outcomes)
    print()
    growth = rss[last] / rss[baseline] - 1
    return all([check(not failures(outcomes), f"no failed requests during swaps ({len(failures(outcomes))})"),
                check(growth <= MAX_RSS_GROWTH,
                      f"RSS after {last} swaps within {MAX_RSS_GROWTH:.0%} of after "
                      f"{baseline} ({rss[last]:.0f} vs {rss[baseline]:.0f} MiB, {growth:+.1%})")])


def main() -> int:
    parser = argument_parser(__doc__, thread_flags=True)
    parser.add_argument("--swaps", type=int, nargs="+", default=[1, 2, 5, 20],
                        help="checkpoints (numbers of swaps); the last is held to the second's RSS")
    parser.add_argument("--swap-clients", type=int, default=32, help="clients calling, half of them REST")
    parser.add_argument("--swap-seconds", type=float, default=5,
                        help="calls to each new version once it serves")
    args = parser.parse_args()
    if len(set(args.swaps)) < 2:
        parser.error("--swaps needs at least two checkpoints")
    args.swaps = sorted(set(args.swaps))
    return check_on_copy(args, memory_over_swaps)


if __name__ == "__main__":
    raise SystemExit(main())
