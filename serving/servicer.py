"""TF Serving's PredictionService and ModelService over the configured models.

Predict, GetModelMetadata, GetModelStatus and HandleReloadConfigRequest are
served; the other RPCs answer UNIMPLEMENTED, as TF Serving does for APIs a
model does not support. The REST API (rest_api.py) calls the same `count`,
`predict`, `metadata` and `model_status`, so both APIs check, limit, batch,
count and fail alike.
"""
import functools
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf.message import Message
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from enja.serving import request as request_lib
from enja.serving.batcher import Batcher
from enja.serving.config import RequestLimits
from enja.serving.errors import ServingError, invalid, not_found, seconds_left, shortened
from enja.serving.loader import LoadedModel
from enja.serving.metrics import RequestLabels, ServerMetrics
from enja.serving.model_config import ModelConfigError, ModelServerConfig
from enja.serving.served_models import ServedModels
from enja.serving.versions import State

log = logging.getLogger(__name__)
SIGNATURE_DEF_FIELD = "signature_def"
UNKNOWN_MODEL = "<unknown>"  # what requests for a model the server does not serve are counted under
SERVER_WIDE = ""  # the model label of calls about no one model (a config reload)


_Method = Callable[[Any, Message, grpc.ServicerContext], Message]


def _rpc(method: _Method) -> _Method:
    """Turn ServingErrors into their status, and anything else into INTERNAL, without killing the
    server."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Message, context: grpc.ServicerContext) -> Message:
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception as error:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, shortened(f"{type(error).__name__}: {error}"))

    return wrapper


def _unimplemented(self: Any, request: Message, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  "this server implements Predict, GetModelMetadata, GetModelStatus and "
                  "HandleReloadConfigRequest")


class _CountedService:
    """Counts each call in the server's metrics (see metrics.py for the `api` label's values)."""

    def __init__(self, models: ServedModels, metrics: ServerMetrics) -> None:
        self._models = models
        self._metrics = metrics

    def count(self, api: str, model_name: str) -> AbstractContextManager[RequestLabels]:
        """Count and time the block as one call; calls for models the server does not serve are counted
        together, so clients cannot grow the metrics without bound."""
        known = model_name in self._models.managers
        return self._metrics.request(RequestLabels(api, model_name if known else UNKNOWN_MODEL))


def _signature_name(spec: model_pb2.ModelSpec) -> str:
    return spec.signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


def _signature(model: LoadedModel, spec: model_pb2.ModelSpec,
               labels: RequestLabels) -> meta_graph_pb2.SignatureDef:
    """The signature a spec names, noting the version and signature the call is counted under."""
    labels.version = str(model.version)
    signature_name = _signature_name(spec)
    signature = model.signature(signature_name)
    labels.signature = signature_name  # once it names a real signature: client-chosen names are unbounded
    return signature


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer, _CountedService):
    """The gRPC methods count and answer a call; `predict` and `metadata` answer, for REST calls too."""

    def __init__(self, models: ServedModels, limits: RequestLimits, batcher: Batcher | None,
                 metrics: ServerMetrics) -> None:
        super().__init__(models, metrics)
        self.limits = limits
        self._batcher = batcher

    @_rpc
    def Predict(self, request: predict_pb2.PredictRequest,
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        remaining = context.time_remaining()  # None when the caller set no deadline
        deadline = None if remaining is None else time.monotonic() + remaining
        with self.count("Predict", request.model_spec.name) as labels:
            return self.predict(request, labels, deadline)

    def signature(self, spec: model_pb2.ModelSpec, labels: RequestLabels) -> meta_graph_pb2.SignatureDef:
        """The signature a Predict for `spec` would run now (REST reads JSON by its input types)."""
        return _signature(self._models.resolve(spec), spec, labels)

    def predict(self, request: predict_pb2.PredictRequest, labels: RequestLabels,
                deadline: float | None = None) -> predict_pb2.PredictResponse:
        """Run a Predict by `deadline` (a time.monotonic() value), filling in the version and
        signature it is counted under."""
        model = self._models.resolve(request.model_spec)
        signature = _signature(model, request.model_spec, labels)
        signature_name = _signature_name(request.model_spec)
        parsed = request_lib.parse_predict(request, signature, self.limits)
        outputs = self._run(model, request.model_spec.name, signature_name, parsed, deadline)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature_name
        for key, array in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    def _run(self, model: LoadedModel, model_name: str, signature_name: str,
             parsed: request_lib.ParsedRequest,
             deadline: float | None) -> dict[str, np.ndarray]:
        def run(inputs: dict[str, np.ndarray], deadline: float | None) -> dict[str, np.ndarray]:
            return model.run(signature_name, inputs, parsed.output_keys, timeout_s=seconds_left(deadline))

        def run_batch(inputs: dict[str, np.ndarray], deadline: float | None) -> dict[str, np.ndarray]:
            self._metrics.batch(model_name, model.version, signature_name, len(next(iter(inputs.values()))))
            return run(inputs, deadline)

        leading = {array.shape[0] if array.ndim else None for array in parsed.inputs.values()}
        if self._batcher is None or len(leading) != 1 or None in leading:
            return run(parsed.inputs, deadline)
        return self._batcher.run((id(model), signature_name, parsed.output_keys), parsed.inputs, run_batch,
                                 deadline)

    @_rpc
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        with self.count("GetModelMetadata", request.model_spec.name) as labels:
            return self.metadata(request, labels)

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                 labels: RequestLabels) -> get_model_metadata_pb2.GetModelMetadataResponse:
        model = self._models.resolve(request.model_spec)
        labels.version = str(model.version)
        fields = set(request.metadata_field)
        if fields != {SIGNATURE_DEF_FIELD}:
            raise invalid(f"metadata_field must be ['{SIGNATURE_DEF_FIELD}'], got {sorted(fields)}")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(
            get_model_metadata_pb2.SignatureDefMap(signature_def=model.signatures))
        return response

    Classify = Regress = MultiInference = _unimplemented


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer, _CountedService):
    """The gRPC methods count and answer a call; `model_status` answers, for REST calls too."""

    def __init__(self, models: ServedModels, reload: Callable[[ModelServerConfig], None],
                 metrics: ServerMetrics) -> None:
        super().__init__(models, metrics)
        self._reload = reload

    @_rpc
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        with self.count("GetModelStatus", request.model_spec.name):
            return self.model_status(request)

    def model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                     ) -> get_model_status_pb2.GetModelStatusResponse:
        """Every known version's state, or the one the spec names; each with a status, OK unless it failed."""
        spec = request.model_spec
        statuses = self._models.versions(spec.name).statuses()
        wanted = self._models.version_of(spec)
        if wanted is not None:
            if wanted not in statuses:
                raise not_found(f"version {wanted} of '{spec.name}' is unknown")
            statuses = {wanted: statuses[wanted]}
        if not statuses:
            raise not_found(f"no versions of '{spec.name}' found yet")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, status in sorted(statuses.items()):
            entry = response.model_version_status.add(version=version, state=status.state)
            entry.status.SetInParent()  # error_code OK, as TF Serving answers for a version that did not fail
            if status.error and status.state == State.END:  # a load being retried has not failed yet
                entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                entry.status.error_message = status.error
        return response

    @_rpc
    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        """Apply the config (not written anywhere); one that cannot be applied leaves the old in force."""
        with self._metrics.request(RequestLabels("HandleReloadConfigRequest", SERVER_WIDE)):
            try:
                self._reload(request.config)
            except ModelConfigError as error:
                raise invalid(f"config not applied, the previous one stays in force: {error}") from error
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()  # error_code OK, as TF Serving answers
        return response
