"""TF Serving's REST API on the `--rest_api_port`, against a real server over real HTTP.

One server per module, on the pipeline's pushed model with a version label, so
every path prefix (name, version, label) is served; its answers are checked
against the gRPC API's on the same server.
"""
import base64
import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

from enja.preprocessing import features
from enja.serving import contract, errors, warmup
from enja.serving.http_server import READ_TIMEOUT_S, HttpServer, Request, Response, Route
from enja.serving.server import METRICS_PATH, ModelServer, ServerOptions
from support.serving import (
    LIMITS,
    MODEL,
    SENTENCES,
    config_text,
    eventually,
    message,
    model_entry,
    newest_version,
    options_request,
    text_request,
)

LABEL = "stable"
SIGNATURES = {contract.SERVING_SIGNATURE, contract.OPTIONS_SIGNATURE, contract.ATTENTION_SIGNATURE,
              contract.EXAMPLES_SIGNATURE}
MAX_MESSAGE_BYTES = 64 * 1024  # small, so the oversized body is quick to send


@pytest.fixture(scope="module")
def server(pushed_model_base, tmp_path_factory):
    """A server on a copy of the pushed model, its newest version labelled LABEL."""
    base = tmp_path_factory.mktemp("rest") / "base"
    shutil.copytree(pushed_model_base, base)
    version = newest_version(str(base))
    warmup.write_warmup_requests(os.path.join(base, MODEL, str(version)), SENTENCES, MODEL)
    config = message(config_text(model_entry(str(base / MODEL), labels={LABEL: version})))
    options = ServerOptions(port=0, rest_api_port=0, limits=LIMITS, max_message_bytes=MAX_MESSAGE_BYTES)
    server = ModelServer.from_model_config(config, options)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def version(server) -> int:
    return server.versions.available_versions()[-1]


