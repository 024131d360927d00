"""Serving latency and throughput for one pushed model, as a markdown table.

    .venv/bin/python bench/serving_latency.py --model-base-path SERVING_DIR
    .venv/bin/python bench/serving_latency.py --model-base-path SERVING_DIR --requests 20   # a smoke run

SERVING_DIR is the folder holding <model-name>/<version>/: an `enja run` output's serving_model/
(pipeline_output/serving_model after `make run`). Rows: the in-process SavedModel call (the floor
every server adds to), gRPC Predict latency for one sentence, and sentences/second at several
client concurrencies with server-side batching off and on. The server runs in its own process
(serving_harness.ServerProcess) so client threads do not share its interpreter lock. Loopback only.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from enja.serving.batching_config import BatchOptions
from enja.serving.server import ServerOptions
from serving_harness import (
    ServerProcess,
    argument_parser,
    grpc_latencies,
    in_process_latencies,
    newest_version,
    percentile,
    predict_requests,
    serving_signature,
    throughput,
)

CONCURRENCIES = (1, 8, 32)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    args = parser.parse_args()

    model_dir = os.path.join(args.model_base_path, args.model_name)
    version = newest_version(model_dir)
    requests = predict_requests(args.requests, args.model_name)

    floor = in_process_latencies(serving_signature(os.path.join(model_dir, str(version))), args.requests)
    rows = [("in-process SavedModel call, 1 sentence", f"p50 {percentile(floor, 50) * 1e3:.1f} ms",
             f"p99 {percentile(floor, 99) * 1e3:.1f} ms")]
    for batching in (False, True):
        mode = "batching on" if batching else "batching off"
        options = ServerOptions(port=0, batching=BatchOptions() if batching else None)
        with ServerProcess(args.model_base_path, args.model_name, options) as server, \
                grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            grpc_latencies(stub, requests[:10])  # connect and warm up
            latencies = grpc_latencies(stub, requests)
            rows.append((f"gRPC Predict, 1 sentence, {mode}", f"p50 {percentile(latencies, 50) * 1e3:.1f} ms",
                         f"p99 {percentile(latencies, 99) * 1e3:.1f} ms"))
            for concurrency in CONCURRENCIES:
                rate = throughput(stub, requests, concurrency)
                rows.append((f"throughput, concurrency {concurrency}, {mode}", f"{rate:.0f} sentences/s", ""))

    print(f"model {model_dir} version {version}, {args.requests} requests per row, "
          f"{os.cpu_count()} CPUs\n")
    print("| measurement | value | |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
