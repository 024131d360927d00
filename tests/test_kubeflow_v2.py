"""The Kubeflow Pipelines v2 spec: it parses as kfp's PipelineSpec, and its containers run.

The spec is compiled with `enja kubeflow` (smoke preset, the real corpus) and parsed with
kfp's own protos. Then every task runs here in DAG order through exactly the commands and
arguments the spec gives, fed the executor input the open-source backend builds
(tests/support/kfp_launcher.py: no resolver executors, no `preCacheCheck` hook, untyped inputs,
converted metadata), in the background while the local run of the same preset goes on (the
`smoke_run` fixture). Its ExampleGen and Transform outputs must equal the local run's, and
the model it pushes must be served by our model server. Later runs (warm start, a bad span,
a rollback) take minutes each and are measured by bench/kubeflow_runs.py.
"""
from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator

import grpc
import pytest
import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.types import Artifact, standard_artifacts

from enja.components import data_gate, example_gen, names, production_model
from enja.components.data_gate import AcceptedStatistics
from enja.models.training import training_summary
from enja.pipeline import beam, cli, configs, data, kubeflow_entrypoint, kubeflow_v2_runner, pipeline
from enja.pipeline.operations import lineage
from enja.serving import contract, versions, warmup
from enja.serving.server import ModelServer, ServerOptions
from support import kfp_launcher

IMAGE = "registry.example/enja-nmt:test"
RUN_EXECUTOR = ["python", "-m", "enja.pipeline.kubeflow_entrypoint"]
EXAMPLE_GEN_DRIVER = ["python", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]
EXAMPLE_GEN = "ParallelCorpusExampleGen"
# Every container task and the executor it runs.
EXECUTORS = {
    EXAMPLE_GEN: "enja.components.example_gen.Executor",
    "StatisticsGen": "tfx.components.statistics_gen.executor.Executor",
    "ImportSchemaGen": "tfx.components.schema_gen.import_schema_gen.executor.Executor",
    "DataGate": "enja.components.data_gate.Executor",
    "ProductionModel": "enja.components.production_model.Executor",
    "Transform": "tfx.components.transform.executor.Executor",
    "Trainer": "tfx.components.trainer.executor.GenericExecutor",
    "ServingExport": "enja.components.serving_export.Executor",
    "Evaluator": "enja.components.evaluator.Executor",
    "InfraCheck": "enja.components.infra_check.Executor",
    "Pusher": "tfx.components.pusher.executor.Executor",
}
SMOKE = configs.PRESETS["smoke"]


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> dict:
    """The smoke preset compiled by `enja kubeflow` to YAML, with local URIs the test can run on."""
    root = tmp_path_factory.mktemp("kubeflow")
    paths = {"output": str(root / "pipeline.yaml"), "pipeline_root": str(root / "pipeline_root"),
             "data_root": data.resolve_data_root(None), "state_dir": str(root / "state"),
             "serving_dir": str(root / "serving_model" / SMOKE.serving.model_name)}
    assert cli.main(["kubeflow", "--preset", "smoke", "--image", IMAGE,
                     "--output", paths["output"], "--pipeline-root", paths["pipeline_root"],
                     "--data-root", paths["data_root"], "--serving-dir", paths["serving_dir"],
                     "--state-dir", paths["state_dir"], "--schema-file", pipeline.SCHEMA_FILE]) == 0
    return {**paths, "spec": kfp_launcher.load_spec(paths["output"])}


def _parameter(spec: pb.PipelineSpec, task: str, name: str) -> str:
    return spec.root.dag.tasks[task].inputs.parameters[name].runtime_value.constant.string_value


