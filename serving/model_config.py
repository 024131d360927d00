"""TF Serving's `--model_config_file`: reading, checking and rewriting it safely.

The file is a `tensorflow.serving.ModelServerConfig` in protobuf text format,
parsed with the protos of tensorflow-serving-api. Rewrites go through a
temporary file in the same folder and `os.replace`, so a server polling the
file (ours or TF Serving) reads the old config or the new one, never half of
one. Operators roll back by pinning a model to one version and roll forward by
returning it to the newest; everything else in the file is kept (its comments
are not: protobuf text format does not carry them).
"""
import contextlib
import os
from collections.abc import Collection, Iterator

from google.protobuf import text_format
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from enja.serving import files

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig
VersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
PLATFORM = "tensorflow"


class ModelConfigError(ValueError):
    """A model config that cannot be served as asked; the message says why in one line."""


@contextlib.contextmanager
def naming_file(path: str) -> Iterator[None]:
    """Prefix ModelConfigErrors raised inside with the file they are about."""
    try:
        yield
    except ModelConfigError as error:
        raise ModelConfigError(f"{path}: {error}") from error


def model_server_config(model_name: str, base_path: str, num_versions: int = 1) -> ModelServerConfig:
    """One TensorFlow model whose newest `num_versions` versions under `base_path` are served."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=base_path, model_platform=PLATFORM)
    model.model_version_policy.latest.num_versions = num_versions
    return config


def check_labels(model: ModelConfig, served: Collection[int]) -> None:
    """Every version label must name a version that the model's policy serves."""
    for label, version in sorted(model.version_labels.items()):
        if version not in served:
            raise ModelConfigError(f"model '{model.name}': version label '{label}' points at version "
                                   f"{version}, which its model_version_policy does not serve "
                                   f"(serves {sorted(served)})")


def _check_model(model: ModelConfig) -> None:
    if not model.name:
        raise ModelConfigError("a model in model_config_list has no name")
    if not model.base_path:
        raise ModelConfigError(f"model '{model.name}' has no base_path")
    if model.model_platform != PLATFORM:
        raise ModelConfigError(f"model '{model.name}': model_platform '{model.model_platform}' is not "
                               f"supported (only '{PLATFORM}')")
    policy = model.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific":
        if not policy.specific.versions:
            raise ModelConfigError(f"model '{model.name}': model_version_policy specific lists no versions")
        check_labels(model, policy.specific.versions)


def check_model_config(config: ModelServerConfig) -> None:
    """Reject what the server cannot serve as asked, before anything changes (labels of `latest` and
    `all` policies depend on the versions on disk and are checked by the server)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ModelConfigError("no model_config_list (the only kind of config supported)")
    models = config.model_config_list.config
    if not models:
        raise ModelConfigError("model_config_list lists no models")
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelConfigError(f"model '{duplicates[0]}' is listed more than once")
    for model in models:
        _check_model(model)


def parse_model_config(text: str) -> ModelServerConfig:
    """A checked config from protobuf text; unknown fields and bad syntax are errors."""
    try:
        config = text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as error:
        raise ModelConfigError(f"not a ModelServerConfig in protobuf text format: {error}") from error
    check_model_config(config)
    return config


def read_model_config(path: str) -> ModelServerConfig:
    """The checked config in a file; errors name the file."""
    with naming_file(path):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            raise ModelConfigError(f"cannot read: {error}") from error
        return parse_model_config(text)


def write_model_config(path: str, config: ModelServerConfig) -> None:
    """Check the config, then replace the file atomically, keeping its permissions."""
    with naming_file(path):
        check_model_config(config)
    files.write_atomically(path, text_format.MessageToString(config).encode("utf-8"))


LATEST = VersionPolicy(latest=VersionPolicy.Latest(num_versions=1))


def pinned(version: int) -> VersionPolicy:
    return VersionPolicy(specific=VersionPolicy.Specific(versions=[version]))


def with_policy(config: ModelServerConfig, model_name: str, policy: VersionPolicy,
                where: str) -> ModelServerConfig:
    """`config` with the model's version policy replaced, checked as the server would check it (a label
    on a version no longer served is refused); `where` names the config in errors."""
    models = {model.name: model for model in config.model_config_list.config}
    if model_name not in models:
        raise ModelConfigError(f"{where}: no model '{model_name}' (models: {', '.join(sorted(models))})")
    models[model_name].model_version_policy.CopyFrom(policy)
    with naming_file(where):
        check_model_config(config)
    return config


def write_initial_model_config(path: str, model_name: str, versions_dir: str) -> bool:
    """Create the config serving the newest version in `versions_dir` (made absolute); True if written.

    An existing file is left alone, so an operator's pin survives the next pipeline run.
    """
    if os.path.exists(path):
        return False
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_model_config(path, model_server_config(model_name, os.path.abspath(versions_dir)))
    return True


def resolve_base_paths(config: ModelServerConfig, folder: str) -> ModelServerConfig:
    """A copy in which relative base paths are taken relative to `folder` (URIs and absolute paths stay)."""
    resolved = ModelServerConfig()
    resolved.CopyFrom(config)
    for model in resolved.model_config_list.config:
        if model.base_path and "://" not in model.base_path:
            model.base_path = os.path.normpath(os.path.join(os.path.abspath(folder), model.base_path))
    return resolved
