"""`enja rollback`: serve an earlier version the TF Serving way, and so make it the baseline.

The served version is chosen by the model config file that `enja serve` and TF Serving
both poll: a rollback pins the model to one version (`specific`), `--latest` returns it
to the newest. Nothing is deleted. The next run compares its candidate with the model
served again, and warm-starts from it, because the pipeline's ProductionModel reads the
same file (components/production_model.py): nothing in ML Metadata decides it. The
rollback is recorded there all the same, for `enja history`.
"""
from __future__ import annotations

import os

from ml_metadata.proto import metadata_store_pb2

from enja.pipeline import lineage
from enja.serving import model_config


class RollbackError(ValueError):
    """A rollback that cannot be made; nothing was changed."""


def _served_version(config_file: str, model_name: str, pushed: list[int]) -> int | None:
    """The version the config file makes servers serve: its pinned one, else the newest."""
    [model] = [m for m in model_config.read_model_config(config_file).model_config_list.config
               if m.name == model_name]
    policy = model.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific" and policy.specific.versions:
        return max(policy.specific.versions)
    return max(pushed, default=None)


def rollback_to(connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str,
                config_file: str, model_name: str, versions_dir: str, version: int) -> str:
    """Pins `version` and records the rollback; returns what it did."""
    store = lineage.Lineage(connection_config)
    pushes = dict(store.pushes())
    if version not in pushes:
        raise RollbackError(f"version {version} was never pushed; pushed versions: "
                            f"{', '.join(map(str, sorted(pushes))) or 'none'}")
    if not os.path.isdir(os.path.join(versions_dir, str(version))):
        raise RollbackError(f"version {version} is no longer in {versions_dir}")
    served = _served_version(config_file, model_name, sorted(pushes))
    model_config.pin_version(config_file, model_name, version)
    store.record_rollback(pipeline_name, version, served, undo=False)
    return (f"Serving version {version} of {model_name} (was {served}); the next run compares "
            f"against version {version} and starts from it. `enja rollback --latest` undoes this.")


def rollback_latest(connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str,
                    config_file: str, model_name: str) -> str:
    """Returns to the newest version; returns what it did."""
    store = lineage.Lineage(connection_config)
    served = _served_version(config_file, model_name, [version for version, _ in store.pushes()])
    model_config.follow_latest(config_file, model_name)
    store.record_rollback(pipeline_name, None, served, undo=True)
    return f"{model_name} follows the newest version again (was serving {served})."
