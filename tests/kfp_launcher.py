"""Runs tasks of a compiled PipelineSpec here, the way Kubeflow Pipelines v2 runs them.

For each task it builds the ExecutorInput that KFP's driver builds: the parameters from
the task's `constant` values (schema 2.1), in `inputs.parameterValues`, every input artifact as recorded from its producer (uri, the
metadata the producer's executor reported, and its type by schema title, as ML Metadata
keeps it), every output artifact provisioned under <pipeline root>/<run>/<task>/<key>
with the type and metadata of the component's output definition, and the output file.
It substitutes the placeholders with kfp's own local resolver and runs exactly the
container's command and args — its lifecycle preCacheCheck first, as Vertex AI
Pipelines does — as subprocesses with this virtualenv's `python` first on PATH, where
the image has its own.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import yaml
from google.protobuf import json_format
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


class Launcher:
    """Runs container tasks of one pipeline run and records their output artifacts."""

    def __init__(self, spec: pb.PipelineSpec):
        self.spec = spec
        self.executors = deployment(spec).executors
        self.run_root = os.path.join(spec.default_pipeline_root, RUN_ID)
        # (producer task, output key) → the artifact as a consumer receives it.
        self.recorded: dict[tuple[str, str], pb.RuntimeArtifact] = {}

    def executor_input(self, task_name: str) -> pb.ExecutorInput:
        task = self.spec.root.dag.tasks[task_name]
        return pb.ExecutorInput(
            inputs=pb.ExecutorInput.Inputs(
                parameter_values={name: _constant(task_name, name, parameter)
                            for name, parameter in task.inputs.parameters.items()},
                artifacts={name: pb.ArtifactList(artifacts=[self.recorded[(
                    artifact.task_output_artifact.producer_task,
                    artifact.task_output_artifact.output_artifact_key)]])
                    for name, artifact in task.inputs.artifacts.items()}),
            outputs=self.outputs(task_name))

    def outputs(self, task_name: str) -> pb.ExecutorInput.Outputs:
        """The task's output artifacts and file, provisioned before it runs."""
        task_root = os.path.join(self.run_root, task_name)
        return pb.ExecutorInput.Outputs(
            artifacts={name: pb.ArtifactList(artifacts=[pb.RuntimeArtifact(
                uri=os.path.join(task_root, name), type=output.artifact_type, metadata=output.metadata)])
                for name, output in self._component(task_name).output_definitions.artifacts.items()},
            output_file=os.path.join(task_root, EXECUTOR_OUTPUT_FILE))

    def container(self, task_name: str) -> pb.PipelineDeploymentConfig.PipelineContainerSpec:
        return self.executors[self._component(task_name).executor_label].container

    def _component(self, task_name: str) -> pb.ComponentSpec:
        return self.spec.components[self.spec.root.dag.tasks[task_name].component_ref.name]

    def run(self, task_name: str) -> None:
        """Runs the task's preCacheCheck hook if it has one, then its container, and records its outputs."""
        executor_input = self.executor_input(task_name)
        container = self.container(task_name)
        if container.lifecycle.HasField("pre_cache_check"):
            hook = container.lifecycle.pre_cache_check
            self._call(task_name, [*hook.command, *hook.args], executor_input)
        self._call(task_name, [*container.command, *container.args], executor_input)
        self._record(task_name, executor_input)

    def _call(self, task_name: str, command: Sequence[str], executor_input: pb.ExecutorInput) -> None:
        resolved = placeholder_utils.replace_placeholders(
            list(command), json_format.MessageToDict(executor_input),
            pipeline_resource_name=f"{self.spec.pipeline_info.name}-{RUN_ID}",
            task_resource_name=task_name, pipeline_root=self.spec.default_pipeline_root)
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        done = subprocess.run(resolved, env={**os.environ, "PATH": path}, capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=False)
        if done.returncode:
            raise AssertionError(f"{task_name}: {' '.join(command[:3])} … exited {done.returncode}:\n"
                                 f"{done.stderr[-STDERR_TAIL_CHARS:]}")

    def _record(self, task_name: str, executor_input: pb.ExecutorInput) -> None:
        """What KFP's launcher keeps of each output: uri, type title, the executor's reported metadata."""
        with open(executor_input.outputs.output_file, encoding="utf-8") as output_file:
            reported = json_format.Parse(output_file.read(), pb.ExecutorOutput())
        for key, provisioned in executor_input.outputs.artifacts.items():
            [artifact] = provisioned.artifacts
            [result] = reported.artifacts[key].artifacts
            self.recorded[(task_name, key)] = pb.RuntimeArtifact(
                uri=artifact.uri, metadata=result.metadata,
                type=pb.ArtifactTypeSchema(schema_title=schema_title(artifact.type)))


def _constant(task_name: str, name: str, parameter: pb.TaskInputsSpec.InputParameterSpec):
    """A parameter's compiled `constant`, the only form Kubeflow's driver accepts
    (backend/src/v2/driver/resolve.go); it hands it on in `inputs.parameterValues`."""
    if not parameter.runtime_value.HasField("constant"):
        raise NotImplementedError(f"{task_name}.{name}: only constant parameters are launched here")
    return parameter.runtime_value.constant
