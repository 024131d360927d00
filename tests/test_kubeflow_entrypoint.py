"""Our container entrypoint reads what open-source Kubeflow Pipelines' backend hands a task."""
from __future__ import annotations

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from tfx.dsl.components.base import base_executor
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.types import standard_artifacts

from enja.components import data_gate, example_gen, names
from enja.pipeline import kubeflow_entrypoint
from support import kfp_launcher

FILE_PAIRS = [{"split": "train", "span": 3, "source": "/c/train.en.003", "target": "/c/train.ja.003",
               "pairs": 300, "dropped_empty": 0, "empty_source": 0, "empty_target": 0}]


def _examples_as_example_gen_reports_them() -> pb.RuntimeArtifact:
    """ExampleGen's output as TFX's entrypoint writes it into the executor output."""
    examples = standard_artifacts.Examples()
    examples.uri = "/root/examples"
    examples.split_names = '["train", "eval"]'
    examples.set_json_value_custom_property(names.SPANS, [3])
    examples.set_json_value_custom_property(names.FILE_PAIRS, FILE_PAIRS)
    return kubeflow_v2_entrypoint_utils.to_runtime_artifact(examples, {})


def _data_gate_input() -> tuple[pb.ExecutorInput, pb.ComponentInputsSpec]:
    inputs_spec = pb.ComponentInputsSpec()
    inputs_spec.artifacts["examples"].artifact_type.schema_title = "tfx.Examples"
    executor_input = pb.ExecutorInput()
    executor_input.inputs.artifacts["examples"].artifacts.append(
        kfp_launcher.as_backend_hands_it(_examples_as_example_gen_reports_them(), mlmd_id=7))
    accepted = executor_input.outputs.artifacts["accepted_statistics"].artifacts.add(uri="/root/accepted")
    accepted.type.schema_title = "tfx.Statistics"
    executor_input.outputs.artifacts["executor-logs"].artifacts.add(
        uri="/root/logs").type.schema_title = "system.Artifact"
    return executor_input, inputs_spec


def test_inputs_from_the_backend_are_rebuilt_with_their_declared_type_and_metadata():
    executor_input, inputs_spec = _data_gate_input()
    with pytest.raises(AttributeError):  # what TFX 1.16's entrypoint does with them unrepaired
        kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.inputs.artifacts)

    repaired = kubeflow_entrypoint.repair(executor_input, inputs_spec)

    [examples] = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(repaired.inputs.artifacts)["examples"]
    assert type(examples) is standard_artifacts.Examples
    assert (examples.uri, examples.split_names) == ("/root/examples", '["train", "eval"]')
    assert example_gen.spans_read(examples) == [3]
    assert example_gen.file_pairs_read(examples) == [example_gen.FilePair.from_json(FILE_PAIRS[0])]
    outputs = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(repaired.outputs.artifacts)
    assert set(outputs) == {"accepted_statistics"}
    assert type(outputs["accepted_statistics"][0]) is data_gate.AcceptedStatistics


def test_a_whole_executor_input_passes_unchanged():
    """Vertex AI Pipelines hands typed artifacts with their metadata as written."""
    typed = pb.ExecutorInput()
    artifact = typed.inputs.artifacts["examples"].artifacts.add()
    artifact.CopyFrom(_examples_as_example_gen_reports_them())
    artifact.type.schema_title = "tfx.Examples"
    _, inputs_spec = _data_gate_input()
    assert kubeflow_entrypoint.repair(typed, inputs_spec) == typed


class GateExecutor(base_executor.BaseExecutor):
    """Stops the run as the data gate does when an output's URI says so."""

    def Do(self, input_dict, output_dict, exec_properties):
        [report] = output_dict["report"]
        if report.uri.endswith("bad"):
            return data_gate.stopped(["train span 2: en_script: out of range"])
        return None


@pytest.mark.parametrize("outcome", ["good", "bad"])
def test_a_failed_execution_result_fails_the_task(tmp_path, outcome):
    """TFX's own entrypoint drops what `Do` returns, so without ours a stopped gate would pass."""
    executor_input = pb.ExecutorInput()
    executor_input.outputs.output_file = str(tmp_path / "executor_output.json")
    report = executor_input.outputs.artifacts["report"].artifacts.add(uri=str(tmp_path / outcome))
    report.type.schema_title = "tfx.ExampleAnomalies"
    arguments = ["--executor_class_path", f"{__name__}.GateExecutor",
                 "--json_serialized_invocation_args", json_format.MessageToJson(executor_input)]
    if outcome == "bad":
        with pytest.raises(kubeflow_entrypoint.ExecutionStoppedError, match=r"^train span 2: en_script"):
            kubeflow_entrypoint.main(arguments)
        assert not (tmp_path / "executor_output.json").exists()
    else:
        with pytest.raises(SystemExit) as exit_:  # absl's app.run ends the process
            kubeflow_entrypoint.main(arguments)
        assert exit_.value.code in (None, 0) and (tmp_path / "executor_output.json").exists()
