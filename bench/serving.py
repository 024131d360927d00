"""Serving latency and throughput for one pushed model, as a markdown table.

    .venv/bin/python bench/serving.py --model-base-path pipeline_output/serving_model

Rows: the in-process SavedModel call (the floor every server adds to), gRPC
Predict latency for one sentence, and sentences/second at several client
concurrencies with server-side batching off and on. The server runs in its own
process so client threads do not share its interpreter lock. Loopback only.
"""
import argparse
import multiprocessing
import os
import statistics
import time
from concurrent import futures

SENTENCES = [
    "i like cats .", "this is a pen .", "it is raining today .", "i read a book .",
    "she has a dog .", "where is the station ?", "thank you very much .", "he likes cats .",
]
CONCURRENCIES = (1, 8, 32)


def _run_server(base: str, model_name: str, batching: bool, ports, stop) -> None:
    """Child process: serve until `stop` is set."""
    from enja.serving.batching_config import BatchOptions
    from enja.serving.server import ModelServer, ServerOptions

    server = ModelServer(base, model_name, ServerOptions(port=0, batching=BatchOptions() if batching else None))
    server.start()
    ports.put(server.port)
    stop.wait()
    server.stop()


class ServerProcess:
    def __init__(self, base: str, model_name: str, batching: bool):
        context = multiprocessing.get_context("spawn")
        self._ports, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=_run_server, args=(base, model_name, batching, self._ports, self._stop))

    def __enter__(self) -> str:
        self._process.start()
        return f"127.0.0.1:{self._ports.get(timeout=300)}"

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join()


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if len(samples) > 1 else samples[0]


def in_process_latencies(version_dir: str, requests: int) -> list[float]:
    import tensorflow as tf

    from enja.models import contract

    signature = tf.saved_model.load(version_dir).signatures[contract.SERVING_SIGNATURE]
    latencies = []
    for i in range(requests + 1):
        start = time.perf_counter()
        signature(**{contract.TEXT_INPUT: tf.constant([SENTENCES[i % len(SENTENCES)]])})
        latencies.append(time.perf_counter() - start)
    return latencies[1:]  # the first call traces


def grpc_latencies(stub, requests: list) -> list[float]:
    latencies = []
    for request in requests:
        start = time.perf_counter()
        stub.Predict(request, timeout=60)
        latencies.append(time.perf_counter() - start)
    return latencies


def throughput(stub, requests: list, concurrency: int) -> float:
    """Single-sentence requests from `concurrency` threads; sentences per second."""
    start = time.perf_counter()
    with futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda request: stub.Predict(request, timeout=60), requests))
    return len(requests) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True, help="folder holding <model-name>/<version>/")
    parser.add_argument("--model-name", default="enja")
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    args = parser.parse_args()

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from enja.serving.warmup import predict_request

    model_dir = os.path.join(args.model_base_path, args.model_name)
    version = max(int(name) for name in os.listdir(model_dir) if name.isdigit())
    requests = [predict_request([SENTENCES[i % len(SENTENCES)]], args.model_name) for i in range(args.requests)]

    floor = in_process_latencies(os.path.join(model_dir, str(version)), args.requests)
    rows = [("in-process SavedModel call, 1 sentence", f"p50 {percentile(floor, 50) * 1e3:.1f} ms",
             f"p99 {percentile(floor, 99) * 1e3:.1f} ms")]
    for batching in (False, True):
        mode = "batching on" if batching else "batching off"
        with ServerProcess(args.model_base_path, args.model_name, batching) as address, \
                grpc.insecure_channel(address) as channel:
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
