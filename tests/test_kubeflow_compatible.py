"""The pipeline compiles for Kubeflow Pipelines v2 with its checks intact (no cluster needed)."""
from __future__ import annotations

import json

from tfx import v1 as tfx

from enja.pipeline import configs, pipeline
from enja.pipeline.local_runner import OutputLayout


def test_the_pipeline_compiles_for_kubeflow_v2_with_spans_gate_and_serving_check(tmp_path):
    layout = OutputLayout(str(tmp_path), configs.PRESETS["smoke"])
    spec_file = tmp_path / "pipeline.json"
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="enja:test"),
        output_filename=str(spec_file),
    ).run(pipeline.create_pipeline(
        configs.PRESETS["smoke"], data_root="gs://bucket/corpus", pipeline_root="gs://bucket/root",
        serving_model_dir="gs://bucket/serving/enja",
        metadata_connection_config=layout.metadata_connection(), beam_pipeline_args=[]))

    spec = json.loads(spec_file.read_text())["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    # Nothing is transformed or trained before the data gate; nothing pushed before the check.
    assert "DataGate" in tasks["Transform"]["dependentTasks"]
    assert {"Evaluator", "InfraCheck"} <= set(tasks["Pusher"]["dependentTasks"])
    assert "latest_accepted_statistics_resolver" in tasks["DataGate"]["dependentTasks"]
    # The corpus executor (spans, checks) runs behind Kubeflow's stock ExampleGen driver.
    example_gen = executors["ParallelCorpusExampleGen_executor"]["container"]
    assert "enja.components.example_gen.Executor" in example_gen["args"]
    assert "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in (
        example_gen["lifecycle"]["preCacheCheck"]["command"])
    for task, module in (("DataGate", "data_gate"), ("InfraCheck", "infra_check")):
        assert f"enja.components.{module}.Executor" in executors[f"{task}_executor"]["container"]["args"]
    assert "resolver" in executors["latest_accepted_statistics_resolver_executor"]
