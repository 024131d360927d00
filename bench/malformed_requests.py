"""Malformed gRPC and HTTP requests for bench/serving_fuzz.py, and what a server's answer to each
must be; not a bench itself.

gRPC: random bytes to the services' methods, mutated serialized PredictRequests, and plausible-but-wrong
PredictRequests (wrong dtypes, ranks, shapes, names, sizes, versions, signatures, beam widths). A call must
end in a status other than UNKNOWN (an unhandled exception), UNAVAILABLE or DEADLINE_EXCEEDED (a dead or
stuck server). HTTP: random methods, paths, bodies and framing; a request must get a response, with a JSON
{"error": ...} body unless it is a 200 or answers HEAD. HandleReloadConfigRequest is left out: a random
config that parses is a legitimate order to serve something else.
"""
import base64
import dataclasses
import http.client
import json
import random
import urllib.parse
from collections.abc import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import predict_pb2

from enja.serving import contract
from enja.serving.predict_api import predict_request
from enja.serving.server import METRICS_PATH
from serving_harness import SENTENCES, TIMEOUT_S, describe

# A gRPC status no bad request should get: an unhandled exception, or a server that died or hangs.
BAD_GRPC_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclasses.dataclass(frozen=True)
class Answer:
    """A server's answer to one malformed call."""
    answer: str  # e.g. "gRPC NOT_FOUND", "HTTP 404", "no HTTP response (TimeoutError)"
    problem: str | None = None  # how the answer breaks the contract; None if it does not
    detail: str = ""  # the error message or the body


# --- gRPC -----------------------------------------------------------------------------------------

Fault = Callable[[random.Random, str], predict_pb2.PredictRequest]


def _request(model_name: str, inputs: dict,
             signature: str = contract.SERVING_SIGNATURE) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for alias, tensor in inputs.items():
        request.inputs[alias].CopyFrom(tensor if isinstance(tensor, tensor_pb2.TensorProto)
                                       else tf.make_tensor_proto(tensor))
    return request


def _text(values) -> tensor_pb2.TensorProto:
    return tf.make_tensor_proto(values, dtype=tf.string)


def _odd_shape(rng: random.Random) -> tensor_pb2.TensorProto:
    """A string tensor whose shape disagrees with its values, or cannot be."""
    sizes = rng.choice([[3], [-1], [-5], [2**24], [2**40], [0, 2**40], [2**31, 2**31]])
    return tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[b"i like cats ."],
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size)
                                           for size in sizes]))


def _with_spec(rng: random.Random, model_name: str) -> predict_pb2.PredictRequest:
    """A good request for a version, label or signature the server does not have."""
    request = predict_request(["i like cats ."], model_name)
    choice = rng.randrange(3)
    if choice == 0:
        request.model_spec.version.value = rng.choice([0, -1, 1, 2**63 - 1])
    elif choice == 1:
        request.model_spec.version_label = rng.choice(["", "stable", "x" * 1000])
    else:
        request.model_spec.signature_name = rng.choice(["nope", "translate_examples", "x" * 1000])
    return request


def _unknown_output(rng: random.Random, model_name: str) -> predict_pb2.PredictRequest:
    request = predict_request(["i like cats ."], model_name)
    request.output_filter.append(rng.choice(["nope", "", contract.ATTENTION_OUTPUT]))
    return request


def _beam_width(rng: random.Random, model_name: str) -> predict_pb2.PredictRequest:
    """Beam widths the contract refuses. (Huge ones it allows: 2**31 - 1 holds 8 GB for a minute.)"""
    beam_width = rng.choice([tf.make_tensor_proto(rng.choice([0, -1, -2**31]), dtype=tf.int32),
                             tf.make_tensor_proto([2, 3], dtype=tf.int32), tf.make_tensor_proto(4.0)])
    return _request(model_name, {contract.TEXT_INPUT: _text(["i like cats ."]),
                                 contract.BEAM_WIDTH_INPUT: beam_width},
                    contract.OPTIONS_SIGNATURE)


