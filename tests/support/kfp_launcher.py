"""Runs tasks of a compiled PipelineSpec here as open-source Kubeflow Pipelines' backend does.

Each rule names the file of kubeflow/pipelines' `backend/src/v2` it follows. The backend
refuses, when a run is created, any executor but containers and importers and any parameter
not given as a `constant`. For each task its driver builds the ExecutorInput: parameters in
`inputs.parameterValues`; input artifacts read back from ML Metadata — named by their id,
their type an empty `instanceSchema`, their metadata converted on the way (`as_backend_hands_it`);
outputs provisioned under <root>/<pipeline>/<run>/<task>/<salt>/<key>, plus the launcher's
`executor-logs`. The lifecycle `preCacheCheck` hook never runs. Its launcher runs the
container's command and args (here as subprocesses with this virtualenv's `python` first on
PATH, where the image has its own; placeholders substituted with kfp's own local resolver)
and merges the executor output's metadata into each provisioned output.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.local import placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

RUN_ID = "local-run"
EXECUTOR_OUTPUT_FILE = "executor_output.json"
TIMEOUT_S = 600
STDERR_TAIL_CHARS = 4000


def load_spec(path: str) -> pb.PipelineSpec:
    """Parses a YAML PipelineSpec strictly (unknown fields fail), as kfp's client does to upload it."""
    with open(path, encoding="utf-8") as spec:
        return json_format.ParseDict(yaml.safe_load(spec), pb.PipelineSpec())


def deployment(spec: pb.PipelineSpec) -> pb.PipelineDeploymentConfig:
    """The executors, which a PipelineSpec keeps as an untyped Struct."""
    return json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                 pb.PipelineDeploymentConfig())


def schema_title(artifact_type: pb.ArtifactTypeSchema) -> str:
    """The title of an artifact type: the type name KFP records the artifact under."""
    return artifact_type.schema_title or yaml.safe_load(artifact_type.instance_schema)["title"]


class RefusedError(ValueError):
    """A spec the open-source backend refuses when a run is created."""


def check_runnable(spec: pb.PipelineSpec) -> None:
    """Refuses what the open-source backend cannot run, with its own messages."""
    for label, executor in deployment(spec).executors.items():
        # backend/src/v2/compiler/visitor.go (Accept): container and importer executors only.
        if executor.WhichOneof("spec") not in ("container", "importer"):
            raise RefusedError(f"{label}: non-container and non-importer executor not implemented")
    for task_name, task in spec.root.dag.tasks.items():
        for name, parameter in task.inputs.parameters.items():
            # backend/src/v2/driver/resolve.go: a runtime value must be a `constant`.
            if not parameter.runtime_value.HasField("constant"):
                raise RefusedError(f"{task_name}.{name}: resolving input parameter with spec "
                              f"{json_format.MessageToJson(parameter)}: unsupported runtime value")


class TaskFailedError(RuntimeError):
    """A task's container exited non-zero; the run stops there, as the backend's does."""

    def __init__(self, task_name: str, message: str):
        super().__init__(f"{task_name}: {message}")
        self.task_name = task_name


