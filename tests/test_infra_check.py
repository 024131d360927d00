"""InfraCheck: its executor run for real on good and broken models, and its Kubeflow v2 compilation."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import pytest
import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.components.util import model_utils
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils, kubeflow_v2_run_executor
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import path_utils, proto_utils

from enja.components import infra_check, names
from enja.components.infra_check import InfraCheck
from enja.serving import contract, warmup
from enja.serving.config import ServingConfig
from support.corpus import TINY_PAIRS

MODEL_NAME = ServingConfig.model_name
SENTENCES = [en for en, _ in TINY_PAIRS[:3]]


class StandIn(tf.Module):
    """The serving signature's names and types, answering one fixed translation and score."""

    def __init__(self, translation: str, score: float):
        super().__init__()
        self.translation, self.score = translation, score

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.TEXT_INPUT)])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {contract.TRANSLATIONS_OUTPUT: tf.fill(tf.shape(text), tf.constant(self.translation)),
                contract.SCORES_OUTPUT: tf.fill(tf.shape(text), tf.constant(self.score, tf.float32))}


def save_stand_in(path: str, translation: str = "猫 が 好き", score: float = -1.0) -> str:
    module = StandIn(translation, score)
    tf.saved_model.save(module, path, signatures={contract.SERVING_SIGNATURE: module.serve})
    warmup.write_warmup_requests(path, SENTENCES, MODEL_NAME)
    return path


def model_artifact(saved_model: str, tmp_path) -> standard_artifacts.Model:
    """A Model artifact laid out as ServingExport writes it, holding a copy of `saved_model`."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    shutil.copytree(saved_model, path_utils.serving_model_dir(model.uri))
    return model


def serving_dir(model: standard_artifacts.Model) -> str:
    return path_utils.serving_model_dir(model.uri)


def run_infra_check(model: standard_artifacts.Model, tmp_path) -> standard_artifacts.InfraBlessing:
    """The executor, with the exec properties the component hands it."""
    component = InfraCheck(model=tfx.dsl.Channel(type=standard_artifacts.Model),
                           model_name=MODEL_NAME, sentences=SENTENCES)
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    infra_check.Executor().Do({infra_check.MODEL_KEY: [model]}, {infra_check.BLESSING_KEY: [blessing]},
                              component.exec_properties)
    return blessing


def push(model: standard_artifacts.Model, blessing: standard_artifacts.InfraBlessing, tmp_path) -> bool:
    """Runs TFX's Pusher executor on the verdict; returns whether it pushed."""
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed_model")
    destination = tfx.proto.PushDestination(
        filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(tmp_path / "serving_model")))
    pusher_executor.Executor().Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.INFRA_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
    return bool(pushed.get_int_custom_property("pushed"))


def assert_verdict(blessing: standard_artifacts.InfraBlessing, blessed: bool) -> str:
    """Checks the property Pusher reads and the marker file; returns the reason."""
    assert model_utils.is_infra_validated(blessing) is blessed
    marker, other = ((infra_check.BLESSED_FILE, infra_check.NOT_BLESSED_FILE) if blessed
                     else (infra_check.NOT_BLESSED_FILE, infra_check.BLESSED_FILE))
    assert os.path.exists(os.path.join(blessing.uri, marker))
    assert not os.path.exists(os.path.join(blessing.uri, other))
    reason = blessing.get_string_custom_property(names.REASON)
    assert reason
    return reason


