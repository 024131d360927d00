"""What operators watch: the gRPC health service, the Prometheus page, and the client's retries.

Real servers on the stand-in model (seconds), and for the retries a real gRPC
server of the test's own that refuses calls the way a busy or starting server does.
"""
import contextlib
import dataclasses
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from enja.serving import client, contract
from enja.serving.batching_config import BatchOptions
from enja.serving.server import METRICS_PATH, ModelServer, ServerOptions
from support.serving import LIMITS, MODEL, config_text, eventually, message, model_entry, text_request

OPTIONS = ServerOptions(port=0, rest_api_port=0, poll_interval_s=0.1, limits=LIMITS, max_load_retries=0)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.contextmanager
def running(server: ModelServer):
    server.start()
    try:
        yield server
    finally:
        server.stop()


def health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def scrape(server: ModelServer) -> dict[tuple[str, frozenset], float]:
    """The metrics page as {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://{server.rest_api_address}{METRICS_PATH}", timeout=10) as page:
        text = page.read().decode("utf-8")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_health_is_not_serving_until_a_version_is_available(standin_model_base, tmp_path):
    model_dir = tmp_path / "base" / MODEL
    model_dir.mkdir(parents=True)
    with running(ModelServer(str(tmp_path / "base"), MODEL, OPTIONS)) as server:
        assert health(server.address, "") == NOT_SERVING
        assert health(server.address, MODEL) == NOT_SERVING
        shutil.copytree(os.path.join(standin_model_base, MODEL, "1"), model_dir / ".staging")
        os.rename(model_dir / ".staging", model_dir / "1")  # as a pusher does: the version appears whole
        eventually(lambda: health(server.address, MODEL) == SERVING, what="the model SERVING")
        assert health(server.address, "") == SERVING


def test_health_follows_the_models_a_new_config_lists(standin_model_base, tmp_path):
    bases = {name: str(shutil.copytree(os.path.join(standin_model_base, MODEL), tmp_path / name))
             for name in ("first", "second")}
    config = message(config_text(*(model_entry(base, name=name) for name, base in bases.items())))
    with running(ModelServer.from_model_config(config, OPTIONS)) as server:
        assert [health(server.address, name) for name in ("", "first", "second")] == [SERVING] * 3
        server.reload_config(message(config_text(model_entry(bases["first"], name="first"))))
        assert [health(server.address, name) for name in ("", "first", "second")] == [SERVING, SERVING,
                                                                                      NOT_SERVING]
        served = {labels: value for (name, labels), value in scrape(server).items()
                  if name == "enja_serving_served_version"}
        assert served == {frozenset({"model": "first"}.items()): 1}


def test_metrics_count_a_version_that_fails_to_load(standin_model_base, tmp_path):
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    model = frozenset({"model": MODEL}.items())
    with running(ModelServer(str(base), MODEL, OPTIONS)) as server:
        staging = base / MODEL / ".staging"
        staging.mkdir()
        (staging / "saved_model.pb").write_bytes(b"not a SavedModel")
        os.rename(staging, base / MODEL / "2")

        def after_the_failure():
            page = scrape(server)
            return page if ("enja_serving_version_load_failures_total", model) in page else None

        metrics = eventually(after_the_failure, what="a failed load counted")
        assert health(server.address, MODEL) == SERVING  # version 1 stays, as TF Serving keeps it
    assert metrics[("enja_serving_version_load_failures_total", model)] == 1
    assert metrics[("enja_serving_version_loads_total", model)] == 1
    assert metrics[("enja_serving_served_version", model)] == 1


@pytest.fixture
def metrics_server(standin_model_base, tmp_path):
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    with running(ModelServer(str(base), MODEL, OPTIONS)) as server:
        yield server


def test_metrics_count_a_predict_request_and_show_the_served_version(metrics_server):
    ok = frozenset({"api": "Predict", "model": MODEL, "version": "1", "signature": contract.SERVING_SIGNATURE,
                    "status": "OK"}.items())
    before = scrape(metrics_server)
    with grpc.insecure_channel(metrics_server.address) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(text_request(["hello"]),
                                                                           timeout=30)
    after = scrape(metrics_server)
    assert after[("enja_serving_requests_total", ok)] == before.get(("enja_serving_requests_total", ok),
                                                                    0) + 1
    assert after[("enja_serving_request_latency_seconds_count", ok)] >= 1
    batch = frozenset({"model": MODEL, "version": "1", "signature": contract.SERVING_SIGNATURE}.items())
    assert after[("enja_serving_batch_size_count", batch)] >= 1
    model = frozenset({"model": MODEL}.items())
    assert after[("enja_serving_served_version", model)] == 1
    assert after[("enja_serving_version_loads_total", model)] == 1
    assert ("enja_serving_version_load_failures_total", model) not in after


def test_metrics_count_failures_by_status_and_unknown_models_together(metrics_server):
    unknown = frozenset({"api": "Predict", "model": "<unknown>", "version": "", "signature": "",
                         "status": "NOT_FOUND"}.items())
    with grpc.insecure_channel(metrics_server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for name in ("no-such-model", "another-one"):
            request = text_request(["hello"])
            request.model_spec.name = name
            with pytest.raises(grpc.RpcError):
                stub.Predict(request, timeout=30)
    assert scrape(metrics_server)[("enja_serving_requests_total", unknown)] == 2


def test_metrics_count_model_service_calls(metrics_server):
    status_ok = frozenset({"api": "GetModelStatus", "model": MODEL, "version": "", "signature": "",
                           "status": "OK"}.items())
    reload_refused = frozenset({"api": "HandleReloadConfigRequest", "model": "", "version": "",
                                "signature": "",
                                "status": "INVALID_ARGUMENT"}.items())
    with grpc.insecure_channel(metrics_server.address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL}),
                            timeout=30)
        with pytest.raises(grpc.RpcError):
            # no models
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=30)
    metrics = scrape(metrics_server)
    assert metrics[("enja_serving_requests_total", status_ok)] == 1
    assert metrics[("enja_serving_requests_total", reload_refused)] == 1


def test_other_http_paths_answer_404_with_a_json_error(metrics_server):
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://{metrics_server.rest_api_address}/no/such/page", timeout=10)
    assert raised.value.code == 404
    assert json.loads(raised.value.read())["error"]


class FlakyPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Refuses the first `failures` Predict calls as UNAVAILABLE, then echoes the sentences back."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0
        self._lock = threading.Lock()

    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        with self._lock:
            self.calls += 1
            refuse = self.calls <= self.failures
        if refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not ready yet")
        response = predict_pb2.PredictResponse()
        sentences = tf.make_ndarray(request.inputs[contract.TEXT_INPUT])
        response.outputs[contract.TRANSLATIONS_OUTPUT].CopyFrom(tf.make_tensor_proto(np.asarray(sentences)))
        return response


@contextlib.contextmanager
def flaky_server(failures: int):
    servicer = FlakyPredictions(failures)
    server = grpc.server(futures.ThreadPoolExecutor(4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(0).wait()


def test_client_retries_unavailable_until_the_server_answers():
    with flaky_server(failures=2) as (address, servicer):
        assert client.translate(["hello"], server=address, timeout=10) == ["hello"]
        assert servicer.calls == 3


def test_client_gives_up_at_its_deadline_while_backing_off():
    """Five attempts would back off for up to 1.5 s; a 0.1 s deadline must end them."""
    with flaky_server(failures=1000) as (address, servicer), client.retrying_channel(address) as channel:
        # so the deadline is spent on attempts, not connecting
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            list(client.translate_batches(stub, ["hello"], MODEL, timeout=0.1))
        assert raised.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
        assert time.monotonic() - start < 1.0, "the retries outlived the caller's deadline"
        assert servicer.calls >= 1


# Batches that wait a second to fill, on one worker: long enough for a caller to give up.
SLOW_BATCHES = BatchOptions(max_batch_size=8, batch_timeout_s=1.0, num_batch_threads=1)


def test_a_predict_past_its_deadline_is_counted_and_never_run(standin_model_base, tmp_path):
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    options = dataclasses.replace(OPTIONS, batching=SLOW_BATCHES)
    with running(ModelServer(str(base), MODEL, options)) as server, \
            grpc.insecure_channel(server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(text_request(["hello"]), timeout=0.3)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        after = _after_a_later_call(server)
    _counted_expired_and_never_run(after, "Predict")


def _after_a_later_call(server: ModelServer) -> dict:
    """The metrics once a later call has been answered: a batch holding the expired request would have
    run by then (with the later one, or before it), so waiting for it replaces guessing a time."""
    with grpc.insecure_channel(server.address) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(text_request(["hello"]),
                                                                           timeout=30)
    return scrape(server)


def _counted_expired_and_never_run(after: dict, api: str) -> None:
    expired = frozenset({"api": api, "model": MODEL, "version": "1",
                         "signature": contract.SERVING_SIGNATURE, "status": "DEADLINE_EXCEEDED"}.items())
    assert after[("enja_serving_requests_total", expired)] == 1
    rows = sum(value for (name, _), value in after.items() if name == "enja_serving_batch_size_sum")
    assert rows == 1, "the expired request ran in a batch"  # the later call's row alone


def test_calls_over_the_concurrency_cap_are_refused_at_once(standin_model_base, tmp_path, batched_calls):
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    options = dataclasses.replace(OPTIONS, batching=SLOW_BATCHES, max_concurrent_rpcs=1)
    with running(ModelServer(str(base), MODEL, options)) as server, \
            grpc.insecure_channel(server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        first = stub.Predict.future(text_request(["hello"]), timeout=10)
        batched_calls.wait_for(1)  # the first call now waits a second for its batch
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(text_request(["hello"]), timeout=10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert not first.done(), "the second call waited for the first instead of being refused"
        assert first.result().outputs


def test_a_rest_predict_past_the_servers_timeout_is_answered_504_and_never_run(standin_model_base, tmp_path):
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    options = dataclasses.replace(OPTIONS, batching=SLOW_BATCHES, rest_api_timeout_s=0.3)
    with running(ModelServer(str(base), MODEL, options)) as server:
        request = urllib.request.Request(f"http://{server.rest_api_address}/v1/models/{MODEL}:predict",
                                         data=json.dumps({"instances": ["hello"]}).encode())
        start = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        assert raised.value.code == 504 and time.monotonic() - start < 0.9
        after = _after_a_later_call(server)
    _counted_expired_and_never_run(after, "rest:Predict")
