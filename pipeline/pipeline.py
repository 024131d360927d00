"""The TFX pipeline definition: corpus in, validated translator pushed."""
from __future__ import annotations


import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from enja.components.example_gen import ParallelCorpusExampleGen
from enja.models import contract
from enja.pipeline.configs import EvaluationConfig, PipelineConfig
from enja.preprocessing import features


def eval_config(evaluation: EvaluationConfig) -> tfma.EvalConfig:
    """Blesses a model whose dev BLEU clears the floor and does not fall below the baseline's."""
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
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(
            class_name="CorpusBleu", module="enja.models.bleu_metric",
            threshold=bleu_threshold)])])


def create_pipeline(config: PipelineConfig, data_root: str, pipeline_root: str,
                    serving_model_dir: str, metadata_path: str,
                    beam_pipeline_args: list[str]) -> tfx.dsl.Pipeline:
    """Wires ExampleGen → statistics/schema/validation → Transform → Trainer → Evaluator → Pusher."""
    example_gen = ParallelCorpusExampleGen(
        input_base=data_root,
        train_pattern=config.data.train_pattern,
        eval_pattern=config.data.eval_pattern,
        max_pairs=config.data.max_pairs)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="enja.preprocessing.transform.preprocessing_fn",
        custom_config=config.transform_config())
    trainer = tfx.components.Trainer(
        run_fn="enja.models.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        custom_config=config.trainer_config())
    baseline_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_model.outputs["model"],
        eval_config=eval_config(config.evaluation))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    trainer, baseline_model, evaluator, pusher],
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args)