@pytest.fixture(scope="module")
def predictions(server):
    with grpc.insecure_channel(server.address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def call(server: ModelServer, method: str, path: str, body=None) -> tuple[int, dict]:
    """HTTP status and JSON answer; a dict body is sent as JSON, bytes as they are."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(f"http://{server.rest_api_address}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            content_type, status, text = answer.headers["Content-Type"], answer.status, answer.read()
    except urllib.error.HTTPError as error:  # an error status is an answer too
        content_type, status, text = error.headers["Content-Type"], error.code, error.read()
    assert content_type == "application/json"
    return status, json.loads(text)


def predict(server: ModelServer, body, prefix: str = f"/v1/models/{MODEL}") -> dict:
    status, answer = call(server, "POST", f"{prefix}:predict", body)
    assert status == 200, answer
    return answer


def grpc_outputs(predictions, request) -> dict[str, list]:
    response = predictions.Predict(request, timeout=60)
    return {key: tf.make_ndarray(tensor).tolist() for key, tensor in response.outputs.items()}


def prefixes(version: int) -> list[str]:
    return [f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/versions/{version}",
            f"/v1/models/{MODEL}/labels/{LABEL}"]


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


# --- status and metadata --------------------------------------------------------------------------

def test_model_status_under_every_prefix(server, version):
    for prefix in prefixes(version):
        assert call(server, "GET", prefix) == (200, {"model_version_status": [
            {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK",
                                                                       "error_message": ""}}]})


def test_metadata_under_every_prefix_is_the_grpc_signature_def_map(server, version, predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    expected = get_model_metadata_pb2.SignatureDefMap()
    predictions.GetModelMetadata(request, timeout=30).metadata["signature_def"].Unpack(expected)
    for prefix in prefixes(version):
        status, answer = call(server, "GET", f"{prefix}/metadata")
        assert status == 200
        assert answer["model_spec"] == {"name": MODEL, "version": str(version), "signature_name": ""}
        signatures = answer["metadata"]["signature_def"]["signature_def"]
        assert set(signatures) >= SIGNATURES  # with __saved_model_init_op, as TF Serving lists it too
        text = signatures[contract.SERVING_SIGNATURE]["inputs"][contract.TEXT_INPUT]
        assert text["dtype"] == "DT_STRING" and text["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
        parsed = json_format.ParseDict(answer["metadata"]["signature_def"],
                                       get_model_metadata_pb2.SignatureDefMap())
        assert parsed == expected


# --- predict ---------------------------------------------------------------------------------------

def test_row_format_answers_what_grpc_answers(server, predictions):
    expected = grpc_outputs(predictions, text_request(SENTENCES))
    answer = predict(server, {"instances": SENTENCES})
    assert [row["translations"] for row in answer["predictions"]] == [
        t.decode() for t in expected["translations"]]
    assert [np.float32(row["scores"]) for row in answer["predictions"]] == expected["scores"]
    named = predict(server, {"signature_name": contract.SERVING_SIGNATURE,
                             "instances": [{contract.TEXT_INPUT: sentence} for sentence in SENTENCES]})
    assert named == answer


def test_columnar_format_answers_outputs_by_name(server, predictions):
    expected = grpc_outputs(predictions, text_request(SENTENCES))
    answer = predict(server, {"inputs": SENTENCES})
    assert answer["outputs"]["translations"] == [t.decode() for t in expected["translations"]]
    assert np.array_equal(np.float32(answer["outputs"]["scores"]), expected["scores"])
    assert predict(server, {"inputs": {contract.TEXT_INPUT: SENTENCES}}) == answer


def test_every_prefix_predicts(server, version):
    answers = [predict(server, {"instances": SENTENCES[:1]}, prefix) for prefix in prefixes(version)]
    assert answers == answers[:1] * len(answers)


# Sentences of 1 to 13 tokens: even the smoke model, whose answers follow the length, translates some
# of them differently at widths 1 and 8.
WIDTH_SENTENCES = [*SENTENCES, "i like cats .", "where is the station ?", "he gave me a book yesterday .",
                   "he lived a hard life in the city for many years .", "what time is it now ?",
                   "she was afraid of the big black dog that lived next door ."]


def test_translate_with_options_takes_columnar_inputs(server, predictions):
    """Each width answers what gRPC answers at that width, and widths 1 and 8 answer differently: a
    beam width lost on the way in would show."""
    answers = {}
    for width in (1, 8):
        expected = grpc_outputs(predictions, options_request(WIDTH_SENTENCES, beam_width=width))
        answer = predict(server, {"signature_name": contract.OPTIONS_SIGNATURE,
                                  "inputs": {contract.TEXT_INPUT: WIDTH_SENTENCES,
                                             contract.BEAM_WIDTH_INPUT: width}})
        assert answer["outputs"]["translations"] == [t.decode() for t in expected["translations"]]
        assert np.array_equal(np.float32(answer["outputs"]["scores"]), expected["scores"])
        answers[width] = answer["outputs"]["translations"]
    assert answers[1] != answers[8], \
        "widths 1 and 8 answer the same: these sentences cannot show a lost width"


def test_base64_strings_are_binary_inputs(server):
    plain = predict(server, {"instances": SENTENCES})
    assert predict(server, {"instances": [b64(sentence.encode()) for sentence in SENTENCES]}) == plain
    examples = [tf.train.Example(features=tf.train.Features(feature={features.SOURCE_KEY: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[sentence.encode()]))})) for sentence in SENTENCES]
    answer = predict(server, {"signature_name": contract.EXAMPLES_SIGNATURE,
                              "instances": [b64(example.SerializeToString()) for example in examples]})
    assert [row["translations"] for row in answer["predictions"]] == [[row["translations"]]
                                                                       for row in plain["predictions"]]


def test_row_format_renders_each_instances_tensors(server):
    (row,) = predict(server, {"signature_name": contract.ATTENTION_SIGNATURE,
                              "instances": ["hello"]})["predictions"]
    assert set(row) == {contract.SOURCE_TOKENS_OUTPUT, contract.TARGET_TOKENS_OUTPUT,
                        contract.TARGET_IDS_OUTPUT,
                        contract.ATTENTION_OUTPUT}
    assert row[contract.SOURCE_TOKENS_OUTPUT][0] == "hello"
    weights = np.array(row[contract.ATTENTION_OUTPUT])
    assert weights.shape == (len(row[contract.TARGET_TOKENS_OUTPUT]), len(row[contract.SOURCE_TOKENS_OUTPUT]))
    assert all(isinstance(token_id, int) for token_id in row[contract.TARGET_IDS_OUTPUT])


# --- errors ----------------------------------------------------------------------------------------

PREDICT = f"/v1/models/{MODEL}:predict"
OPTIONS = {"signature_name": contract.OPTIONS_SIGNATURE}
BAD_REQUESTS = {
    # name: (method, path, body, HTTP status, what the message must say)
    "empty body": ("POST", PREDICT, b"", 400, "empty"),
    "bad JSON": ("POST", PREDICT, b'{"instances": [', 400, "JSON Parse error"),
    "not an object": ("POST", PREDICT, b'["hello"]', 400, "JSON object"),
    "nested too deeply": ("POST", PREDICT, b"[" * 50_000, 400, "JSON Parse error"),
    "no inputs": ("POST", PREDICT, {"signature_name": contract.SERVING_SIGNATURE}, 400, "'instances'"),
    "both formats": ("POST", PREDICT, {"instances": ["a"], "inputs": ["a"]}, 400, "exactly one"),
    "empty instances": ("POST", PREDICT, {"instances": []}, 400, "non-empty"),
    "wrong type": ("POST", PREDICT, {"instances": [1, 2]}, 400, "string"),
    "signature name not a string": ("POST", PREDICT, {"signature_name": 1, "instances": ["a"]}, 400,
                                    "signature_name"),
    "unknown signature": ("POST", PREDICT, {"signature_name": "nope", "instances": ["a"]}, 400, "nope"),
    "unknown model": ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404, "nope"),
    "unknown version": ("POST", f"/v1/models/{MODEL}/versions/999:predict", {"instances": ["a"]}, 404, "999"),
    "unknown label": ("POST", f"/v1/models/{MODEL}/labels/nope:predict", {"instances": ["a"]}, 404, "nope"),
    "missing input": ("POST", PREDICT, {**OPTIONS, "inputs": {"text": ["a"]}}, 400,
                      contract.BEAM_WIDTH_INPUT),
    "extra input": ("POST", PREDICT, {"inputs": {"text": ["a"], "extra": [1]}}, 400, "extra"),
    "extra instance key": ("POST", PREDICT, {"instances": [{"text": "a", "extra": 1}]}, 400, "extra"),
    "plain values for two inputs": ("POST", PREDICT, {**OPTIONS, "instances": ["a"]}, 400,
                                    contract.BEAM_WIDTH_INPUT),
    "a scalar input in rows": ("POST", PREDICT, {**OPTIONS, "instances": [{"text": "a", "beam_width": 1}]},
                               400,
                               contract.BEAM_WIDTH_INPUT),
    "instances naming other inputs": ("POST", PREDICT, {"instances": [{"text": "a"}, {"txt": "b"}]}, 400,
                                      "item 1"),
    "objects and values mixed": ("POST", PREDICT, {"instances": [{"text": "a"}, "b"]}, 400, "mixes"),
    "bad base64": ("POST", PREDICT, {"instances": [{"b64": "not base64!"}]}, 400, "base64"),
    "object as a value": ("POST", PREDICT, {"instances": [{"text": {"value": "a"}}]}, 400, "b64"),
    "integer out of range": ("POST", PREDICT, {**OPTIONS, "inputs": {"text": ["a"], "beam_width": 2**40}},
                             400,
                             "int32"),
    "integer beyond 64 bits": ("POST", PREDICT, {**OPTIONS, "inputs": {"text": ["a"], "beam_width": 10**30}},
                               400,
                               "outside int32's range"),
    "beam width over the limit": ("POST", PREDICT, {**OPTIONS, "inputs": {"text": ["a"],
                                                                          "beam_width": 10**6}}, 400,
                                  f"max_beam_width={LIMITS.max_beam_width}"),
    "ragged": ("POST", PREDICT, {"inputs": [["a"], ["b", "c"]]}, 400, "text"),
    "too many sentences": ("POST", PREDICT, {"instances": ["a"] * (LIMITS.max_batch_size + 1)}, 400, "limit"),
    "too long a sentence": ("POST", PREDICT, {"instances": ["x" * (LIMITS.max_chars + 1)]}, 400, "limit"),
    # The limits are held before a tensor is built (which would refuse the mixed types instead).
    "too long a sentence among values of no one type": ("POST", PREDICT,
                                                        {"instances": ["x" * (LIMITS.max_chars + 1), 5]}, 400,
                                                        f"more than the limit {LIMITS.max_chars}"),
    "too many sentences among values of no one type": (
        "POST", PREDICT, {"instances": [5] + ["a"] * LIMITS.max_batch_size}, 400,
        f"more than the limit {LIMITS.max_batch_size}"),
    "oversized body": ("POST", PREDICT, b" " * (MAX_MESSAGE_BYTES + 1), 413, str(MAX_MESSAGE_BYTES)),
    "status of an unknown model": ("GET", "/v1/models/nope", None, 404, "nope"),
    "status of an unknown version": ("GET", f"/v1/models/{MODEL}/versions/999", None, 404, "999"),
    "metadata of an unknown label": ("GET", f"/v1/models/{MODEL}/labels/nope/metadata", None, 404, "nope"),
    "version too large": ("GET", f"/v1/models/{MODEL}/versions/{10**20}", None, 400, "version"),
    "version not a number": ("GET", f"/v1/models/{MODEL}/versions/one", None, 400, "Malformed request"),
    "predict with GET": ("GET", PREDICT, None, 400, "Malformed request: GET"),
    "status with PUT": ("PUT", f"/v1/models/{MODEL}", b"", 400, "Malformed request: PUT"),
    # as TF Serving answers
    "OPTIONS": ("OPTIONS", f"/v1/models/{MODEL}", None, 400, "Malformed request: OPTIONS"),
    "a 10 kB model name": ("GET", "/v1/models/" + "x" * 10_000, None, 404, "x" * 100 + "..."),
    "unknown verb": ("POST", f"/v1/models/{MODEL}:translate", {}, 400, "Malformed request"),
    "classify": ("POST", f"/v1/models/{MODEL}:classify", {}, 501, "classify"),
    "path outside /v1": ("GET", "/v2/models/enja", None, 404, "Not found"),
}


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), BAD_REQUESTS.values(),
                         ids=BAD_REQUESTS.keys())
def test_bad_requests_answer_tf_servings_status_and_say_why(server, method, path, body, status, says):
    answer_status, answer = call(server, method, path, body)
    assert (answer_status, says in answer["error"]) == (status, True), answer
    assert len(answer["error"]) <= errors.MAX_MESSAGE_CHARS


def received(connection: socket.socket) -> bytes:
    """Everything the other end sends until it closes the connection."""
    return b"".join(iter(lambda: connection.recv(65536), b""))


def raw_http(server: ModelServer, data: bytes) -> bytes:
    """Send bytes as they are on a fresh connection; what the server answers before closing it."""
    host, port = server.rest_api_address.split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(data)
        return received(connection)


def parsed(answer: bytes) -> tuple[int, dict[str, str], dict]:
    """The status, headers and JSON body of a raw answer, which must say its length and type."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert (headers["Content-Type"], int(headers["Content-Length"])) == ("application/json",
                                                                         len(body)), answer
    return int(status_line.split()[1]), headers, json.loads(body)


