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

Usage (what compiled specs run):
  python -m enja.pipeline.kubeflow_entrypoint --executor_class_path … \
      --json_serialized_invocation_args '{{$}}' --json_serialized_inputs_spec_args '…' [Beam args]
"""
from __future__ import annotations

import argparse
import sys

from absl import app
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

COMMAND = ["python", "-m", "enja.pipeline.kubeflow_entrypoint"]
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
    # absl's app sets up the logging TFX's entrypoint writes through; the flags are parsed above.
    app.run(lambda _: kubeflow_v2_run_executor.main((args, beam_args)), argv=[sys.argv[0]])


if __name__ == "__main__":
    main()
