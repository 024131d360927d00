"""The server's overhead over the in-process model, for one sentence and for a batch; exits 1 if a target is
missed.

    .venv/bin/python bench/serving_overhead.py --model-base-path SERVING_DIR
    .venv/bin/python bench/serving_overhead.py --model-base-path SERVING_DIR --requests 40   # a smoke run

SERVING_DIR is the folder holding <model-name>/<version>/: an `enja run` output's serving_model/
(pipeline_output/serving_model after `make run`); it is never written. One server
(serving_harness.ServerProcess: its own process, batching and the REST API on) serves a temporary
copy of its newest version, and this process loads the same version; nothing else calls the server.
In alternating rounds (so that a change in the machine's load hits both sides alike): one-sentence
calls in process and over gRPC, in-process calls on a batch of 32, and --requests one-sentence gRPC
requests at concurrency 32. Targets: the gRPC p50 for one sentence less than 10 % over the
in-process p50, and the throughput at concurrency 32 at least 90 % of one in-process call on a
batch of 32. bench/serving_breakdown.py shows where one call's time goes.
"""
import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving_harness import (
    ModelFolder,
    ServerProcess,
    argument_parser,
    check,
    check_on_copy,
    grpc_latencies,
    in_process_latencies,
    percentile,
    predict_requests,
    serving_signature,
    throughput,
)

MAX_LATENCY_OVERHEAD = 0.10
MIN_THROUGHPUT_RATIO = 0.90
BATCH = 32
ROUNDS = 5


def overhead(_: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
             args: argparse.Namespace) -> bool:
    signature = serving_signature(os.path.join(folder.path, str(folder.version)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channels[0])
    requests = predict_requests(args.requests, args.model_name)
    grpc_latencies(stub, requests[:10])  # warm up
    per_round = max(args.requests // ROUNDS, 2)
    floor, served, batches, rates = [], [], [], []
    for _ in range(ROUNDS):  # alternating, so that a change in the machine's load hits both sides alike
        floor += in_process_latencies(signature, per_round)
        served += grpc_latencies(stub, requests[:per_round])
        batches += in_process_latencies(signature, max(per_round // BATCH, 1), BATCH)
        rates.append(throughput(stub, requests, BATCH))
    floor, served = percentile(floor, 50), percentile(served, 50)
    batch_rate, rate = BATCH / percentile(batches, 50), statistics.median(rates)
    print(f"\n## Overhead over the in-process model\n\n{ROUNDS} alternating rounds of {per_round} single "
          f"calls each way, {len(batches) // ROUNDS} in-process batch(es) of {BATCH} and {args.requests} "
          f"requests at concurrency {BATCH}; nothing else calls the server\n")
    print("| measurement | value |\n|---|---|")
    print(f"| in-process call, 1 sentence, p50 | {floor * 1e3:.1f} ms |")
    print(f"| gRPC Predict, 1 sentence, batching on, p50 | {served * 1e3:.1f} ms |")
    print(f"| in-process call on a batch of {BATCH}, p50 | {BATCH / batch_rate * 1e3:.0f} ms "
          f"({batch_rate:.0f} sentences/s) |")
    print(f"| gRPC throughput, concurrency {BATCH}, batching on | {rate:.0f} sentences/s |\n")
    return all([check(served / floor - 1 < MAX_LATENCY_OVERHEAD,
                      f"gRPC p50 overhead {served / floor - 1:+.1%} "
                      f"over the in-process p50 (target < {MAX_LATENCY_OVERHEAD:.0%})"),
                check(rate / batch_rate >= MIN_THROUGHPUT_RATIO, f"throughput at concurrency {BATCH} is "
                      f"{rate / batch_rate:.0%} of one in-process batch of {BATCH} "
                      f"(target >= {MIN_THROUGHPUT_RATIO:.0%})")])


def main() -> int:
    parser = argument_parser(__doc__, thread_flags=True)
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    return check_on_copy(parser.parse_args(), overhead)


if __name__ == "__main__":
    raise SystemExit(main())