def test_exported_model_is_blessed_and_pushed(exported_model_dir, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the served copy goes
    model = model_artifact(exported_model_dir, tmp_path)
    blessing = run_infra_check(model, tmp_path)
    reason = assert_verdict(blessing, blessed=True)
    assert "only core TF ops" in reason and "2 warm-up request(s)" in reason and "served over gRPC" in reason
    assert not any(scratch.glob("infra_check_*")), "the served copy was left behind"
    assert push(model, blessing, tmp_path)


def _wrong_input_warmup(path: str) -> None:
    """Replaces the warm-up file by one request whose input is misnamed."""
    request = warmup.predict_request(SENTENCES, MODEL_NAME)
    request.inputs["sentences"].CopyFrom(request.inputs.pop(contract.TEXT_INPUT))
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    with tf.io.TFRecordWriter(os.path.join(path, warmup.WARMUP_FILE)) as writer:
        writer.write(log.SerializeToString())


@pytest.mark.parametrize(("translation", "score", "spoil", "expected"), [
    ("", -1.0, None, r"empty translation of 'i like cats \.'"),
    ("猫", 0.5, None, r"score 0\.5 of 'i like cats \.' is not a finite log-probability"),
    ("猫", -1.0, _wrong_input_warmup, r"a stored warm-up request failed: .*'sentences'"),
], ids=["empty-translation", "positive-score", "bad-warmup-request"])
def test_model_that_serves_badly_is_not_blessed(translation, score, spoil, expected, tmp_path):
    model = model_artifact(save_stand_in(str(tmp_path / "stand_in"), translation, score), tmp_path)
    if spoil:
        spoil(serving_dir(model))
    blessing = run_infra_check(model, tmp_path)
    assert re.search(expected, assert_verdict(blessing, blessed=False))
    assert not push(model, blessing, tmp_path)


def _add_custom_op(path: str) -> None:
    """A graph needing a tensorflow-text op, faked by adding such a node to a function."""
    pb = os.path.join(path, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        saved_model.ParseFromString(f.read())
    saved_model.meta_graphs[0].graph_def.library.function[0].node_def.add(
        name="split", op="WhitespaceTokenizeWithOffsets")
    with open(pb, "wb") as f:
        f.write(saved_model.SerializeToString())


def _corrupt_graph(path: str) -> None:
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"\xff not a SavedModel")


def _no_graph(path: str) -> None:
    os.remove(os.path.join(path, "saved_model.pb"))


@pytest.mark.parametrize(("spoil", "expected"), [
    (_add_custom_op, "uses ops stock TF Serving lacks: WhitespaceTokenizeWithOffsets"),
    (_corrupt_graph, "not a SavedModel: saved_model.pb in"),
    (_no_graph, "not a SavedModel: no saved_model.pb in"),
], ids=["custom-op", "corrupt-graph", "no-graph"])
def test_model_stock_tf_serving_cannot_load_is_not_blessed(spoil, expected, tmp_path):
    model = model_artifact(save_stand_in(str(tmp_path / "stand_in")), tmp_path)
    spoil(serving_dir(model))
    assert expected in assert_verdict(run_infra_check(model, tmp_path), blessed=False)


def test_component_needs_test_sentences():
    with pytest.raises(ValueError, match="test sentences"):
        InfraCheck(model=tfx.dsl.Channel(type=standard_artifacts.Model), model_name=MODEL_NAME, sentences=[])


@pytest.fixture(scope="module")
def kubeflow_v2_spec(tmp_path_factory) -> dict:
    """Importer → InfraCheck → Pusher compiled by TFX's Kubeflow Pipelines v2 runner: the pipelineSpec."""
    importer = tfx.dsl.Importer(source_uri="gs://bucket/model", artifact_type=standard_artifacts.Model
                                ).with_id("model_importer")
    check = InfraCheck(model=importer.outputs["result"], model_name=MODEL_NAME, sentences=SENTENCES)
    pusher = tfx.components.Pusher(
        model=importer.outputs["result"], infra_blessing=check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory="gs://bucket/serving_model")))
    pipeline = tfx.dsl.Pipeline(pipeline_name="infra-check", pipeline_root="gs://bucket/root",
                                components=[importer, check, pusher])
    output_dir = tmp_path_factory.mktemp("kubeflow_v2")
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="enja:test"),
        output_dir=str(output_dir), output_filename="pipeline.json").run(pipeline)
    return json.loads((output_dir / "pipeline.json").read_text())["pipelineSpec"]


def test_compiles_for_kubeflow_pipelines_v2(kubeflow_v2_spec):
    tasks = kubeflow_v2_spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"model_importer", "InfraCheck", "Pusher"}
    assert "InfraCheck" in tasks["Pusher"]["dependentTasks"]
    assert tasks["Pusher"]["inputs"]["artifacts"]["infra_blessing"]["taskOutputArtifact"] == {
        "producerTask": "InfraCheck", "outputArtifactKey": "blessing"}
    container = kubeflow_v2_spec["deploymentSpec"]["executors"]["InfraCheck_executor"]["container"]
    assert container["args"][:2] == ["--executor_class_path", "enja.components.infra_check.Executor"]


def test_runs_in_the_kubeflow_v2_container_entrypoint(kubeflow_v2_spec, tmp_path):
    """The compiled task's parameters through TFX's KFP v2 container entrypoint, to a blessing Pusher reads.

    On KFP v2 the int `blessed` travels as a JSON number in the executor output's metadata.
    """
    task = kubeflow_v2_spec["root"]["dag"]["tasks"]["InfraCheck"]
    component = kubeflow_v2_spec["components"]["InfraCheck"]
    container = kubeflow_v2_spec["deploymentSpec"]["executors"]["InfraCheck_executor"]["container"]
    model_type = component["inputDefinitions"]["artifacts"]["model"]["artifactType"]
    blessing_type = component["outputDefinitions"]["artifacts"]["blessing"]["artifactType"]
    model = model_artifact(save_stand_in(str(tmp_path / "stand_in")), tmp_path)
    output_file = tmp_path / "task" / "executor_output.json"
    executor_input = {
        "inputs": {
            "artifacts": {"model": {"artifacts": [{"uri": model.uri, "type": model_type}]}},
            "parameters": {key: value["runtimeValue"]["constantValue"]
                           for key, value in task["inputs"]["parameters"].items()}},
        "outputs": {
            "artifacts": {"blessing": {"artifacts": [
                {"uri": str(tmp_path / "blessing"), "type": blessing_type}]}},
            "outputFile": str(output_file)}}
    # The container's own arguments, with the placeholder KFP fills in; in-process (through TFX's
    # own flag parser), to skip a second TFX import.
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container["args"]]
    kubeflow_v2_run_executor.main(kubeflow_v2_run_executor._parse_flags(args))

    written = json.loads(output_file.read_text())["artifacts"]["blessing"]["artifacts"][0]
    downstream = {"uri": written["uri"], "type": blessing_type, "metadata": written["metadata"]}
    blessing = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(
        {"blessing": json_format.ParseDict({"artifacts": [downstream]}, pipeline_spec_pb2.ArtifactList())},
        {})["blessing"][0]
    assert "served over gRPC" in assert_verdict(blessing, blessed=True)