PREDICT_HEAD = b"POST /v1/models/enja:predict HTTP/1.1\r\nHost: x\r\n"
REFUSED_BEFORE_ANY_ROUTE = {
    # name: (what is sent, HTTP status, what the message must say)
    "unknown method": (b"FOO /v1/models/enja HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid method"),
    "TRACE, which TF Serving does not take": (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "TRACE"),
    "request line over 64 KiB": (b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                                 "Got more than 65536 bytes"),
    "header line over 64 KiB": (b"GET /v1/models/enja HTTP/1.1\r\nX: " + b"x" * 70_000 + b"\r\n\r\n", 400,
                                "Got more than 65536 bytes"),
    "too many headers": (b"GET /v1/models/enja HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 400,
                         "Too many headers"),
    "no Host in HTTP/1.1": (b"GET /v1/models/enja HTTP/1.1\r\n\r\n", 400, "Host"),
    "garbled request line": (b"NOT HTTP AT ALL\r\n\r\n", 400, "Invalid method"),
    "binary garbage": (b"\x00\xff" * 100, 400, "Invalid method"),
    "HTTP/2 on the HTTP/1 port": (b"GET /v1/models/enja HTTP/2.0\r\n\r\n", 505, "version"),
    "Content-Length not a number": (PREDICT_HEAD + b"Content-Length: 1e3\r\n\r\n{}", 400, "Content-Length"),
    "Content-Length a superscript digit": (PREDICT_HEAD + "Content-Length: \u00b2\r\n\r\n{}".encode(), 400,
                                           "Content-Length"),
    "Content-Length of 4,301 digits": (PREDICT_HEAD + b"Content-Length: " + b"9" * 4301 + b"\r\n\r\n{}", 400,
                                       "Content-Length"),
    "Content-Length negative": (PREDICT_HEAD + b"Content-Length: -1\r\n\r\n", 400, "Content-Length"),
    "two Content-Lengths": (PREDICT_HEAD + b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}abc", 400,
                            "Duplicate Content-Length"),
    "chunked body over the limit": (PREDICT_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                                    + b"8000\r\n" + b" " * 0x8000 + b"\r\n" + b"8001\r\n" + b" " * 0x8001
                                    + b"\r\n0\r\n\r\n", 413, "over the limit"),
}


