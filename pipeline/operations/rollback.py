"""`enja rollback`: serve an earlier version the TF Serving way, and so make it the baseline.

The served version is chosen by the model config file that `enja serve` and TF Serving
both poll: a rollback pins the model to one version (`specific`), `--latest` returns it
to the newest. Nothing is deleted. The next run compares its candidate with the model
served again, and warm-starts from it, because the pipeline's ProductionModel reads the
same file (components/production_model.py): nothing in ML Metadata decides it. The
rollback is recorded there all the same, for `enja history`, when the runs are local; for
runs on Kubeflow the config file is all there is to change. On Kubernetes the servers read a
ConfigMap instead, which the rollback can also write (pipeline/operations/rollback_kubernetes.py).
"""
from __future__ import annotations

import dataclasses

from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2

from enja.pipeline.operations import lineage, rollback_kubernetes
from enja.serving import model_config, served


class RollbackError(ValueError):
    """A rollback that cannot be made; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class RunsRecord:
    """The local runner's ML Metadata, where a rollback is recorded beside the runs. Runs on
    Kubeflow keep theirs in the cluster, so a rollback there changes the config file only."""

    connection_config: metadata_store_pb2.ConnectionConfig
    pipeline_name: str


def _served(versions_dir: str, config_file: str, model_name: str) -> int | None:
    found = served.find_served(versions_dir, config_file, model_name)
    return found and found.version


def _apply(config_file: str, model_name: str, policy: model_config.VersionPolicy,
           kubernetes: rollback_kubernetes.Targets) -> list[str]:
    """Set the policy in the local file and on Kubernetes as asked; returns what was written.

    Nothing is written before everything is read and checked (the local file, the recipe's
    kustomization, the live ConfigMap). The writes then go from the likeliest to fail to the
    least: the manifest (a path typed by hand), the ConfigMap (network, RBAC, a change since
    it was read), and the local file last (a rename beside the file just read). So a failed
    write leaves the local file as it was, and it never claims a rollback the cluster did not
    get: it is what the next run's baseline follows and what a later `kubectl apply -k`
    sends. Each copy gets the change made to its own config, not the other's text: the
    ConfigMap may hold what the file does not (another model, an overlay's base path).
    """
    config = model_config.with_policy(model_config.read_model_config(config_file), model_name, policy,
                                      config_file)

    def change(text: str, where: str) -> str:
        with model_config.naming_file(where):
            parsed = model_config.parse_model_config(text)
        return text_format.MessageToString(model_config.with_policy(parsed, model_name, policy, where))

    writes = rollback_kubernetes.prepare(kubernetes, config_file, text_format.MessageToString(config), change)
    done = [write() for write in writes]
    model_config.write_model_config(config_file, config)
    return done


def rollback_to(config_file: str, model_name: str, versions_dir: str, version: int,
                record: RunsRecord | None = None,
                kubernetes: rollback_kubernetes.Targets = rollback_kubernetes.Targets()) -> str:
    """Pins `version` (and records the rollback, given a record); returns what it did."""
    store = record and lineage.Lineage(record.connection_config)
    if store is not None:
        pushes = dict(store.pushes())
        if version not in pushes:
            raise RollbackError(f"version {version} was never pushed; pushed versions: "
                                f"{', '.join(map(str, sorted(pushes))) or 'none'}")
    if not served.isdir(f"{versions_dir.rstrip('/')}/{version}"):
        raise RollbackError(f"version {version} is not in {versions_dir}")
    before = _served(versions_dir, config_file, model_name)
    done = _apply(config_file, model_name, model_config.pinned(version), kubernetes)
    if store is not None:
        store.record_rollback(record.pipeline_name, version, before, undo=False)
    return "\n".join([f"Serving version {version} of {model_name} (was {before}); the next run compares "
                      f"against version {version} and starts from it. `enja rollback --latest` undoes this.",
                      *done])


def rollback_latest(config_file: str, model_name: str, versions_dir: str,
                    record: RunsRecord | None = None,
                    kubernetes: rollback_kubernetes.Targets = rollback_kubernetes.Targets()) -> str:
    """Returns to the newest version (and records it, given a record); returns what it did."""
    before = _served(versions_dir, config_file, model_name)
    done = _apply(config_file, model_name, model_config.LATEST, kubernetes)
    if record is not None:
        lineage.Lineage(record.connection_config).record_rollback(
            record.pipeline_name, None, before, undo=True)
    return "\n".join([f"{model_name} follows the newest version again (was serving {before}).", *done])
