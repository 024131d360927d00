"""TFX's Evaluator, comparing with the model in production only when there is one, and
recording its verdict in words and numbers.

The baseline is ProductionModel's output, which exists on every run but holds no model
until a first one is pushed; TFX's Evaluator would try to load it. Without a baseline the
Evaluator checks the candidate against the BLEU floor alone, as on a first run.

TFX keeps the BLEU and the failed thresholds only in TFMA's files. This Evaluator also
records them on its `evaluation` output (components/names.py): `enja history` reads them
from ML Metadata without loading TFMA and TensorFlow.
"""
from __future__ import annotations

from typing import Any

import tensorflow_model_analysis as tfma
from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs

from enja.components import names, production_model
from enja.preprocessing import features

BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY


def evaluation_bleu(evaluation_uri: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """{model: overall BLEU} and {model: {bucket: BLEU}}, models "candidate"/"baseline"."""
    overall: dict[str, float] = {}
    by_bucket: dict[str, dict[str, float]] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        bucket = next((key.bytes_value.decode() for key in metrics.slice_key.single_slice_keys
                       if key.column == features.SOURCE_LENGTH_BUCKET_KEY), None)
        for entry in metrics.metric_keys_and_values:
            if entry.key.is_diff:
                continue
            model = entry.key.model_name or "candidate"  # unnamed when there is no baseline
            if bucket is None:
                overall[model] = entry.value.double_value.value
            else:
                by_bucket.setdefault(model, {})[bucket] = entry.value.double_value.value
    return overall, {model: dict(sorted(buckets.items())) for model, buckets in by_bucket.items()}


def not_blessed_reason(evaluation_uri: str) -> str | None:
    """The Evaluator's failed thresholds, in words; None when it blessed."""
    result = tfma.load_validation_result(evaluation_uri)
    if result.validation_ok:
        return None
    reasons = []
    for slice_result in result.metric_validations_per_slice:
        for failure in slice_result.failures:
            threshold = failure.metric_threshold
            value = failure.metric_value.double_value.value
            if failure.metric_key.is_diff:
                allowed = threshold.change_threshold.absolute.value
                reasons.append(f"BLEU changed by {value:+.2f} against the baseline; "
                               f"the least allowed is {allowed:+.2f}")
            else:
                floor = threshold.value_threshold.lower_bound.value
                reasons.append(f"BLEU {value:.2f} is below the floor {floor:.2f}")
    return "; ".join(reasons) or "validation failed"


def record_verdict(evaluation: types.Artifact) -> None:
    """Copies the BLEU and the failed thresholds from TFMA's files onto the artifact."""
    overall, by_length = evaluation_bleu(evaluation.uri)
    evaluation.set_float_custom_property(names.CANDIDATE_BLEU, overall["candidate"])
    if "baseline" in overall:
        evaluation.set_float_custom_property(names.BASELINE_BLEU, overall["baseline"])
    evaluation.set_json_value_custom_property(names.BLEU_BY_LENGTH, by_length)
    evaluation.set_string_custom_property(names.NOT_BLESSED_REASON,
                                          not_blessed_reason(evaluation.uri) or "")


class Executor(evaluator_executor.Executor):
    """Drops a baseline that holds no model, evaluates as TFX does, records the verdict."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        baselines = [model for model in input_dict.get(BASELINE_MODEL_KEY, [])
                     if production_model.holds_model(model)]
        super().Do({**input_dict, BASELINE_MODEL_KEY: baselines}, output_dict, exec_properties)
        record_verdict(artifact_utils.get_single_instance(output_dict[names.EVALUATION]))


class Evaluator(tfx.components.Evaluator):
    """`tfx.components.Evaluator` whose `baseline_model` may hold no model."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
