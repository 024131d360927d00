"""Where a one-sentence gRPC Predict spends its time beyond the model, batching off and on.

    .venv/bin/python bench/serving_breakdown.py --model-base-path pipeline_output/serving_model

Client, server and model share one process, so that the three times are read on one clock
for the same call: the model's session run inside the server, the server's Predict handler
around it (parsing, metrics, batching, the response's tensors), and the client's call
around that (gRPC's transport both ways). Each is timed by wrapping the method that does it;
prints the p50 of each and the differences.
"""
import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from enja.serving import servicer
from enja.serving.batching_config import BatchOptions
from enja.serving.predict_api import predict_request
from enja.serving.server import ModelServer, ServerOptions

WARMUP_CALLS = 5


def timed(function: Callable, seconds: list[float]) -> Callable:
    """`function`, appending the seconds each call took to `seconds`."""
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)
    return call


def breakdown(base: str, model_name: str, batching: bool, calls: int) -> dict[str, float]:
    """p50 milliseconds of the session run, the handler and the client call."""
    handler: list[float] = []
    predict_method = servicer.PredictionServicer.Predict
    servicer.PredictionServicer.Predict = timed(predict_method, handler)  # before the server registers it
    server = ModelServer(base, model_name, ServerOptions(port=0,
                                                         batching=BatchOptions() if batching else None))
    server.start()
    try:
        model, run = server.versions.get(), []
        model.run = timed(model.run, run)
        client = []
        with grpc.insecure_channel(server.address) as channel:
            predict = timed(prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict, client)
            request = predict_request(["i like cats ."], model_name)
            for _ in range(WARMUP_CALLS + calls):
                predict(request, timeout=60)
    finally:
        server.stop()
        servicer.PredictionServicer.Predict = predict_method
    return {name: statistics.median(seconds[-calls:]) * 1e3
            for name, seconds in (("run", run), ("handler", handler), ("client", client))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True, help="folder holding <model-name>/<version>/")
    parser.add_argument("--model-name", default="enja")
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    print("| batching | session run p50 | handler p50 (+ server's own) | client p50 (+ gRPC transport) |")
    print("|---|---|---|---|")
    for batching in (False, True):
        ms = breakdown(args.model_base_path, args.model_name, batching, args.calls)
        print(f"| {'on' if batching else 'off'} | {ms['run']:.1f} ms | {ms['handler']:.1f} ms "
              f"(+{ms['handler'] - ms['run']:.1f}) | {ms['client']:.1f} ms "
              f"(+{ms['client'] - ms['handler']:.1f}) |")


if __name__ == "__main__":
    main()
