"""TF Serving's REST API, translated to and from the gRPC API's messages.

Each call builds the request proto TF Serving's REST handler builds from the
path and the JSON body, answers it with the servicers' own methods (so limits,
batching, metrics and error statuses are the gRPC API's, not re-implemented),
and renders the response as TF Serving does: model status and metadata in
protobuf's JSON mapping, predictions in the row format (`instances` in,
`predictions` out) or the columnar one (`inputs` in, `outputs` out). Errors
answer `{"error": "..."}` with the HTTP status TF Serving gives their gRPC code.

Paths, matched ignoring case like TF Serving's, where <model> is
`/v1/models/NAME`, `/v1/models/NAME/versions/N` or `/v1/models/NAME/labels/LABEL`:
`GET <model>` (status), `GET <model>/metadata`, `POST <model>:predict`.
Other `/v1/` requests answer 400 "Malformed request", as TF Serving's do.

Unlike TF Serving, a columnar request naming an input the signature lacks is
refused (TF Serving ignores it; gRPC Predict refuses it on both servers).
"""
import base64
import binascii
import functools
import json
import re
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager
from http import HTTPStatus
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from google.protobuf.message import Message
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2

from enja.serving import request as request_lib
from enja.serving.config import RequestLimits
from enja.serving.errors import ServingError, invalid, shortened
from enja.serving.http_server import ANY_METHOD, Handler, Request, Response, Route, error_response
from enja.serving.metrics import REST_API_PREFIX, RequestLabels
from enja.serving.servicer import SIGNATURE_DEF_FIELD, ModelServicer, PredictionServicer

# TF Serving's ToHTTPStatusCode: the HTTP status of an error's gRPC code.
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,  # "client closed request", which HTTPStatus lacks
    grpc.StatusCode.UNKNOWN: HTTPStatus.INTERNAL_SERVER_ERROR,
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: HTTPStatus.CONFLICT,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.ABORTED: HTTPStatus.CONFLICT,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: HTTPStatus.INTERNAL_SERVER_ERROR,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
}
# A model name, then optionally a version number or a version label.
MODEL_PATH = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
BASE64_KEY = "b64"  # TF Serving's binary strings are {"b64": "<base64>"}
BYTES_SUFFIX = "_bytes"  # string outputs named so are answered as binary strings, as TF Serving does
MAX_SHOWN_CHARS = 200  # of a client's value quoted in an error message
INT64_MAX = 2**63 - 1

Count = Callable[[str, str], AbstractContextManager[RequestLabels]]
Call = Callable[[model_pb2.ModelSpec, Request, RequestLabels], Any]  # answers with a JSON document


class RestApi:
    """The REST API's routes, answered through the servicers that answer gRPC."""

    def __init__(self, predictions: PredictionServicer, model_service: ModelServicer,
                 timeout_s: float = 30.0) -> None:
        """`timeout_s` bounds each predict as a gRPC deadline would (TF Serving's
        --rest_api_timeout_in_ms); 0: no bound."""
        self._predictions = predictions
        self._model_service = model_service
        self._timeout_s = timeout_s

    def routes(self) -> list[Route]:
        return [
            Route("GET", _path(MODEL_PATH + "/metadata"),
                  _handler(self._predictions.count, "GetModelMetadata", self._metadata)),
            Route("GET", _path(MODEL_PATH), _handler(self._model_service.count, "GetModelStatus",
                                                     self._status)),
            Route("POST", _path(MODEL_PATH + ":predict"), _handler(self._predictions.count, "Predict",
                                                                   self._predict)),
            Route("POST", _path(MODEL_PATH + ":(?:classify|regress)"), _unimplemented),
            Route(ANY_METHOD, _path("/v1/.*"), _malformed),
        ]

    def _status(self, spec: model_pb2.ModelSpec, request: Request, labels: RequestLabels) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        return _proto_json(self._model_service.model_status(request))

    def _metadata(self, spec: model_pb2.ModelSpec, request: Request, labels: RequestLabels) -> dict:
        response = self._predictions.metadata(
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec,
                                                           metadata_field=[SIGNATURE_DEF_FIELD]), labels)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures)
        # The map unpacked, as TF Serving renders it (protobuf's JSON would add the Any's "@type").
        return {"model_spec": _proto_json(response.model_spec),
                "metadata": {SIGNATURE_DEF_FIELD: _proto_json(signatures)}}

    def _predict(self, spec: model_pb2.ModelSpec, request: Request, labels: RequestLabels) -> dict:
        # From the headers' arrival, so that time spent waiting for a handler thread counts.
        deadline = request.received_at + self._timeout_s if self._timeout_s > 0 else None
        document = _json_object(request.body)
        signature_name = document.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid(f"'signature_name' must be a string, not {_shown(signature_name)}")
        spec.signature_name = signature_name
        signature = self._predictions.signature(spec, labels)
        if ("instances" in document) == ("inputs" in document):
            raise invalid("the request needs exactly one of 'instances' (row format) and 'inputs' "
                          "(columnar format)")
        rows = "instances" in document
        if rows:
            values = _row_inputs(document["instances"], signature)
        else:
            values = _columnar_inputs(document["inputs"], signature)
        predict = predict_pb2.PredictRequest(model_spec=spec)
        for alias, value in values.items():
            predict.inputs[alias].CopyFrom(_tensor(alias, value, signature, self._predictions.limits))
        response = self._predictions.predict(predict, labels, deadline)
        outputs = {key: _json_value(key, tf.make_ndarray(tensor)) for key,
                   tensor in sorted(response.outputs.items())}
        return {"predictions": _rows(outputs)} if rows else {"outputs": _only_or_all(outputs)}


