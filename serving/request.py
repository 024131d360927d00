"""Checking Predict requests against a signature, before they reach the model.

Name and dtype mismatches get TF Serving's INVALID_ARGUMENT; the size limits
are this server's own guard against requests that would tie up the decoder.
A tensor's declared shape is checked before its array is made: make_ndarray
fills the shape out with copies of the last value, so a 30-byte request
declaring [2**28] strings would otherwise build a 2 GB array.
"""
import dataclasses
import math
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from enja.serving import contract
from enja.serving.config import RequestLimits
from enja.serving.errors import invalid


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    inputs: dict[str, np.ndarray]
    output_keys: tuple[str, ...]


def _check_dtype(alias: str, proto: tensor_pb2.TensorProto, spec: meta_graph_pb2.TensorInfo) -> None:
    if proto.dtype != spec.dtype:
        raise invalid(f"input '{alias}' is {tf.dtypes.as_dtype(proto.dtype).name}, "
                      f"signature expects {tf.dtypes.as_dtype(spec.dtype).name}")


def _declared_dims(alias: str, proto: tensor_pb2.TensorProto) -> list[int]:
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims):
        raise invalid(f"input '{alias}' has shape {dims}: a request's tensor needs every size, none negative")
    return dims


def _check_shape(alias: str, dims: list[int], shape: tensor_shape_pb2.TensorShapeProto) -> None:
    if shape.unknown_rank:
        return
    expected = [dim.size for dim in shape.dim]
    if len(expected) != len(dims) or any(e not in (-1, d) for e, d in zip(expected, dims, strict=True)):
        shown = ["?" if e == -1 else e for e in expected]
        raise invalid(f"input '{alias}' has shape {dims}, signature expects {shown}")


def _check_rows(alias: str, rows: int, limits: RequestLimits) -> None:
    if rows > limits.max_batch_size:
        raise invalid(f"input '{alias}' has {rows} rows, more than the limit {limits.max_batch_size}")


def _check_string_chars(alias: str, chars: int, limits: RequestLimits) -> None:
    if chars > limits.max_chars:
        raise invalid(f"input '{alias}' has a string of {chars} characters, more than the limit "
                      f"{limits.max_chars}")


def _check_batch(alias: str, dims: list[int], limits: RequestLimits) -> None:
    if not dims:
        return
    if dims[0] == 0:
        raise invalid(f"input '{alias}' is an empty batch")
    _check_rows(alias, dims[0], limits)


def _value_count(proto: tensor_pb2.TensorProto) -> int:
    """How many values a tensor proto carries: packed in tensor_content, or listed in its typed `*_val` field
    (two entries for each complex number)."""
    dtype = tf.dtypes.as_dtype(proto.dtype)
    if proto.tensor_content:
        return len(proto.tensor_content) // dtype.size if dtype.size else 0  # strings cannot be packed
    entries = sum(len(values) for field, values in proto.ListFields() if field.name.endswith("_val"))
    return entries // 2 if dtype.is_complex else entries


def _check_value_count(alias: str, proto: tensor_pb2.TensorProto, dims: list[int],
                       limits: RequestLimits) -> None:
    """The values must fill the shape, or be one value to fill it with (as make_tensor_proto(value, shape=...)
    sends), and then no more of them than a batch's worth: make_ndarray would repeat it to any size."""
    elements, given = math.prod(dims), _value_count(proto)
    if given == elements:
        return
    if given != 1:
        raise invalid(f"input '{alias}' has shape {dims}, {elements} values, but gives {given}: "
                      "send every value, or one to fill the shape with")
    if elements > limits.max_batch_size:
        raise invalid(f"input '{alias}' fills shape {dims} with one value: {elements} values, more than the "
                      f"limit {limits.max_batch_size}")


def _to_array(alias: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise invalid(f"input '{alias}' is not a valid tensor: {error}") from error


def _check_chars(alias: str, array: np.ndarray, limits: RequestLimits) -> None:
    if array.dtype != object or not array.size:
        return
    _check_string_chars(alias, max(len(value.decode("utf-8", "replace")) for value in array.flat), limits)


def _check_beam_width(alias: str, array: np.ndarray, limits: RequestLimits) -> None:
    """The contract's beam width: decoding time and memory grow with it."""
    if alias != contract.BEAM_WIDTH_INPUT or array.dtype.kind not in "iu" or not array.size:
        return
    width = int(array.max())
    if width > limits.max_beam_width:
        raise invalid(f"input '{alias}' asks for beam width {width}, more than this server's limit "
                      f"max_beam_width={limits.max_beam_width}")


def _parse_input(alias: str, proto: tensor_pb2.TensorProto, spec: meta_graph_pb2.TensorInfo,
                 limits: RequestLimits) -> np.ndarray:
    """One input as an array, its declared shape checked before the array is made."""
    _check_dtype(alias, proto, spec)
    dims = _declared_dims(alias, proto)
    _check_shape(alias, dims, spec.tensor_shape)
    _check_batch(alias, dims, limits)
    _check_value_count(alias, proto, dims, limits)
    array = _to_array(alias, proto)
    _check_chars(alias, array, limits)
    _check_beam_width(alias, array, limits)
    return array


def check_json_input(alias: str, value: Any, limits: RequestLimits) -> None:
    """A REST input's JSON value held to the same limits before a tensor is made of it: numpy builds
    the whole array first, at many times the request's size, where a gRPC tensor's declared shape
    is checked first."""
    if isinstance(value, list):
        _check_rows(alias, len(value), limits)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, (str, bytes)):
            _check_string_chars(alias, len(item if isinstance(item, str) else item.decode("utf-8",
                                                                                          "replace")), limits)


def parse_predict(request: predict_pb2.PredictRequest, signature: meta_graph_pb2.SignatureDef,
                  limits: RequestLimits) -> ParsedRequest:
    """Numpy inputs and requested output keys, or INVALID_ARGUMENT saying what is wrong."""
    expected, given = set(signature.inputs), set(request.inputs)
    if given != expected:
        raise invalid(f"request inputs {sorted(given)} do not match the signature's {sorted(expected)}")
    inputs = {alias: _parse_input(alias, request.inputs[alias], signature.inputs[alias], limits)
              for alias in sorted(given)}
    unknown = set(request.output_filter) - set(signature.outputs)
    if unknown:
        raise invalid(f"output_filter names {sorted(unknown)}, not outputs of the signature "
                      f"{sorted(signature.outputs)}")
    return ParsedRequest(inputs, tuple(sorted(set(request.output_filter) or signature.outputs)))
