"""The containers' command on Kubeflow: TFX's v2 entrypoint, fed an executor input it can read.

Open-source Kubeflow Pipelines' backend hands a task its input artifacts in a form TFX 1.16's
entrypoint (`kubeflow_v2_run_executor`) cannot rebuild, where Vertex AI Pipelines does not:
- no type: the driver reads input artifacts back from ML Metadata with an empty
  `instanceSchema` (backend/src/v2/metadata/client.go), and TFX picks an artifact's Python
  class by its type's title;
- converted metadata: on its way through ML Metadata a list becomes {"list": [...]} and an
  object {"struct": {...}} (metadata/converter.go, StructValueToMLMDValue);
- an extra output: the driver adds `executor-logs`, typed `system.Artifact`, to every task
  (driver/driver.go), which the launcher fills itself and TFX cannot import.
This command gives each input artifact that arrived without a type the type its component
declares (the input definitions schema 2.1 passes in `--json_serialized_inputs_spec_args`),
unwraps its metadata, hides the launcher's own outputs from TFX, and then runs TFX's
entrypoint as it is. An executor input that is already whole passes through unchanged.

One more difference, on both backends: TFX's entrypoint drops what an executor's `Do`
returns, so a failed execution result (the data gate's way to stop a run, which the local
launcher fails the node for) would let the run go on. The executor runs wrapped so that such
a result fails the task with its message.

Usage (what compiled specs run):
  python -m enja.pipeline.kubeflow_entrypoint --executor_class_path … \
      --json_serialized_invocation_args '{{$}}' --json_serialized_inputs_spec_args '…' [Beam args]
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from absl import app
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor
from tfx.proto.orchestration import execution_result_pb2
from tfx.utils import import_utils

MODULE = "enja.pipeline.kubeflow_entrypoint"
COMMAND = ["python", "-m", MODULE]
# Outputs the launcher adds and fills itself (driver/driver.go, component/launcher_v2.go).
LAUNCHER_OUTPUTS = ("executor-logs",)
# The single keys ML Metadata's conversion wraps lists and objects in.
_WRAPPERS = {"list": "list_value", "struct": "struct_value"}


def _unwrapped(value: struct_pb2.Value) -> struct_pb2.Value:
    """A metadata value as the producer wrote it, before the backend wrapped it."""
    if value.WhichOneof("kind") == "struct_value" and len(value.struct_value.fields) == 1:
        [(key, inner)] = value.struct_value.fields.items()
        if _WRAPPERS.get(key) == inner.WhichOneof("kind"):
            return inner
    return value


def _untyped(artifact: pb.RuntimeArtifact) -> bool:
    kind = artifact.type.WhichOneof("kind")
    return kind is None or not getattr(artifact.type, kind)


def repair(executor_input: pb.ExecutorInput, inputs_spec: pb.ComponentInputsSpec) -> pb.ExecutorInput:
    """A copy of `executor_input` that TFX's entrypoint can read (see the module docstring)."""
    repaired = pb.ExecutorInput()
    repaired.CopyFrom(executor_input)
    for key, artifacts in repaired.inputs.artifacts.items():
        for artifact in artifacts.artifacts:
            if not _untyped(artifact):
                continue
            artifact.type.CopyFrom(inputs_spec.artifacts[key].artifact_type)
            for name, value in list(artifact.metadata.fields.items()):
                artifact.metadata.fields[name].CopyFrom(_unwrapped(value))
    for key in LAUNCHER_OUTPUTS:
        if key in repaired.outputs.artifacts:
            del repaired.outputs.artifacts[key]
    return repaired


class ExecutionStoppedError(RuntimeError):
    """The executor returned a failed execution result; its message is the result's."""


def stopping_on_failed_result(executor_class: type[base_executor.BaseExecutor]) -> type:
    """A subclass of `executor_class` whose `Do` raises a failed execution result it returns."""

    class Stopping(executor_class):  # type: ignore[misc, valid-type]
        def Do(self, input_dict: dict[str, list[types.Artifact]],
               output_dict: dict[str, list[types.Artifact]],
               exec_properties: dict[str, Any]) -> execution_result_pb2.ExecutorOutput | None:
            result = super().Do(input_dict, output_dict, exec_properties)
            if result is not None and result.execution_result.code:
                raise ExecutionStoppedError(result.execution_result.result_message)
            return result

    Stopping.__name__ = Stopping.__qualname__ = executor_class.__name__
    return Stopping


# The class TFX's entrypoint runs, by this path: the task's own executor, wrapped by `main`.
Executor: type | None = None


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """TFX's entrypoint's arguments; the rest are Beam's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor_class_path", required=True)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args", default="")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, beam_args = _parse(sys.argv[1:] if argv is None else argv)
    if args.json_serialized_inputs_spec_args:
        inputs_spec = json_format.Parse(args.json_serialized_inputs_spec_args, pb.ComponentInputsSpec(),
                                        ignore_unknown_fields=True)
        executor_input = json_format.Parse(args.json_serialized_invocation_args, pb.ExecutorInput(),
                                           ignore_unknown_fields=True)
        args.json_serialized_invocation_args = json_format.MessageToJson(
            repair(executor_input, inputs_spec))
    # TFX's entrypoint imports the executor by its path; run as `-m`, this file is `__main__`,
    # so the wrapped class goes on the module as imported by name.
    this = importlib.import_module(MODULE)
    this.Executor = stopping_on_failed_result(import_utils.import_class_by_path(args.executor_class_path))
    args.executor_class_path = f"{MODULE}.Executor"
    # absl's app sets up the logging TFX's entrypoint writes through; the flags are parsed above.
    app.run(lambda _: kubeflow_v2_run_executor.main((args, beam_args)), argv=[sys.argv[0]])


if __name__ == "__main__":
    main()
