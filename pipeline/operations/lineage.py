"""Reading and recording the pipeline's lineage in ML Metadata.

TFX records every run as a `pipeline_run` context, every component execution with the
`node` context of its component, and every artifact an execution read or wrote as an
input or output event keyed by the component's channel name. This module answers the
questions `enja history` and `enja rollback` ask of that record, and records rollbacks,
which happen outside any run, as executions of their own.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from google.protobuf import json_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from enja.components import names

Artifact = metadata_store_pb2.Artifact
Execution = metadata_store_pb2.Execution
Event = metadata_store_pb2.Event

_DONE = (Execution.COMPLETE, Execution.CACHED)


def custom(item: Artifact | Execution, name: str, default: Any = None) -> Any:
    """A custom property's value, whatever its kind, or `default` when it is absent."""
    if name not in item.custom_properties:
        return default
    value = item.custom_properties[name]
    kind = value.WhichOneof("value")
    if kind == "struct_value":  # TFX stores JSON values as {"__value__": …}
        return _from_struct(value.struct_value)
    return getattr(value, kind) if kind else default


def _from_struct(struct: Any) -> Any:
    """A JSON value as TFX stores it: a dict as itself, anything else wrapped in `__value__`."""
    value = json_format.MessageToDict(struct)
    return value.get("__value__", value)


@dataclasses.dataclass
class NodeRun:
    """One component's execution in a run, with its artifacts by channel name."""

    node_id: str
    execution: Execution
    inputs: dict[str, list[Artifact]]
    outputs: dict[str, list[Artifact]]

    @property
    def succeeded(self) -> bool:
        return self.execution.last_known_state in _DONE

    def output(self, key: str) -> Artifact | None:
        return (self.outputs.get(key) or [None])[0]

    def input(self, key: str) -> Artifact | None:
        return (self.inputs.get(key) or [None])[0]

    def execution_result(self) -> tuple[int, str] | None:
        """(code, message) of the result the executor returned, if it returned one (a DataGate
        that stopped the run): TFX's ExecutionResult as the JSON TFX stores, read without TFX."""
        text = custom(self.execution, names.EXECUTION_RESULT)
        if not text:
            return None
        result = json.loads(text)
        return int(result.get("code", 0)), result.get("resultMessage", "")


@dataclasses.dataclass
class PipelineRun:
    run_id: str
    nodes: dict[str, NodeRun]

    @property
    def started_ms(self) -> int:
        return min(node.execution.create_time_since_epoch for node in self.nodes.values())

    @property
    def finished_ms(self) -> int:
        return max(node.execution.last_update_time_since_epoch for node in self.nodes.values())


class Lineage:
    """The lineage of the pipelines in one ML Metadata store."""

    def __init__(self, connection_config: metadata_store_pb2.ConnectionConfig) -> None:
        self.store = metadata_store.MetadataStore(connection_config)
        self._context_type_names = {context_type.id: context_type.name
                                    for context_type in self.store.get_context_types()}

    def _contexts_of(self, execution_id: int, type_name: str) -> list[metadata_store_pb2.Context]:
        return [context for context in self.store.get_contexts_by_execution(execution_id)
                if self._context_type_names.get(context.type_id) == type_name]

    def _node_runs(self, executions: list[Execution]) -> dict[int, NodeRun]:
        ids = [execution.id for execution in executions]
        events = self.store.get_events_by_execution_ids(ids)
        artifacts = {a.id: a for a in self.store.get_artifacts_by_id({e.artifact_id for e in events})}
        runs = {}
        for execution in executions:
            # Node contexts are named "<pipeline>.<node id>".
            node_id = next((context.name.split(".", 1)[-1]
                            for context in self._contexts_of(execution.id, "node")), "")
            runs[execution.id] = NodeRun(node_id, execution, {}, {})
        for event in events:
            side = (runs[event.execution_id].inputs if event.type in (Event.INPUT, Event.DECLARED_INPUT)
                    else runs[event.execution_id].outputs)
            key = event.path.steps[0].key if event.path.steps else ""
            side.setdefault(key, []).append(artifacts[event.artifact_id])
        return runs

    def runs(self) -> list[PipelineRun]:
        """Every pipeline run, oldest first; within a run, the latest execution of each node."""
        runs = []
        for context in sorted(self.store.get_contexts_by_type("pipeline_run"),
                              key=lambda c: c.create_time_since_epoch):
            executions = sorted(self.store.get_executions_by_context(context.id), key=lambda e: e.id)
            if executions:
                by_node = {node.node_id: node for node in self._node_runs(executions).values()}
                runs.append(PipelineRun(context.name, by_node))
        return runs

    def last_seconds(self) -> dict[str, float]:
        """Seconds each node took the last time it ran (rather than reused its cache): what the
        next run's progress estimates from."""
        seconds = {}
        for run in self.runs():
            for node_id, node in run.nodes.items():
                execution = node.execution
                if execution.last_known_state == Execution.COMPLETE:
                    seconds[node_id] = (execution.last_update_time_since_epoch
                                        - execution.create_time_since_epoch) / 1000
        return seconds

    def producer(self, artifact_id: int) -> NodeRun | None:
        """The execution that wrote an artifact (not the cached ones that reused it)."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id])
                  if e.type == Event.OUTPUT]
        executions = self.store.get_executions_by_id([e.execution_id for e in events])
        executions = [e for e in executions if e.last_known_state == Execution.COMPLETE]
        return self._node_runs(executions[:1]).get(executions[0].id) if executions else None

    def run_of(self, execution_id: int) -> str | None:
        """The run id of the pipeline run an execution belongs to."""
        return next((c.name for c in self._contexts_of(execution_id, "pipeline_run")), None)

    def artifacts(self, type_name: str) -> list[Artifact]:
        return sorted(self.store.get_artifacts_by_type(type_name), key=lambda a: a.id)

    def pushes(self) -> list[tuple[int, int]]:
        """(pushed version, model artifact id) of every successful push, oldest first."""
        pushed = []
        for pushed_model in self.artifacts(names.PUSHED_MODEL_TYPE):
            if custom(pushed_model, names.PUSHED) != 1:
                continue
            pusher = self.producer(pushed_model.id)
            model = pusher.input(names.MODEL) if pusher else None
            if model is not None:
                pushed.append((int(custom(pushed_model, names.PUSHED_VERSION)), model.id))
        return pushed

    def record_rollback(self, pipeline_name: str, to_version: int | None, from_version: int | None,
                        undo: bool) -> int:
        """Records a rollback (or its undoing) in the pipeline's context; returns its id."""
        execution_type = metadata_store_pb2.ExecutionType(name=names.ROLLBACK_TYPE)
        type_id = self.store.put_execution_type(execution_type, can_add_fields=True)
        execution = Execution(type_id=type_id, last_known_state=Execution.COMPLETE)
        execution.custom_properties[names.UNDO].int_value = int(undo)
        for name, version in ((names.TO_VERSION, to_version), (names.FROM_VERSION, from_version)):
            if version is not None:
                execution.custom_properties[name].int_value = version
        [context] = [c for c in self.store.get_contexts_by_type("pipeline") if c.name == pipeline_name]
        execution_id, _, _ = self.store.put_execution(
            execution, artifact_and_events=[], contexts=[context])
        return execution_id

    def rollbacks(self) -> list[Execution]:
        return sorted(self.store.get_executions_by_type(names.ROLLBACK_TYPE), key=lambda e: e.id)