@pytest.mark.parametrize(("data", "status", "says"), REFUSED_BEFORE_ANY_ROUTE.values(),
                         ids=REFUSED_BEFORE_ANY_ROUTE.keys())
def test_requests_refused_before_any_route_answer_json_and_close(server, data, status, says):
    """The HTTP parser's own refusals too are TF Serving's JSON errors, not plain text; what follows
    them cannot be read as a request, so the connection closes."""
    answer_status, headers, answer = parsed(raw_http(server, data))
    assert (answer_status, says in answer["error"], headers["Connection"]) == (status, True, "close"), answer


def test_server_answers_after_a_burst_of_malformed_requests(server):
    garbage = [b"NOT HTTP AT ALL\r\n\r\n", b"\x00\xff" * 100,  # answered by the HTTP parser itself
               b"GET /v1/models/enja HTTP/1.0\r\nX: " + b"x" * 70_000 + b"\r\n\r\n",
               b"POST /v1/models/enja:predict HTTP/1.0\r\nContent-Length: -1\r\n\r\n"]
    bad = [body for _, path, body, *_ in BAD_REQUESTS.values() if path == PREDICT]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda data: raw_http(server, data), garbage * 4))
        statuses = list(pool.map(lambda body: call(server, "POST", PREDICT, body)[0], bad * 2))
    assert all(400 <= parsed(answer)[0] < 500 for answer in answers), answers
    assert all(400 <= status < 500 for status in statuses)
    assert len(predict(server, {"instances": SENTENCES})["predictions"]) == len(SENTENCES)


