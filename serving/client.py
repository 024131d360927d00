"""Translating through any server that speaks TF Serving's gRPC API (`enja translate`).

Calls that the server refuses for now (UNAVAILABLE: not up yet, shutting down or
its batch queue full; RESOURCE_EXHAUSTED) are retried by gRPC itself with
exponential backoff, up to RETRY_POLICY's attempts and always within the
caller's deadline: a Predict is safe to repeat.
"""
import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence

import grpc

from enja.serving import contract
from enja.serving.predict_api import predict_request, prediction_service_pb2_grpc, strings

BATCH_SIZE = 32  # sentences per request when reading stdin
# gRPC's retry policy (its service config's names); gRPC waits a random time up to the current
# backoff before each retry, and caps maxAttempts at 5.
RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
}
SERVICE_CONFIG = {"methodConfig": [{"name": [{"service": "tensorflow.serving.PredictionService"}],
                                    "retryPolicy": RETRY_POLICY}]}


def retrying_channel(server: str) -> grpc.Channel:
    """An insecure channel to `server` whose PredictionService calls retry as RETRY_POLICY says."""
    return grpc.insecure_channel(server, options=[("grpc.enable_retries", 1),
                                                  ("grpc.service_config", json.dumps(SERVICE_CONFIG))])


def translate_batches(stub: prediction_service_pb2_grpc.PredictionServiceStub, sentences: Iterable[str],
                      model_name: str, timeout: float, batch_size: int = BATCH_SIZE) -> Iterator[str]:
    """Translations in input order, one Predict call per `batch_size` sentences, read lazily."""
    sentences = iter(sentences)
    while batch := list(itertools.islice(sentences, batch_size)):
        request = predict_request(batch, model_name)
        request.output_filter.append(contract.TRANSLATIONS_OUTPUT)
        response = stub.Predict(request, timeout=timeout)
        yield from strings(response.outputs[contract.TRANSLATIONS_OUTPUT])


def translate(sentences: Sequence[str], server: str = "localhost:8500", model_name: str = "enja",
              timeout: float = 30.0) -> list[str]:
    """Japanese translations of English sentences; raises grpc.RpcError on failure."""
    with retrying_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return list(translate_batches(stub, sentences, model_name, timeout))


def main(args: argparse.Namespace) -> int:
    """Translate `args.text`, or stdin a line at a time; print one translation a line."""
    sentences = args.text or (line.rstrip("\n") for line in sys.stdin)
    try:
        with retrying_channel(args.server) as channel:
            if args.wait:
                # Our server and TF Serving both listen only once a version is loaded.
                grpc.channel_ready_future(channel).result(timeout=args.wait)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for translation in translate_batches(stub, sentences, args.model_name, args.timeout):
                print(translation, flush=True)
    except grpc.FutureTimeoutError:
        print(f"enja translate: no model server came up at {args.server} within {args.wait} s",
              file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(f"enja translate: cannot reach a model server at {args.server}: {error.details()}",
                  file=sys.stderr)
        else:
            print(f"enja translate: {args.server} answered {error.code().name}: {error.details()}",
                  file=sys.stderr)
        return 1
    return 0
