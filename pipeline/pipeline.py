"""The TFX pipeline definition: new data in, checked, and only a better model served.

What differs between runners (metadata store, Beam arguments, where the data, the
schema and the outputs live) is passed in by the runner; everything else is here.
"""
from __future__ import annotations

import os

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from enja.components import names
from enja.components.data_gate import DataGate
from enja.components.evaluator import Evaluator
from enja.components.example_gen import ParallelCorpusExampleGen
from enja.components.infra_check import InfraCheck
from enja.components.production_model import ProductionModel
from enja.components.serving_export import ServingExport
from enja.components.spans import SpanWindow
from enja.pipeline.configs import EvaluationConfig, PipelineConfig
from enja.preprocessing import features
from enja.serving import contract

# The reviewed schema every span is checked against (see its comments).
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schema.pbtxt")
# Nodes that read state outside their inputs (the corpus folder, the data gate's reference,
# the model in production). Locally their drivers key TFX's cache on that state; Kubeflow
# Pipelines runs no drivers, so there their tasks are never cached.
ALWAYS_RUN_NODE_IDS = (names.EXAMPLE_GEN, names.DATA_GATE, names.PRODUCTION_MODEL)
# The data gate's reference, in the pipeline's state folder.
REFERENCE_FILE = "data_gate_reference.json"


def eval_config(evaluation: EvaluationConfig) -> tfma.EvalConfig:
    """BLEU overall and by source-length bucket; blessing looks at the overall BLEU.

    A model is blessed if its dev BLEU clears the floor and is at most the tolerance
    below the baseline's (the model in production; the first run has none).
    """
    bleu_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": evaluation.bleu_floor}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -evaluation.regression_tolerance}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=contract.EXAMPLES_SIGNATURE,
            label_key=features.TARGET_KEY,
            prediction_key=contract.TRANSLATIONS_OUTPUT,
            preprocessing_function_names=[])],
        slicing_specs=[tfma.SlicingSpec(),
                       tfma.SlicingSpec(feature_keys=[features.SOURCE_LENGTH_BUCKET_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(
            class_name="CorpusBleu", module="enja.models.evaluation.bleu_metric",
            # A plain `threshold` would hold every slice to it, each length bucket too.
            per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()], threshold=bleu_threshold)])])])


def create_pipeline(config: PipelineConfig, data_root: str, pipeline_root: str,
                    serving_model_dir: str, state_dir: str,
                    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None,
                    beam_pipeline_args: list[str], model_config_file: str = "",
                    schema_file: str = SCHEMA_FILE) -> tfx.dsl.Pipeline:
    """Wires ExampleGen → statistics → DataGate → Transform → Trainer → ServingExport →
    Evaluator → InfraCheck → Pusher.

    State lives at URIs outside the pipeline root, read at run time by components (no
    resolver nodes, which open-source Kubeflow Pipelines cannot run): the data gate's
    reference in `state_dir`, and the model in production in `serving_model_dir` and, if
    servers poll one, the TF Serving `model_config_file`. That model is the Trainer's warm
    start and the Evaluator's baseline.

    Transform, and so everything after it, runs only once the DataGate passed the data.
    The Trainer keeps the trained weights and ServingExport turns them into the serving
    SavedModel with the decoding settings, so a run that changes only those re-exports
    the trained model (the Trainer is cached, or keeps its blessed base model's weights:
    models/training/warm_start.py). ServingExport's model is the one evaluated, checked and
    pushed, so once served it is the baseline and the next Trainer's warm start.
    """
    example_gen = ParallelCorpusExampleGen(
        input_base=data_root,
        train_pattern=config.data.train_pattern,
        eval_pattern=config.data.eval_pattern,
        window=SpanWindow(config.data.window_spans, config.data.end_span),
        max_pairs=config.data.max_pairs).with_id(names.EXAMPLE_GEN)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]).with_id(names.STATISTICS_GEN)
    schema_importer = tfx.components.ImportSchemaGen(schema_file=schema_file).with_id(
        names.SCHEMA_IMPORTER)
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"],
        examples=example_gen.outputs["examples"],
        reference_file=os.path.join(state_dir, REFERENCE_FILE),
        max_empty_fraction=config.data.max_empty_fraction).with_id(names.DATA_GATE)
    production_model = ProductionModel(
        serving_model_dir=serving_model_dir, model_name=config.serving.model_name,
        model_config_file=model_config_file).with_id(names.PRODUCTION_MODEL)

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_importer.outputs["schema"],
        preprocessing_fn="enja.preprocessing.transform.preprocessing_fn",
        custom_config=config.transform_config(),
        # StatisticsGen has the input's statistics and the DataGate checks them; Transform's
        # own pre- and post-transform statistics had no reader and cost a quarter of its time.
        disable_statistics=True).with_id(names.TRANSFORM)
    transform.add_upstream_node(data_gate)  # nothing is trained on data the gate stopped
    trainer = tfx.components.Trainer(
        run_fn="enja.models.training.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_importer.outputs["schema"],
        base_model=production_model.outputs["model"],
        custom_config=config.trainer_config()).with_id(names.TRAINER)
    serving_export = ServingExport(
        trained_model=trainer.outputs["model"],
        transform_graph=transform.outputs["transform_graph"],
        **config.export_config()).with_id(names.SERVING_EXPORT)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=serving_export.outputs["model"],
        baseline_model=production_model.outputs["model"],
        eval_config=eval_config(config.evaluation)).with_id(names.EVALUATOR)
    infra_check = InfraCheck(
        model=serving_export.outputs["model"],
        model_name=config.serving.model_name,
        sentences=config.serving.warmup_sentences).with_id(names.INFRA_CHECK)
    pusher = tfx.components.Pusher(
        model=serving_export.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir))
    ).with_id(names.PUSHER)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_importer, data_gate, production_model,
                    transform, trainer, serving_export, evaluator, infra_check, pusher],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args)
