"""`enja rollback`: serve an earlier version the TF Serving way, and make it the baseline.

The served version is chosen by the model config file that `enja serve` and TF Serving
both poll: a rollback pins the model to one version (`specific`), `--latest` returns it
to the newest. Nothing is deleted. So that the next run compares its candidate with the
model served again rather than with the one rolled back from, the rollback withdraws the
blessings of the models pushed after it (their ModelBlessing's `blessed` becomes 0, the
property TFX's LatestBlessedModelStrategy reads locally and on Kubeflow) and records
itself in ML Metadata, where `enja history` shows it; `--latest` gives them back.
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


def _blessings(store: lineage.Lineage) -> list[metadata_store_pb2.Artifact]:
    return store.artifacts("ModelBlessing")


def rollback_to(connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str,
                config_file: str, model_name: str, versions_dir: str, version: int) -> str:
    """Pins `version` and withdraws the blessings of later models; returns what it did."""
    store = lineage.Lineage(connection_config)
    pushes = dict(store.pushes())
    if version not in pushes:
        raise RollbackError(f"version {version} was never pushed; pushed versions: "
                            f"{', '.join(map(str, sorted(pushes))) or 'none'}")
    if not os.path.isdir(os.path.join(versions_dir, str(version))):
        raise RollbackError(f"version {version} is no longer in {versions_dir}")
    served = _served_version(config_file, model_name, sorted(pushes))
    model_config.pin_version(config_file, model_name, version)
    rollback_id = store.record_rollback(pipeline_name, version, served, undo=False)
    withdrawn = [b for b in _blessings(store) if lineage.custom(b, "blessed") == 1
                 and lineage.custom(b, "current_model_id", 0) > pushes[version]]
    for blessing in withdrawn:
        blessing.custom_properties["blessed"].int_value = 0
        blessing.custom_properties[lineage.ROLLED_BACK_BY].int_value = rollback_id
    store.update_artifacts(withdrawn)
    return (f"Serving version {version} of {model_name} (was {served}); {len(withdrawn)} later "
            f"model(s) no longer count as blessed, so the next run compares against version "
            f"{version}. `enja rollback --latest` undoes this.")


def rollback_latest(connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str,
                    config_file: str, model_name: str) -> str:
    """Returns to the newest version and gives back the blessings rollbacks withdrew."""
    store = lineage.Lineage(connection_config)
    served = _served_version(config_file, model_name, [version for version, _ in store.pushes()])
    model_config.follow_latest(config_file, model_name)
    restored = [b for b in _blessings(store) if lineage.custom(b, lineage.ROLLED_BACK_BY) is not None]
    for blessing in restored:
        blessing.custom_properties["blessed"].int_value = 1
        del blessing.custom_properties[lineage.ROLLED_BACK_BY]
    store.update_artifacts(restored)
    store.record_rollback(pipeline_name, None, served, undo=True)
    return (f"{model_name} follows the newest version again (was serving {served}); "
            f"{len(restored)} blessing(s) given back.")