class Launcher:
    """Runs container tasks of one pipeline run as the open-source backend's driver and
    launcher do, and records their output artifacts as its ML Metadata would."""

    def __init__(self, spec: pb.PipelineSpec, pipeline_root: str, run_id: str = RUN_ID):
        check_runnable(spec)
        self.spec = spec
        self.executors = deployment(spec).executors
        # The root comes from the run, never from the spec's defaultPipelineRoot
        # (backend/src/v2/metadata/client.go: GenerateOutputURI(pipelineRoot, [pipeline, run])).
        self.run_root = os.path.join(pipeline_root, spec.pipeline_info.name, run_id)
        # (producer task, output key) → the artifact as recorded, and its ML Metadata id.
        self.recorded: dict[tuple[str, str], pb.RuntimeArtifact] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def executor_input(self, task_name: str) -> pb.ExecutorInput:
        task = self.spec.root.dag.tasks[task_name]
        executor_input = pb.ExecutorInput(outputs=self.outputs(task_name))
        for name, parameter in task.inputs.parameters.items():
            executor_input.inputs.parameter_values[name].CopyFrom(parameter.runtime_value.constant)
        for name, artifact in task.inputs.artifacts.items():
            producer = (artifact.task_output_artifact.producer_task,
                        artifact.task_output_artifact.output_artifact_key)
            executor_input.inputs.artifacts[name].artifacts.append(
                as_backend_hands_it(self.recorded[producer], self._ids[producer]))
        return executor_input

    def outputs(self, task_name: str) -> pb.ExecutorInput.Outputs:
        """The task's outputs as the driver provisions them (backend/src/v2/driver/driver.go,
        provisionOutputs): under <root>/<pipeline>/<run>/<task>/<salt>/, named by their key,
        with the launcher's own `executor-logs` added (PUBLISH_LOGS is true by default)."""
        task_root = os.path.join(self.run_root, task_name, uuid.uuid4().hex[:8])
        declared = dict(self.component(task_name).output_definitions.artifacts.items())
        outputs = pb.ExecutorInput.Outputs(output_file=os.path.join(task_root, EXECUTOR_OUTPUT_FILE))
        for name, output in declared.items():
            outputs.artifacts[name].artifacts.add(name=name, uri=os.path.join(task_root, name),
                                                  type=output.artifact_type, metadata=output.metadata)
        outputs.artifacts["executor-logs"].artifacts.add(
            name="executor-logs", uri=os.path.join(task_root, "executor-logs"),
            type=pb.ArtifactTypeSchema(schema_title="system.Artifact"))
        return outputs

    def container(self, task_name: str) -> pb.PipelineDeploymentConfig.PipelineContainerSpec:
        return self.executors[self.component(task_name).executor_label].container

    def component(self, task_name: str) -> pb.ComponentSpec:
        return self.spec.components[self.spec.root.dag.tasks[task_name].component_ref.name]

    def task_order(self) -> list[str]:
        """The DAG's tasks, each after the tasks it depends on (ties by name)."""
        tasks = self.spec.root.dag.tasks
        order: list[str] = []
        while len(order) < len(tasks):
            order.append(min(name for name, task in tasks.items() if name not in order
                             and set(task.dependent_tasks) <= set(order)))
        return order

    def run_all(self) -> dict[str, float]:
        """Runs every task in DAG order, stopping at the first that fails (TaskFailedError);
        returns the seconds each took."""
        seconds = {}
        for task_name in self.task_order():
            start = time.monotonic()
            self.run(task_name)
            seconds[task_name] = time.monotonic() - start
        return seconds

    def run(self, task_name: str) -> None:
        """Runs the task's container (never its lifecycle preCacheCheck, which nothing in
        backend/src/v2 runs) and records its outputs."""
        executor_input = self.executor_input(task_name)
        container = self.container(task_name)
        self._call(task_name, [*container.command, *container.args], executor_input)
        self._record(task_name, executor_input)

    def _call(self, task_name: str, command: Sequence[str], executor_input: pb.ExecutorInput) -> None:
        resolved = placeholder_utils.replace_placeholders(
            list(command), json_format.MessageToDict(executor_input),
            pipeline_resource_name=f"{self.spec.pipeline_info.name}-{RUN_ID}",
            task_resource_name=task_name, pipeline_root=self.run_root)
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        done = subprocess.run(resolved, env={**os.environ, "PATH": path}, capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=False)
        if done.returncode:
            raise TaskFailedError(task_name, f"{' '.join(command[:3])} … exited {done.returncode}:\n"
                                        f"{done.stderr[-STDERR_TAIL_CHARS:]}")

    def _record(self, task_name: str, executor_input: pb.ExecutorInput) -> None:
        """Merges what the executor reported into each provisioned output, as launcher_v2's
        uploadOutputArtifacts and mergeRuntimeArtifacts do, and gives it an ML Metadata id."""
        with open(executor_input.outputs.output_file, encoding="utf-8") as output_file:
            reported = json_format.Parse(output_file.read(), pb.ExecutorOutput(),
                                         ignore_unknown_fields=True)
        for key, provisioned in executor_input.outputs.artifacts.items():
            if key == "executor-logs":
                continue
            [artifact] = provisioned.artifacts
            recorded = pb.RuntimeArtifact()
            recorded.CopyFrom(artifact)
            if reported.artifacts[key].artifacts:
                result = reported.artifacts[key].artifacts[0]
                recorded.uri = result.uri or recorded.uri
                for name, value in result.metadata.fields.items():
                    recorded.metadata.fields[name].CopyFrom(value)
            self.recorded[(task_name, key)] = recorded
            self._ids[(task_name, key)] = len(self._ids) + 1


def _through_metadata(value: struct_pb2.Value) -> struct_pb2.Value:
    """A metadata value after a round trip through ML Metadata, as the backend makes it: a
    bool becomes 0/1, a list {"list": […]}, an object {"struct": {…}}
    (backend/src/v2/metadata/converter.go: StructValueToMLMDValue, then toRuntimeArtifact)."""
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return struct_pb2.Value(number_value=int(value.bool_value))
    if kind in ("list_value", "struct_value"):
        wrapped = struct_pb2.Value()
        wrapped.struct_value.fields["list" if kind == "list_value" else "struct"].CopyFrom(value)
        return wrapped
    return value


def as_backend_hands_it(artifact: pb.RuntimeArtifact, mlmd_id: int) -> pb.RuntimeArtifact:
    """An input artifact as the open-source backend's driver passes it to a task: named by its
    ML Metadata id, its metadata converted, its type an empty instanceSchema
    (backend/src/v2/metadata/client.go: `Schema: ""`; driver/resolve.go passes it on)."""
    handed = pb.RuntimeArtifact(name=str(mlmd_id), uri=artifact.uri,
                                type=pb.ArtifactTypeSchema(instance_schema=""))
    for key, value in artifact.metadata.fields.items():
        handed.metadata.fields[key].CopyFrom(_through_metadata(value))
    return handed
