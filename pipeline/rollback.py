"""`enja rollback`: serve an earlier version the TF Serving way, and so make it the baseline.

The served version is chosen by the model config file that `enja serve` and TF Serving
both poll: a rollback pins the model to one version (`specific`), `--latest` returns it
to the newest. Nothing is deleted. The next run compares its candidate with the model
served again, and warm-starts from it, because the pipeline's ProductionModel reads the
same file (components/production_model.py): nothing in ML Metadata decides it. The
rollback is recorded there all the same, for `enja history`, when the runs are local; for
runs on Kubeflow the config file is all there is to change.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from enja.components import production_model
from enja.pipeline import lineage
from enja.serving import model_config


class RollbackError(ValueError):
    """A rollback that cannot be made; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class RunsRecord:
    """The local runner's ML Metadata, where a rollback is recorded beside the runs. Runs on
    Kubeflow keep theirs in the cluster, so a rollback there changes the config file only."""

    connection_config: metadata_store_pb2.ConnectionConfig
    pipeline_name: str


def _served(versions_dir: str, config_file: str, model_name: str) -> int | None:
    served = production_model.find_served(versions_dir, config_file, model_name)
    return served and served.version


def rollback_to(config_file: str, model_name: str, versions_dir: str, version: int,
                record: RunsRecord | None = None) -> str:
    """Pins `version` (and records the rollback, given a record); returns what it did."""
    store = record and lineage.Lineage(record.connection_config)
    if store is not None:
        pushes = dict(store.pushes())
        if version not in pushes:
            raise RollbackError(f"version {version} was never pushed; pushed versions: "
                                f"{', '.join(map(str, sorted(pushes))) or 'none'}")
    if not tf.io.gfile.isdir(f"{versions_dir.rstrip('/')}/{version}"):
        raise RollbackError(f"version {version} is not in {versions_dir}")
    served = _served(versions_dir, config_file, model_name)
    model_config.pin_version(config_file, model_name, version)
    if store is not None:
        store.record_rollback(record.pipeline_name, version, served, undo=False)
    return (f"Serving version {version} of {model_name} (was {served}); the next run compares "
            f"against version {version} and starts from it. `enja rollback --latest` undoes this.")


def rollback_latest(config_file: str, model_name: str, versions_dir: str,
                    record: RunsRecord | None = None) -> str:
    """Returns to the newest version (and records it, given a record); returns what it did."""
    served = _served(versions_dir, config_file, model_name)
    model_config.follow_latest(config_file, model_name)
    if record is not None:
        lineage.Lineage(record.connection_config).record_rollback(
            record.pipeline_name, None, served, undo=True)
    return f"{model_name} follows the newest version again (was serving {served})."