def _path(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)  # as TF Serving matches its paths


def _handler(count: Count, api: str, call: Call) -> Handler:
    """Answer a request for the model its path names, counted under the REST form of `api`."""

    def handle(request: Request) -> Response:
        name = urllib.parse.unquote(request.captures["name"])
        try:
            with count(REST_API_PREFIX + api, name) as labels:
                document = call(_model_spec(name, request.captures), request, labels)
        except ServingError as error:
            return error_response(HTTP_STATUS[error.code], error.message)
        return Response(HTTPStatus.OK, (json.dumps(document, ensure_ascii=False,
                                                   indent=2) + "\n").encode("utf-8"))

    return handle


def _unimplemented(request: Request) -> Response:
    return error_response(HTTPStatus.NOT_IMPLEMENTED,
                          "this server's REST API implements predict, not classify or regress")


def _malformed(request: Request) -> Response:
    return error_response(HTTPStatus.BAD_REQUEST, f"Malformed request: {request.method} {request.path}")


def _model_spec(name: str, captures: dict[str, str]) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if "version" in captures:
        version = captures["version"]
        if len(version) > len(str(INT64_MAX)) or int(version) > INT64_MAX:
            raise invalid(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    elif "label" in captures:
        spec.version_label = urllib.parse.unquote(captures["label"])
    return spec


def _proto_json(message: Message) -> dict:
    """A message as TF Serving renders it: proto field names, fields at their defaults included."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


def _shown(value: Any) -> str:
    return shortened(value if isinstance(value, str) else json.dumps(value), MAX_SHOWN_CHARS)


def _json_object(body: bytes) -> dict:
    if not body:
        raise invalid("JSON Parse error: the request body is empty")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deeply
        raise invalid(f"JSON Parse error: {error}") from error
    if not isinstance(document, dict):
        raise invalid(f"the request body must be a JSON object, not {_shown(document)}")
    return document


def _is_base64(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {BASE64_KEY} and isinstance(value[BASE64_KEY], str)


def _names_inputs(value: Any) -> bool:
    """Whether a value is an object of named inputs (rather than one input's value)."""
    return isinstance(value, dict) and not _is_base64(value)


def _only_input(signature: meta_graph_pb2.SignatureDef, field: str) -> str:
    if len(signature.inputs) != 1:
        raise invalid(f"'{field}' holds plain values, but the signature has the inputs "
                      f"{sorted(signature.inputs)}: name each in an object")
    (alias,) = signature.inputs
    return alias


def _row_inputs(instances: Any, signature: meta_graph_pb2.SignatureDef) -> dict[str, list]:
    """Each input's values, one per instance: instances are objects naming every input, or bare values of the
    only one."""
    if not isinstance(instances, list) or not instances:
        raise invalid("'instances' must be a non-empty list")
    named = [_names_inputs(instance) for instance in instances]
    if not any(named):
        return {_only_input(signature, "instances"): instances}
    if not all(named):
        raise invalid(f"'instances' mixes objects and plain values (item {named.index(not named[0])} differs "
                      "from item 0)")
    keys = set(instances[0])
    for i, instance in enumerate(instances):
        if set(instance) != keys:
            raise invalid(f"item {i} of 'instances' has the inputs {sorted(instance)}, item 0 {sorted(keys)}")
    return {alias: [instance[alias] for instance in instances] for alias in keys}


def _columnar_inputs(inputs: Any, signature: meta_graph_pb2.SignatureDef) -> dict[str, Any]:
    """Each input's value: an object naming every input, or the only one's value."""
    return inputs if _names_inputs(inputs) else {_only_input(signature, "inputs"): inputs}


def _decode_base64(alias: str, value: Any) -> Any:
    """A JSON value with its binary strings, {"b64": "<base64>"}, decoded to bytes."""
    if isinstance(value, list):
        return [_decode_base64(alias, item) for item in value]
    if not isinstance(value, dict):
        return value
    if not _is_base64(value):
        raise invalid(f"input '{alias}' has the object {_shown(value)} where a value belongs "
                      f'(binary strings are written {{"{BASE64_KEY}": "<base64>"}})')
    try:
        return base64.b64decode(value[BASE64_KEY], validate=True)
    except binascii.Error as error:
        raise invalid(f"input '{alias}' has a '{BASE64_KEY}' value that is not base64: {error}") from error


def _tensor(alias: str, value: Any, signature: meta_graph_pb2.SignatureDef,
            limits: RequestLimits) -> tensor_pb2.TensorProto:
    """A JSON value as a tensor of the input's type, held to the limits before it is built. An input
    the signature lacks is passed on empty, for Predict's own check to name it with the signature's inputs."""
    if alias not in signature.inputs:
        return tensor_pb2.TensorProto()
    dtype = tf.dtypes.as_dtype(signature.inputs[alias].dtype)
    try:
        plain = _decode_base64(alias, value)
        request_lib.check_json_input(alias, plain, limits)
        tensor = tf.make_tensor_proto(plain, dtype=dtype)
    except OverflowError as error:  # an integer beyond what numpy holds (JSON has no bound)
        raise invalid(f"input '{alias}' has values outside {dtype.name}'s range") from error
    except (TypeError, ValueError, RecursionError) as error:
        raise invalid(f"input '{alias}' is not a {dtype.name} tensor: {_shown(str(error))}") from error
    if dtype.is_integer and not np.array_equal(tf.make_ndarray(tensor), np.asarray(plain)):
        # make_tensor_proto wraps them
        raise invalid(f"input '{alias}' has values outside {dtype.name}'s range")
    return tensor


def _json_value(name: str, array: np.ndarray) -> Any:
    """An output as JSON: strings as text (binary strings if the name ends in _bytes, as TF Serving does),
    floats at their own precision (0.1, not float32's 0.10000000149011612)."""
    if array.dtype.kind == "f":
        # numpy prints the shortest decimal that reads back
        return array.astype(str).astype(np.float64).tolist()
    if array.dtype != object:
        return array.tolist()
    convert = _binary_string if name.endswith(BYTES_SUFFIX) else functools.partial(_text, name)
    return np.vectorize(convert, otypes=[object])(array).tolist()


def _binary_string(value: bytes) -> dict:
    return {BASE64_KEY: base64.b64encode(value).decode("ascii")}


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ServingError(grpc.StatusCode.INTERNAL, f"output '{name}' is not UTF-8 text; name it "
                                                     f"'...{BYTES_SUFFIX}' to answer it as base64") from error


def _rows(outputs: dict[str, Any]) -> list:
    """Row format: one entry per instance, an object of the outputs (bare values if there is only one)."""
    sizes = {key: len(value) if isinstance(value, list) else None for key, value in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise invalid(f"outputs with batch sizes {sizes} cannot be split into instances; "
                      "send 'inputs' for the columnar format")
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return [dict(zip(outputs, row, strict=True)) for row in zip(*outputs.values(), strict=True)]


def _only_or_all(outputs: dict[str, Any]) -> Any:
    """Columnar format: the only output's value, or an object of them all."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs
