"""Checking Predict requests against a signature, before they reach the model.

Name and dtype mismatches get TF Serving's INVALID_ARGUMENT; the size limits
are this server's own guard against requests that would tie up the decoder.
"""
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from enja.serving.config import RequestLimits
from enja.serving.errors import invalid


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    inputs: dict[str, np.ndarray]
    output_keys: tuple[str, ...]


def _check_shape(alias: str, array: np.ndarray, shape: tensor_shape_pb2.TensorShapeProto) -> None:
    if shape.unknown_rank:
        return
    expected = [dim.size for dim in shape.dim]
    if len(expected) != array.ndim or any(e not in (-1, a) for e, a in zip(expected, array.shape)):
        shown = ["?" if e == -1 else e for e in expected]
        raise invalid(f"input '{alias}' has shape {list(array.shape)}, signature expects {shown}")


def _check_limits(alias: str, array: np.ndarray, limits: RequestLimits) -> None:
    if array.ndim == 0:
        return
    if array.shape[0] == 0:
        raise invalid(f"input '{alias}' is an empty batch")
    if array.shape[0] > limits.max_batch_size:
        raise invalid(f"input '{alias}' has {array.shape[0]} rows, more than the limit {limits.max_batch_size}")
    if array.dtype == object:
        longest = max(len(value.decode("utf-8", "replace")) for value in array.flat)
        if longest > limits.max_chars:
            raise invalid(f"input '{alias}' has a string of {longest} characters, "
                          f"more than the limit {limits.max_chars}")


def _to_array(alias: str, proto, spec: meta_graph_pb2.TensorInfo) -> np.ndarray:
    if proto.dtype != spec.dtype:
        raise invalid(f"input '{alias}' is {tf.dtypes.as_dtype(proto.dtype).name}, "
                      f"signature expects {tf.dtypes.as_dtype(spec.dtype).name}")
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise invalid(f"input '{alias}' is not a valid tensor: {error}") from error


def parse_predict(request: predict_pb2.PredictRequest, signature: meta_graph_pb2.SignatureDef,
                  limits: RequestLimits) -> ParsedRequest:
    """Numpy inputs and requested output keys, or INVALID_ARGUMENT saying what is wrong."""
    expected, given = set(signature.inputs), set(request.inputs)
    if given != expected:
        raise invalid(f"request inputs {sorted(given)} do not match the signature's {sorted(expected)}")
    inputs = {alias: _to_array(alias, request.inputs[alias], signature.inputs[alias]) for alias in sorted(given)}
    for alias, array in inputs.items():
        _check_shape(alias, array, signature.inputs[alias].tensor_shape)
        _check_limits(alias, array, limits)
    unknown = set(request.output_filter) - set(signature.outputs)
    if unknown:
        raise invalid(f"output_filter names {sorted(unknown)}, not outputs of the signature "
                      f"{sorted(signature.outputs)}")
    return ParsedRequest(inputs, tuple(sorted(set(request.output_filter) or signature.outputs)))
