"""TFX's Evaluator, comparing with the model in production only when there is one.

The baseline is ProductionModel's output, which exists on every run but holds no model
until a first one is pushed; TFX's Evaluator would try to load it. Without a baseline the
Evaluator checks the candidate against the BLEU floor alone, as on a first run.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from enja.components import production_model

BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY


class Executor(evaluator_executor.Executor):
    """Drops a baseline that holds no model, then evaluates as TFX does."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        baselines = [model for model in input_dict.get(BASELINE_MODEL_KEY, [])
                     if production_model.holds_model(model)]
        super().Do({**input_dict, BASELINE_MODEL_KEY: baselines}, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """`tfx.components.Evaluator` whose `baseline_model` may hold no model."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
