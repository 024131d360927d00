"""Which version of a model the servers serve now, read from the files alone.

The versions' folder and the TF Serving model config file decide it, for `enja serve`
and TF Serving alike. Reading them needs TensorFlow only for paths that only its file
systems reach (gs://…): `enja rollback`, run in an incident, should not wait for
TensorFlow to load to edit a local file.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from types import ModuleType

from enja.serving import model_config


@dataclasses.dataclass(frozen=True)
class Served:
    version: int
    path: str


def _gfile() -> ModuleType:
    """TensorFlow's file systems, imported only for a URL (it takes seconds)."""
    import tensorflow as tf

    return tf.io.gfile


def _is_url(path: str) -> bool:
    return "://" in path


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if _is_url(path) else os.path.isdir(path)


def _exists(path: str) -> bool:
    return _gfile().exists(path) if _is_url(path) else os.path.exists(path)


def _listdir(path: str) -> list[str]:
    return _gfile().listdir(path) if _is_url(path) else os.listdir(path)


def _read_text(path: str) -> str:
    if _is_url(path):
        with _gfile().GFile(path) as text:
            return text.read()
    with open(path, encoding="utf-8") as text:
        return text.read()


def versions_on_disk(base_path: str) -> list[int]:
    """The version folders (ASCII digits only, as TF Serving reads them) under a model's base
    path, oldest first; other names ("²", "v2", a staging folder) are not versions."""
    if not isdir(base_path):
        return []
    names = (name.rstrip("/") for name in _listdir(base_path))
    return sorted(int(name) for name in names if re.fullmatch(r"[0-9]+", name))


def aspired_versions(policy: model_config.VersionPolicy, on_disk: Sequence[int]) -> list[int]:
    """The versions on disk that a policy asks for, oldest first (no policy, or latest 0, means latest 1)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return sorted(on_disk)
    if choice == "specific":
        return sorted(set(on_disk) & set(policy.specific.versions))
    return sorted(on_disk)[-max(policy.latest.num_versions, 1):]


def _policy(config_file: str, model_name: str) -> model_config.VersionPolicy | None:
    """The model's version policy in the config file; None without a file (TF Serving's default)."""
    if not config_file or not _exists(config_file):
        return None
    config = model_config.parse_model_config(_read_text(config_file))
    named = [model for model in config.model_config_list.config if model.name == model_name]
    if not named:
        raise model_config.ModelConfigError(f"{config_file}: no model {model_name!r}")
    return named[0].model_version_policy


def find_served(serving_model_dir: str, config_file: str, model_name: str) -> Served | None:
    """The version servers serve now: the newest of those the config's policy asks for."""
    policy = _policy(config_file, model_name) or model_config.VersionPolicy()
    aspired = aspired_versions(policy, versions_on_disk(serving_model_dir))
    if not aspired:
        return None
    return Served(aspired[-1], os.path.join(serving_model_dir, str(aspired[-1])))