PLAUSIBLE_FAULTS: dict[str, Fault] = {
    "wrong dtype": lambda rng, name: _request(name, {contract.TEXT_INPUT: rng.choice(
        [np.array([1.5], np.float32), np.array([3], np.int32), np.array([True]), np.array([7], np.int64)])}),
    "wrong rank": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(rng.choice(
        ["i like cats .", [["i like cats ."]], [["a", "b", "c"], ["d", "e", "f"]]]))}),
    "odd shape": lambda rng, name: _request(name, {contract.TEXT_INPUT: _odd_shape(rng)}),
    "empty batch": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(np.array([], dtype=object))}),
    "too many rows": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(
        ["i like cats ."] * rng.choice([257, 5000]))}),
    "long string": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(["cats " * rng.choice(
        [201, 20_000, 800_000, 1_000_000])])}),  # 1 kB over the limit, to over gRPC's 4 MB
    "not UTF-8": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(
        [rng.randbytes(rng.randint(1, 50))])}),
    "wrong input name": lambda rng, name: _request(name, {rng.choice(["", "txt", "examples", "TEXT"]):
                                                          _text(["hi ."])}),
    "extra input": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(["hi ."]),
                                                     "extra": _text(["x"])}),
    "no inputs": lambda rng, name: _request(name, {}),
    "unknown model": lambda rng, name: predict_request(
        ["hi ."], rng.choice(["", "nope", name.upper(), "x" * 10_000])),
    "unknown version, label or signature": _with_spec,
    "unknown output": _unknown_output,
    "beam width": _beam_width,
    "bad tensor content": lambda rng, name: _request(name, {contract.TEXT_INPUT: tensor_pb2.TensorProto(
        dtype=tf.string.as_datatype_enum, tensor_content=rng.randbytes(64),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]))}),
}
GRPC_METHODS = tuple(f"/tensorflow.serving.{method}" for method in (
    "PredictionService/Predict", "PredictionService/GetModelMetadata", "PredictionService/Classify",
    "ModelService/GetModelStatus", "PredictionService/NoSuchMethod"))


def mutated(rng: random.Random, message: bytes) -> bytes:
    """A few random byte edits of a serialized message."""
    data = bytearray(message)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(data) + 1)
        edit = rng.randrange(3)
        if edit == 0 and position < len(data):
            data[position] = rng.randrange(256)
        elif edit == 1:
            data.insert(position, rng.randrange(256))
        else:
            del data[position:position + rng.randint(1, 4)]
    return bytes(data)


def random_grpc_call(rng: random.Random, model_name: str) -> tuple[str, str, bytes]:
    """(kind, method, serialized request) of one malformed call."""
    kind = rng.choice(["random bytes", "mutated request", *PLAUSIBLE_FAULTS])
    if kind == "random bytes":
        method = rng.choice(GRPC_METHODS)
        garbage = rng.randbytes(rng.choice([0, 1, 16, 300, 5000]))
        return f"random bytes to {method.rsplit('/', 1)[1]}", method, garbage
    if kind == "mutated request":
        good = predict_request(rng.sample(SENTENCES, 2), model_name).SerializeToString()
        return kind, GRPC_METHODS[0], mutated(rng, good)
    return kind, GRPC_METHODS[0], PLAUSIBLE_FAULTS[kind](rng, model_name).SerializeToString()


def grpc_answer(channel: grpc.Channel, method: str, request: bytes) -> Answer:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)  # bytes both ways
    try:
        call(request, timeout=TIMEOUT_S)
    except grpc.RpcError as error:
        problem = "a dead, stuck or failing server's status" if error.code() in BAD_GRPC_CODES else None
        return Answer(f"gRPC {error.code().name}", problem, error.details() or "")
    except Exception as error:
        return Answer(f"no gRPC status ({type(error).__name__})", "no status", describe(error))
    return Answer("gRPC OK")


