"""TF Serving's PredictionService and ModelService over one model's versions.

Only Predict, GetModelMetadata and GetModelStatus are served; the other RPCs
answer UNIMPLEMENTED, as TF Serving does for APIs a model does not support.
"""
import functools
import logging

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from enja.serving import request as request_lib
from enja.serving.batcher import Batcher
from enja.serving.errors import ServingError, invalid, not_found
from enja.serving.loader import LoadedModel
from enja.serving.versions import VersionManager

log = logging.getLogger(__name__)
SIGNATURE_DEF_FIELD = "signature_def"


def _rpc(method):
    """Turn ServingErrors into their status, and anything else into INTERNAL, without killing the server."""

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception as error:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return wrapper


def _unimplemented(self, request, context: grpc.ServicerContext):
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server implements Predict, GetModelMetadata and GetModelStatus")


class ModelResolver:
    """Maps a request's ModelSpec to a loaded version of the one model served."""

    def __init__(self, model_name: str, versions: VersionManager):
        self.model_name = model_name
        self.versions = versions

    def check_name(self, spec: model_pb2.ModelSpec) -> None:
        if spec.name != self.model_name:
            raise not_found(f"Servable not found for request: model '{spec.name}' is not served "
                            f"(this server serves '{self.model_name}')")

    def resolve(self, spec: model_pb2.ModelSpec) -> LoadedModel:
        self.check_name(spec)
        if spec.WhichOneof("version_choice") == "version_label":
            raise not_found(f"no version labels are configured (asked for '{spec.version_label}')")
        return self.versions.get(spec.version.value if spec.HasField("version") else None)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models: ModelResolver, limits: request_lib.RequestLimits, batcher: Batcher | None):
        self._models = models
        self._limits = limits
        self._batcher = batcher

    @_rpc
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        model = self._models.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        parsed = request_lib.parse_predict(request, model.signature(signature_name), self._limits)
        outputs = self._run(model, signature_name, parsed)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._models.model_name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature_name
        for key, array in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    def _run(self, model: LoadedModel, signature_name: str, parsed: request_lib.ParsedRequest):
        def run(inputs):
            return model.run(signature_name, inputs, parsed.output_keys)

        leading = {array.shape[0] if array.ndim else None for array in parsed.inputs.values()}
        if self._batcher is None or len(leading) != 1 or None in leading:
            return run(parsed.inputs)
        return self._batcher.run((id(model), signature_name, parsed.output_keys), parsed.inputs, run)

    @_rpc
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context) -> get_model_metadata_pb2.GetModelMetadataResponse:
        model = self._models.resolve(request.model_spec)
        fields = set(request.metadata_field)
        if fields != {SIGNATURE_DEF_FIELD}:
            raise invalid(f"metadata_field must be ['{SIGNATURE_DEF_FIELD}'], got {sorted(fields)}")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self._models.model_name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(
            get_model_metadata_pb2.SignatureDefMap(signature_def=model.signatures))
        return response

    Classify = Regress = MultiInference = _unimplemented


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: ModelResolver):
        self._models = models

    @_rpc
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context) -> get_model_status_pb2.GetModelStatusResponse:
        self._models.check_name(request.model_spec)
        statuses = self._models.versions.statuses()
        if request.model_spec.HasField("version"):
            wanted = request.model_spec.version.value
            if wanted not in statuses:
                raise not_found(f"version {wanted} of '{request.model_spec.name}' is unknown")
            statuses = {wanted: statuses[wanted]}
        if not statuses:
            raise not_found(f"no versions of '{request.model_spec.name}' found yet")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, status in sorted(statuses.items()):
            entry = response.model_version_status.add(version=version, state=status.state)
            if status.error:
                entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                entry.status.error_message = status.error
        return response

    HandleReloadConfigRequest = _unimplemented
