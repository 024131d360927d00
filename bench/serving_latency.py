"""Serving latency and throughput for one pushed model, as a markdown table.

    .venv/bin/python bench/serving_latency.py --model-base-path pipeline_output/serving_model

Rows: the in-process SavedModel call (the floor every server adds to), gRPC
Predict latency for one sentence, and sentences/second at several client
concurrencies with server-side batching off and on. The server runs in its own
process so client threads do not share its interpreter lock. Loopback only.
"""
import argparse
import multiprocessing
import os
import queue
import statistics
import time
from concurrent import futures
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from enja.serving.server import ServerOptions

SENTENCES = [
    "i like cats .", "this is a pen .", "it is raining today .", "i read a book .",
    "she has a dog .", "where is the station ?", "thank you very much .", "he likes cats .",
]
CONCURRENCIES = (1, 8, 32)


def _run_server(base: str, model_name: str, options: "ServerOptions", addresses, stop) -> None:
    """Child process: serve until `stop` is set."""
    from enja.serving.server import ModelServer

    server = ModelServer(base, model_name, options)
    server.start()
    addresses.put((server.address, server.rest_api_address))
    stop.wait()
    server.stop()


class ServerProcess:
    """A ModelServer in a child process, up while the block runs."""

    def __init__(self, base: str, model_name: str, options: "ServerOptions"):
        context = multiprocessing.get_context("spawn")
        self._addresses, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=_run_server, args=(base, model_name, options, self._addresses,
                                                                   self._stop))
        self.address: str | None = None
        self.rest_api_address: str | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.is_alive()

    def __enter__(self) -> "ServerProcess":
        """Returns once the server listens; raises if it died on the way, rather than waiting out the timeout."""
        self._process.start()
        deadline = time.monotonic() + 300
        while True:
            try:
                self.address, self.rest_api_address = self._addresses.get(timeout=1)
                return self
            except queue.Empty:
                if not self.alive() or time.monotonic() > deadline:
                    self._process.kill()  # a no-op if it died
                    self._process.join()
                    raise RuntimeError(f"the model server did not come up (exit code {self._process.exitcode})")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join()


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if len(samples) > 1 else samples[0]


def newest_version(model_dir: str) -> int:
    return max(int(name) for name in os.listdir(model_dir) if name.isdigit())


def serving_signature(version_dir: str):
    """The serving signature loaded into this process, for the floor every server adds to."""
    import tensorflow as tf

    from enja.serving import contract

    return tf.saved_model.load(version_dir).signatures[contract.SERVING_SIGNATURE]


def in_process_latencies(signature, requests: int, batch_size: int = 1) -> list[float]:
    """Seconds per call of `signature` on `batch_size` sentences."""
    import tensorflow as tf

    from enja.serving import contract

    latencies = []
    for i in range(requests + 1):
        batch = [SENTENCES[(i + j) % len(SENTENCES)] for j in range(batch_size)]
        start = time.perf_counter()
        signature(**{contract.TEXT_INPUT: tf.constant(batch)})
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

    from enja.serving.batching_config import BatchOptions
    from enja.serving.server import ServerOptions
    from enja.serving.warmup import predict_request

    model_dir = os.path.join(args.model_base_path, args.model_name)
    version = newest_version(model_dir)
    requests = [predict_request([SENTENCES[i % len(SENTENCES)]], args.model_name) for i in range(args.requests)]

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