# --- HTTP -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HttpCall:
    kind: str  # the method and what the path and framing are, for the answer table
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def _random_path(rng: random.Random, model_name: str) -> tuple[str, str]:
    """(what the path is, the path)."""
    junk = urllib.parse.quote(rng.randbytes(rng.choice([1, 20, 300])), safe="")
    model = f"/v1/models/{model_name}"
    paths = {
        "predict": f"{model}:predict", "status": model, "metadata": f"{model}/metadata",
        "a version's predict": f"{model}/versions/{rng.choice([0, 1, 10**30])}:predict",
        "junk version": f"{model}/versions/{junk}:predict", "junk label": f"{model}/labels/{junk}:predict",
        "junk model": f"/v1/models/{junk}:predict",
        "other verb": f"{model}:{rng.choice(['classify', 'regress', junk])}",
        "junk under /v1": f"/v1/{junk}", "junk": f"/{junk}", "metrics": METRICS_PATH,
        "long path": "/v1/models/" + "x" * rng.choice([1000, 70_000]),
        "predict?junk": f"{model}:predict?{junk}",
    }
    label = rng.choice(sorted(paths))
    return label, paths[label]


def _random_document(rng: random.Random) -> object:
    """A JSON document near a predict request's: wrong types, sizes and formats."""
    sentence = rng.choice(SENTENCES)
    instances = rng.choice([
        [], 5, sentence, [sentence], [[sentence]], [{contract.TEXT_INPUT: sentence}], [{"txt": sentence}],
        [{contract.TEXT_INPUT: sentence, "extra": 1}], [1, 2], [None], [True], [1e308], [{"b64": "!!!"}],
        [{"b64": base64.b64encode(rng.randbytes(30)).decode()}], [sentence] * rng.choice([256, 257]),
        ["cats " * 200_000], [sentence, {contract.TEXT_INPUT: sentence}],
        [{contract.TEXT_INPUT: [sentence]}]])
    return rng.choice([
        {"instances": instances}, {"inputs": instances}, {"instances": [sentence], "inputs": [sentence]},
        {"signature_name": rng.choice([5, None, "nope", contract.ATTENTION_SIGNATURE,
                                       contract.OPTIONS_SIGNATURE]),
         "instances": instances},
        {"signature_name": contract.OPTIONS_SIGNATURE,
         "inputs": {contract.TEXT_INPUT: [sentence],
                    contract.BEAM_WIDTH_INPUT: rng.choice([0, -1, 2**40, 4, "4"])}},
        [], 5, None, "instances"])


def _random_body(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return b""
    if choice == 1:
        return rng.randbytes(rng.choice([1, 100, 10_000]))
    if choice == 2:
        return rng.choice([b"{", b'{"instances": [', b"{'instances': []}", b'{"instances": ["\\ud800"]}',
                           b"NaN"])
    if choice == 3:
        depth = rng.choice([100, 100_000])
        return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    return json.dumps(_random_document(rng)).encode("utf-8")


def random_http_call(rng: random.Random, model_name: str) -> HttpCall:
    method = rng.choice(["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO"])
    body = _random_body(rng)
    headers = rng.choice([{"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {},
                          {"Content-Length": rng.choice(["abc", "-1", " 5", "1e3"])},
                          {"Transfer-Encoding": "chunked"}])
    label, path = _random_path(rng, model_name)
    framing = "".join(f" with {name}: {value!r}" for name, value in headers.items() if name != "Content-Type")
    return HttpCall(f"{method} {label}{framing}", method, path, body, headers)


def http_answer(rest_address: str, call: HttpCall) -> Answer:
    connection = http.client.HTTPConnection(*rest_address.rsplit(":", 1), timeout=TIMEOUT_S)
    try:
        connection.putrequest(call.method, call.path, skip_accept_encoding=True)
        for name, value in call.headers.items():
            connection.putheader(name, value)
        if "Content-Length" not in call.headers:
            connection.putheader("Content-Length", str(len(call.body)))
        connection.endheaders(call.body)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        return Answer(f"no HTTP response ({type(error).__name__})", "no response", describe(error))
    finally:
        connection.close()
    answer = f"HTTP {response.status}"
    if response.status == 200 or call.method == "HEAD":
        return Answer(answer, detail=repr(body[:200]))
    try:
        document = json.loads(body)
    except ValueError:
        return Answer(answer, "body not JSON", repr(body[:200]))
    if not isinstance(document, dict) or not isinstance(document.get("error"), str):
        return Answer(answer, "JSON body without an 'error' string", repr(body[:200]))
    return Answer(answer, detail=document["error"])