def test_the_spec_has_every_task_in_order_and_every_container_as_deployed(compiled):
    spec = compiled["spec"]
    tasks = spec.root.dag.tasks
    assert set(tasks) == set(EXECUTORS)
    # Nothing is transformed or trained before the data gate; nothing pushed before both checks.
    assert "DataGate" in tasks["Transform"].dependent_tasks
    # The serving model is exported from the trained one, and only it is evaluated.
    assert {"Trainer", "Transform"} <= set(tasks["ServingExport"].dependent_tasks)
    assert "Trainer" not in tasks["Evaluator"].dependent_tasks
    assert {"Evaluator", "InfraCheck"} <= set(tasks["Pusher"].dependent_tasks)
    # The model in production is the Trainer's warm start and the Evaluator's baseline.
    both = set(tasks["Trainer"].dependent_tasks) & set(tasks["Evaluator"].dependent_tasks)
    assert "ProductionModel" in both
    assert spec.default_pipeline_root == compiled["pipeline_root"]
    # Tasks that read state outside their inputs are never cached; the others are.
    assert {task for task in tasks if tasks[task].caching_options.enable_cache} == (
        set(EXECUTORS) - set(pipeline.ALWAYS_RUN_NODE_IDS))
    executors = kfp_launcher.deployment(spec).executors
    assert all(executor.HasField("container") for executor in executors.values())

    launcher = kfp_launcher.Launcher(spec, compiled["pipeline_root"])
    for task, executor_class in EXECUTORS.items():  # every one gets the pipeline's Beam arguments
        container = launcher.container(task)
        invocation = ["--json_serialized_invocation_args", "{{$}}",
                      "--json_serialized_inputs_spec_args", json_format.MessageToJson(
                          spec.components[task].input_definitions, sort_keys=True),
                      *beam.pipeline_args(SMOKE.beam)]
        assert (container.image, list(container.command), list(container.args)) == (
            IMAGE, RUN_EXECUTOR, ["--executor_class_path", executor_class, *invocation]), task
    # The corpus executor (spans, checks) runs behind Kubeflow's stock ExampleGen driver.
    driver = launcher.container(EXAMPLE_GEN).lifecycle.pre_cache_check
    assert list(driver.command) == EXAMPLE_GEN_DRIVER
    assert _parameter(spec, EXAMPLE_GEN, "input_base") == compiled["data_root"]
    assert _parameter(spec, "ImportSchemaGen", "schema_file") == pipeline.SCHEMA_FILE


def test_the_data_gate_container_rebuilds_its_output_artifacts(compiled):
    outputs = kfp_launcher.Launcher(compiled["spec"], compiled["pipeline_root"]).outputs("DataGate")
    repaired = kubeflow_entrypoint.repair(pb.ExecutorInput(outputs=outputs), pb.ComponentInputsSpec())
    rebuilt = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(repaired.outputs.artifacts)
    assert type(rebuilt["accepted_statistics"][0]) is AcceptedStatistics


def _tfx_spec(tmp_path, resolver: bool, use_pipeline_spec_2_1: bool) -> pb.PipelineSpec:
    """A two-node TFX pipeline compiled for Kubeflow, with or without a resolver node."""
    schema = tfx.components.ImportSchemaGen(schema_file=pipeline.SCHEMA_FILE)
    nodes = [schema]
    if resolver:
        nodes.append(tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
                                      schema=tfx.dsl.Channel(type=standard_artifacts.Schema)))
    job = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=IMAGE, use_pipeline_spec_2_1=use_pipeline_spec_2_1)).run(
        tfx.dsl.Pipeline(pipeline_name="p", pipeline_root=str(tmp_path), components=nodes),
        write_out=False)
    return json_format.ParseDict(job["pipelineSpec"], pb.PipelineSpec())


@pytest.mark.parametrize(("resolver", "use_pipeline_spec_2_1", "message"), [
    (True, True, "non-container and non-importer executor not implemented"),
    (False, False, "unsupported runtime value"),
], ids=["resolver-executor", "constantValue"])
def test_the_launcher_refuses_what_the_backend_refuses(tmp_path, resolver, use_pipeline_spec_2_1,
                                                       message):
    """The pipeline before issue #21 had resolver nodes and pre-2.1 `constantValue`s."""
    spec = _tfx_spec(tmp_path, resolver, use_pipeline_spec_2_1)
    with pytest.raises(kfp_launcher.RefusedError, match=message):
        kfp_launcher.Launcher(spec, str(tmp_path))
    kfp_launcher.Launcher(_tfx_spec(tmp_path, False, True), str(tmp_path))  # what we compile


def test_a_json_file_gets_the_pipeline_job_with_its_root(tmp_path):
    output = tmp_path / "pipeline.json"
    kubeflow_v2_runner.compile_pipeline(
        SMOKE, str(output), pipeline_root="gs://bucket/root", data_root="gs://bucket/corpus",
        serving_model_dir="gs://bucket/serving_model/enja", state_dir="gs://bucket/state")

    job = json_format.Parse(output.read_text(), pb.PipelineJob())
    assert job.runtime_config.gcs_output_directory == "gs://bucket/root"
    assert job.pipeline_spec["defaultPipelineRoot"] == "gs://bucket/root"
    assert _parameter(json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec),
                                            pb.PipelineSpec()),
                      "ImportSchemaGen", "schema_file") == kubeflow_v2_runner.IMAGE_SCHEMA_FILE