# Released by each POST /sleep once its handler runs: a test then knows its requests are in flight.
SLEEPERS = threading.Semaphore(0)


def slow_echo(request: Request) -> Response:
    SLEEPERS.release()
    time.sleep(float(request.body))
    return Response(200, request.body)


def wait_for_sleepers(count: int) -> None:
    for _ in range(count):
        assert SLEEPERS.acquire(timeout=10), "a /sleep request never reached its handler"


def echo_server(read_timeout_s: float = READ_TIMEOUT_S, **options) -> HttpServer:
    """A bare HTTP server (not started) answering POST /echo with the request's body, and POST /sleep after
    sleeping as many seconds as the body says."""
    routes = [Route("POST", re.compile("/echo"), lambda request: Response(200, request.body)),
              Route("POST", re.compile("/sleep"), slow_echo)]
    return HttpServer("127.0.0.1", 0, routes, max_body_bytes=1024, read_timeout_s=read_timeout_s, **options)


@contextlib.contextmanager
def started(server: HttpServer) -> Iterator[HttpServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def echo(connection: http.client.HTTPConnection, body: bytes) -> None:
    connection.request("POST", "/echo", body)
    assert connection.getresponse().read() == body


def test_a_client_that_stops_sending_times_out_without_holding_up_others():
    with started(echo_server(read_timeout_s=0.5)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            stalled.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 100\r\n\r\nonly part of it")
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/echo", data=b"meanwhile",
                                        timeout=10) as answer:
                assert answer.read() == b"meanwhile"
            answer = received(stalled)
        assert answer.startswith(b"HTTP/1.0 408") and b"incomplete" in answer


def test_one_connection_carries_a_clients_requests(server):
    """HTTP/1.1 keep-alive, as TF Serving speaks it: every answer, errors too, says its length and leaves the
    connection open for the next request."""
    host, port = server.rest_api_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    calls = [("GET", f"/v1/models/{MODEL}", None, 200),
             ("POST", PREDICT, json.dumps({"instances": SENTENCES[:1]}), 200),
             ("POST", "/v1/models/nope:predict", json.dumps({"instances": ["a"]}), 404),
             ("POST", PREDICT, b'{"instances": [', 400),
             ("HEAD", f"/v1/models/{MODEL}", None, 400),  # TF Serving's "Malformed request", without the body
             ("GET", "/no/such/page", None, 404),
             ("GET", METRICS_PATH, None, 200)]
    try:
        sockets = []
        for method, path, body, status in calls:
            connection.request(method, path, body)
            answer = connection.getresponse()
            answered = answer.read()
            assert (answer.status, answer.version, answer.getheader("Connection")) == (status, 11, None), path
            assert answer.getheader("Content-Length") and (answered == b"") == (method == "HEAD"), path
            sockets.append(connection.sock)
        assert sockets == sockets[:1] * len(calls) and sockets[0] is not None
    finally:
        connection.close()


def test_a_burst_of_connections_waits_for_the_server_and_is_answered():
    """More clients connect than http.server's listen queue of 5 holds before the server accepts any."""
    server = echo_server()
    connections = []
    try:
        for i in range(200):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            connections.append(connection)
            connection.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                               b"%d\r\n\r\n%d"
                               % (len(str(i)), i))
        server.start()
        for i, connection in enumerate(connections):
            answer = received(connection)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n%d" % i)
    finally:
        for connection in connections:
            connection.close()
        server.stop()


