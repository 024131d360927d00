"""TF Serving's `--batching_parameters_file` format, for both servers.

The file is a text-format `tensorflow.serving.BatchingParameters`. The pip
package tensorflow-serving-api does not ship `session_bundle_config_pb2`, so
when it is missing the message is declared here from the fields we use (same
names, numbers and wrapper types as TF Serving's session_bundle_config.proto).
"""
import dataclasses

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

_FIELDS = (  # (name, number, type_name of a wrapper message, or None for a scalar)
    ("max_batch_size", 1, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 3, ".google.protobuf.StringValue"),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 5, ".google.protobuf.Int64Value"),
    ("allowed_batch_sizes", 6, None),
    ("pad_variable_length_inputs", 7, None),
)


def _declare_batching_parameters() -> type:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="enja/serving/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    message = file.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for name, number, type_name in _FIELDS:
        if type_name:
            message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                              type_name=type_name, label=field.LABEL_OPTIONAL)
        elif name == "allowed_batch_sizes":
            message.field.add(name=name, number=number, type=field.TYPE_INT64,
                              label=field.LABEL_REPEATED)
        else:
            message.field.add(name=name, number=number, type=field.TYPE_BOOL,
                              label=field.LABEL_OPTIONAL)
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


try:
    from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import BatchingParameters
except ImportError:
    BatchingParameters = _declare_batching_parameters()


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """What the local server's batcher honours (the rest of the file is TF Serving's business)."""

    max_batch_size: int = 32
    batch_timeout_s: float = 0.002
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100


def read_batching_parameters(path: str) -> BatchingParameters:
    """Parse a batching parameters file, rejecting unknown fields."""
    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), BatchingParameters())


class BatchingParametersError(ValueError):
    """A batching parameters file the server cannot run with; the message names the file and field."""


# The least value each field may take: fewer threads or batches than one would block every request.
_LEAST = {"max_batch_size": 1, "batch_timeout_micros": 0, "num_batch_threads": 1, "max_enqueued_batches": 1}


def batch_options(path: str) -> BatchOptions:
    """BatchOptions from a batching parameters file; unset fields keep the defaults."""
    try:
        params = read_batching_parameters(path)
    except (OSError, text_format.ParseError) as error:
        raise BatchingParametersError(f"{path}: {error}") from error
    for name, least in _LEAST.items():
        if params.HasField(name) and getattr(params, name).value < least:
            raise BatchingParametersError(
                f"{path}: {name} is {getattr(params, name).value}; it must be at least {least}")
    set_fields = {field.name: value.value for field, value in params.ListFields() if hasattr(value, "value")}
    options = {name: set_fields[name] for name in ("max_batch_size", "num_batch_threads",
                                                   "max_enqueued_batches")
               if name in set_fields}
    if "batch_timeout_micros" in set_fields:
        options["batch_timeout_s"] = set_fields["batch_timeout_micros"] / 1e6
    return BatchOptions(**options)
