"""Load across a push: whether the server fails a request while a new version arrives; exits 1
if a check fails.

    .venv/bin/python bench/serving_push_load.py --model-base-path SERVING_DIR
    # a smoke run:
    .venv/bin/python bench/serving_push_load.py --model-base-path SERVING_DIR --clients 4 --duration 20

SERVING_DIR is the folder holding <model-name>/<version>/: an `enja run` output's serving_model/
(pipeline_output/serving_model after `make run`); it is never written. One server
(serving_harness.ServerProcess: its own process, batching and the REST API on) serves a temporary
copy of its newest version. --clients threads, half calling gRPC Predict over a few shared channels,
half REST predict each over its own connection (kept alive when the server allows), one sentence a
call, for --duration seconds; a new version is pushed a third of the way in (copied to a temporary
name in the model folder and renamed to the next number, so the server never sees half a version).
Checks: no request failed, and both versions answered each protocol (gRPC responses name their
version; REST's are taken from the server's request counter, whose api label tells the protocols
apart).

Whether the client is the bottleneck: it prints the CPU seconds of the client process, the server,
the machine's other processes and the idle ones over the run. Client and server share the cores, so
whatever the client uses the server could have had. On the 2-core development machine the client
used 8 % (20 clients) to 11 % (200 clients) of one core, about a tenth of the server's time, while
p50 latency grew from 0.23 s to 1.4 s: the requests wait in the server, not in the client.
"""
import argparse
import os
import time
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc

from serving_harness import (
    CpuUse,
    GrpcPredict,
    ModelFolder,
    Outcome,
    RestPredict,
    ServerProcess,
    argument_parser,
    call_for,
    check,
    check_on_copy,
    failures,
    load_clients,
    percentile,
    print_errors,
    rest_versions,
    rss_mib,
    served_requests,
    success_latencies,
)


def delayed_push(folder: ModelFolder, delay_s: float) -> float:
    """Push after `delay_s`; returns when (time.monotonic()) the new version was on disk."""
    time.sleep(delay_s)
    folder.push()
    return time.monotonic()


def protocol_row(protocol: str, outcomes: list[Outcome], seconds: float, versions: set[int]) -> str:
    latencies = success_latencies(outcomes)
    shown = ", ".join(str(version) for version in sorted(versions))
    return (f"| {protocol} | {len(outcomes)} | {len(failures(outcomes))} | "
            f"{percentile(latencies, 50) * 1e3:.0f} | "
            f"{percentile(latencies, 99) * 1e3:.0f} | {len(outcomes) / seconds:.1f} | {shown} |")


def load_during_push(server: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
                     args: argparse.Namespace) -> bool:
    old = folder.version
    before, cpu = served_requests(server.rest_api_address), CpuUse.now(server.pid)
    with load_clients(server, channels, args.model_name, args.clients) as clients, \
            futures.ThreadPoolExecutor(1) as pusher:
        start = time.monotonic()
        pushed = pusher.submit(delayed_push, folder, args.duration / 3)
        outcomes, seconds = call_for(clients, args.duration)
    cpu = CpuUse.now(server.pid) - cpu
    grpc_outcomes = [outcome for outcome in outcomes if outcome.protocol == GrpcPredict.protocol]
    rest_outcomes = [outcome for outcome in outcomes if outcome.protocol == RestPredict.protocol]
    answered = {GrpcPredict.protocol: {o.version for o in grpc_outcomes if o.error is None},
                RestPredict.protocol: rest_versions(before, served_requests(server.rest_api_address))}
    first_new = min((o.finished for o in grpc_outcomes if o.version == folder.version), default=float("nan"))

    print(f"\n## Load during a push\n\n{args.clients} clients ({(args.clients + 1) // 2} gRPC over "
          f"{len(channels)} channels, {args.clients // 2} REST) for {seconds:.0f} s; version "
          f"{folder.version} "
          f"pushed at {pushed.result() - start:.0f} s (served: {old}), first answered (gRPC) "
          f"{first_new - pushed.result():.1f} s after the push\n")
    print("| protocol | requests | failed | p50 ms | p99 ms | requests/s | versions answered |\n"
          "|---|---|---|---|---|---|---|")
    for protocol, selected in ((GrpcPredict.protocol, grpc_outcomes), (RestPredict.protocol, rest_outcomes)):
        print(protocol_row(protocol, selected, seconds, answered[protocol]))
    print(protocol_row("all", outcomes, seconds,
                       answered[GrpcPredict.protocol] | answered[RestPredict.protocol]))
    print(f"\n(REST versions from the server's request counter.) CPU seconds over the run, of "
          f"{os.cpu_count()} cores x {seconds:.0f} s: client {cpu.client:.1f} ({cpu.client / seconds:.0%} "
          f"of one core), server {cpu.server:.1f}, other processes "
          f"{cpu.machine - cpu.client - cpu.server:.1f}, idle {cpu.idle:.1f}; server RSS now "
          f"{rss_mib(server.pid):.0f} MiB")
    print_errors(outcomes)
    print()
    return all([check(not failures(outcomes),
                      f"no failed requests ({len(failures(outcomes))} of {len(outcomes)})"),
                *(check({old, folder.version} <= versions,
                        f"versions {old} and {folder.version} both answered "
                        f"{protocol} requests") for protocol, versions in answered.items())])


def main() -> int:
    parser = argument_parser(__doc__, thread_flags=True)
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients, half of them REST")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    return check_on_copy(parser.parse_args(), load_during_push)


if __name__ == "__main__":
    raise SystemExit(main())