def test_an_idle_keep_alive_connection_is_closed_after_the_read_timeout():
    with started(echo_server(read_timeout_s=0.5)) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        echo(connection, b"hello")
        start = time.monotonic()
        assert connection.sock.recv(1) == b""  # the server closed it
        assert 0.4 < time.monotonic() - start < 5
        connection.close()


def test_stop_returns_promptly_and_closes_keep_alive_connections():
    """Left open, each would take requests for the stopped server until the read timeout (30 s); a
    request whose body has not come is not worth waiting the grace period for either."""
    server = echo_server(grace_s=10)
    server.start()
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(3)]
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        for connection in connections:
            echo(connection, b"hello")
        stalled.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part of it")
        time.sleep(0.2)
    finally:
        start = time.monotonic()
        server.stop()
    assert time.monotonic() - start < 2, "stop waited for the idle or stalled connections"
    assert received(stalled) == b""
    stalled.close()
    for connection in connections:
        assert connection.sock.recv(1) == b""  # closed by the server
        connection.close()


def test_headers_that_trickle_in_are_cut_off_at_the_read_timeout():
    """The timeout bounds the whole header, not each read: a byte every 0.2 s would hold a server that times
    each read for ever."""
    with started(echo_server(read_timeout_s=1)) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as trickle:
        start = time.monotonic()
        trickle.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):  # the server closing it is what is awaited
            while time.monotonic() - start < 5:
                trickle.sendall(b"X")
                time.sleep(0.2)
        assert received(trickle) == b"" and time.monotonic() - start < 3


