"""TF Serving's Predict API as a client uses it, without starting TensorFlow.

tensorflow-serving-api's messages are built on TensorFlow's own protos (TensorProto, …), which
live inside the `tensorflow` package, so importing them runs `tensorflow/__init__.py` and loads
all of TensorFlow: seconds on an idle machine, most of a minute on a busy one, for a client
(`enja translate`) that needs none of it. When TensorFlow is not loaded yet, the proto modules
are imported with a stand-in for the `tensorflow` package that only tells Python where its
folder is; the stand-in is removed at once, so a later `import tensorflow` loads TensorFlow
whole and finds these same proto modules.
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence

from enja.serving import contract


@contextlib.contextmanager
def _tensorflow_folder_only() -> Iterator[None]:
    """While the block runs, `tensorflow.<subpackage>` imports without `tensorflow/__init__.py`."""
    if "tensorflow" in sys.modules:  # TensorFlow is loaded: nothing to spare
        yield
        return
    spec = importlib.util.find_spec("tensorflow")
    stand_in = types.ModuleType("tensorflow")
    stand_in.__path__ = list(spec.submodule_search_locations or [])
    stand_in.__spec__ = spec
    sys.modules["tensorflow"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("tensorflow") is stand_in:
            del sys.modules["tensorflow"]


with _tensorflow_folder_only():
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

# What clients take from here: the messages and the stub come with the helpers.
__all__ = ["predict_pb2", "predict_request", "prediction_service_pb2_grpc", "string_tensor", "strings"]


def string_tensor(values: Sequence[str]) -> tensor_pb2.TensorProto:
    """A 1-D string tensor, as `tf.make_tensor_proto(values, dtype=tf.string)` makes it."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[value.encode("utf-8") for value in values],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]))


def strings(tensor: tensor_pb2.TensorProto) -> list[str]:
    """The values of a 1-D string tensor."""
    return [value.decode("utf-8") for value in tensor.string_val]


def predict_request(sentences: Sequence[str], model_name: str) -> predict_pb2.PredictRequest:
    """The Predict call of the serving signature for a batch of sentences."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = contract.SERVING_SIGNATURE
    request.inputs[contract.TEXT_INPUT].CopyFrom(string_tensor(sentences))
    return request