@pytest.mark.parametrize(("arguments", "message"), [
    (["--set", "nope.epochs=2"], "enja kubeflow: --set: expected group.field=value"),
    ([], "enja kubeflow: give --data-root URI"),
])
def test_kubeflow_user_errors_are_one_line(arguments, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(data.DATA_ROOT_ENV, raising=False)
    code = cli.main(["kubeflow", "--output", str(tmp_path / "p.yaml"),
                     "--pipeline-root", "gs://bucket/root", *arguments])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith(message) and error.count("\n") == 1
    assert not (tmp_path / "p.yaml").exists()


def _records(examples: Artifact, split: str) -> list[bytes]:
    """The split's tf.Examples, each serialized deterministically: the order in which a process
    writes a feature map is not fixed (string hashing), so the written bytes differ between runs."""
    files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
    return sorted(tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
                  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _vocabularies(transform_graph_uri: str) -> dict[str, bytes]:
    assets = os.path.join(transform_graph_uri, "transform_fn", "assets")
    return {name: tf.io.gfile.GFile(os.path.join(assets, name), "rb").read()
            for name in tf.io.gfile.listdir(assets)}


def _local_artifacts(smoke_run: dict) -> tuple[Artifact, str]:
    """The local run's ExampleGen Examples (the ones with a dropped-pair count) and its vocabularies'
    graph."""
    store = lineage.Lineage(smoke_run["layout"].metadata_connection())
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(next(
        artifact for artifact in store.artifacts("Examples")
        if names.DROPPED_EMPTY_PAIRS in artifact.custom_properties))
    return examples, store.artifacts("TransformGraph")[0].uri


# Session-scoped like `smoke_run`: among fixtures of one scope pytest sets up first the one a
# test names first, so these subprocesses start before the local run and overlap it.
@pytest.fixture(scope="session")
def kubeflow_run(compiled) -> Iterator[tuple[kfp_launcher.Launcher, concurrent.futures.Future]]:
    """Every task of the spec in DAG order, run in the background while the local run goes on;
    the future gives each task's seconds."""
    launcher = kfp_launcher.Launcher(compiled["spec"], compiled["pipeline_root"])
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        yield launcher, pool.submit(launcher.run_all)


def _as_consumer_sees_it(launcher: kfp_launcher.Launcher, consumer: str, key: str) -> Artifact:
    """An input as our container entrypoint hands it to TFX in the consuming task."""
    repaired = kubeflow_entrypoint.repair(launcher.executor_input(consumer),
                                          launcher.component(consumer).input_definitions)
    [artifact] = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(repaired.inputs.artifacts)[key]
    return artifact


def test_example_gen_and_transform_run_from_the_spec_as_locally(kubeflow_run, smoke_run):
    launcher, tasks = kubeflow_run
    tasks.result()

    local_examples, local_transform_graph = _local_artifacts(smoke_run)
    examples = _as_consumer_sees_it(launcher, "StatisticsGen", "examples")
    for split in ("train", "eval"):
        records = _records(examples, split)
        assert len(records) == SMOKE.data.max_pairs and records == _records(local_examples, split), split
    assert example_gen.spans_read(examples) == example_gen.spans_read(local_examples) == [4]
    assert example_gen.file_pairs_read(examples) == example_gen.file_pairs_read(local_examples)
    assert (examples.span, examples.split_names) == (local_examples.span, local_examples.split_names)
    fingerprint = examples.get_string_custom_property("input_fingerprint")  # no driver ran there
    assert fingerprint and fingerprint == local_examples.get_string_custom_property("input_fingerprint")

    vocabularies = _vocabularies(launcher.recorded[("Transform", "transform_graph")].uri)
    assert vocabularies and vocabularies == _vocabularies(local_transform_graph)


def test_the_whole_spec_runs_and_pushes_a_model_that_enja_serve_answers_with(kubeflow_run, compiled):
    launcher, tasks = kubeflow_run
    seconds = tasks.result()
    assert list(seconds) == launcher.task_order() and set(seconds) == set(EXECUTORS)

    assert not production_model.holds_model(_as_consumer_sees_it(launcher, "Trainer", "base_model"))
    start = training_summary.read(launcher.recorded[("Trainer", "model_run")].uri)["start"]
    assert (start["mode"], start["reason"]) == ("cold", "no model in production yet")
    assert data_gate.read_reference(os.path.join(compiled["state_dir"], pipeline.REFERENCE_FILE))[
        "spans"] == [4]
    blessing = _as_consumer_sees_it(launcher, "Pusher", "model_blessing")
    assert blessing.get_custom_property("blessed") == 1
    pushed = launcher.recorded[("Pusher", "pushed_model")].metadata
    version = int(pushed["pushed_version"])
    assert pushed["pushed"] == 1 and versions.versions_on_disk(compiled["serving_dir"]) == [version]

    server = ModelServer(os.path.dirname(compiled["serving_dir"]), SMOKE.serving.model_name,
                         ServerOptions(port=0))
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = warmup.predict_request(["i like cats ."], SMOKE.serving.model_name)
            response = stub.Predict(request, timeout=60, wait_for_ready=True)
    finally:
        server.stop()
    assert response.model_spec.version.value == version
    [translation] = tf.make_ndarray(response.outputs[contract.TRANSLATIONS_OUTPUT])
    assert translation.decode()