def test_slow_clients_take_no_threads():
    with started(echo_server()) as server:
        before = threading.active_count()
        trickles = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)]
        try:
            for trickle in trickles:
                trickle.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
            eventually(lambda: server.open_connections == 200, timeout=10, what="every connection accepted")
            # a handler thread at most, for the body never comes
            assert threading.active_count() <= before + 1
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/echo", data=b"meanwhile",
                                        timeout=10) as answer:
                assert answer.read() == b"meanwhile"
        finally:
            for trickle in trickles:
                trickle.close()


def test_connections_over_the_cap_are_answered_503_and_closed():
    with started(echo_server(max_connections=2)) as server:
        held = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(2)]
        for connection in held:
            echo(connection, b"held")
        status, headers, answer = parsed(received(socket.create_connection(("127.0.0.1", server.port),
                                                                           timeout=10)))
        assert (status, headers["Connection"], "limit" in answer["error"]) == (503, "close", True), answer
        held.pop().close()
        eventually(lambda: server.open_connections < 2, timeout=5, what="the closed connection let go")
        echo(http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), b"room again")
        held[0].close()


def test_a_chunked_body_is_read_whole(server):
    body = json.dumps({"instances": SENTENCES[:1]}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]))
    status, _, answer = parsed(raw_http(server,
                                        PREDICT_HEAD + b"Transfer-Encoding: chunked\r\nConnection: close"
                                                b"\r\n\r\n" + chunks + b"0\r\n\r\n"))
    assert status == 200 and len(answer["predictions"]) == 1, answer


def test_stop_lets_requests_in_flight_finish_and_refuses_new_ones():
    server = echo_server(grace_s=5)
    server.start()
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        in_flight = [pool.submit(urllib.request.urlopen, f"http://127.0.0.1:{server.port}/sleep", b"1", 10)
                     for _ in range(4)]
        wait_for_sleepers(4)
        stopping = pool.submit(server.stop)
        time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError):  # the port is closed: the client goes elsewhere at once
            socket.create_connection(("127.0.0.1", server.port), timeout=1)
        assert [answer.result().read() for answer in in_flight] == [b"1"] * 4
        stopping.result()


def test_stop_cuts_requests_that_outlast_the_grace_period():
    server = echo_server(grace_s=0.5)
    server.start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(urllib.request.urlopen, f"http://127.0.0.1:{server.port}/sleep", b"5", 10)
        wait_for_sleepers(1)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2
        with pytest.raises(ConnectionError):  # http.client's RemoteDisconnected, or a reset
            slow.result()


# --- metrics ---------------------------------------------------------------------------------------

def request_counts(server: ModelServer) -> dict[tuple[str, str, str], float]:
    """enja_serving_requests_total by (api, model, status)."""
    with urllib.request.urlopen(f"http://{server.rest_api_address}{METRICS_PATH}", timeout=10) as page:
        text = page.read().decode("utf-8")
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "enja_serving_requests_total":
                key = (sample.labels["api"], sample.labels["model"], sample.labels["status"])
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def test_rest_calls_are_counted_apart_from_grpc(server, predictions):
    before = request_counts(server)
    predict(server, {"instances": SENTENCES[:1]})
    call(server, "POST", "/v1/models/nope:predict", {"instances": ["a"]})
    call(server, "GET", f"/v1/models/{MODEL}")
    call(server, "GET", f"/v1/models/{MODEL}/metadata")
    predictions.Predict(text_request(SENTENCES[:1]), timeout=60)
    after = request_counts(server)
    for key in [("rest:Predict", MODEL, "OK"), ("rest:Predict", "<unknown>", "NOT_FOUND"),
                ("rest:GetModelStatus", MODEL, "OK"), ("rest:GetModelMetadata", MODEL, "OK"),
                ("Predict", MODEL, "OK")]:
        assert after[key] == before.get(key, 0) + 1, key
