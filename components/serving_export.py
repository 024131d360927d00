"""ServingExport: the Trainer's model exported for serving, with this run's decoding settings.

The Trainer keeps only what it trained, as its warm-start state (models/training/warm_start_state.py).
The decoding and serving settings are this component's execution parameters rather than
the Trainer's custom_config, so changing them changes only this component's cache key:
the run re-exports the cached Trainer's model instead of training it again (and after a
blessed run, the Trainer keeps its base model's weights: models/training/warm_start.py).

Output `model` is laid out as a Trainer's Model: `Format-Serving/`, the SavedModel with its
warm-up requests that Evaluator, InfraCheck and Pusher read, and in its
`assets.extra/warm_start/` the Trainer's state again (what trained it included): Pusher
copies the SavedModel whole, so the version in production carries what the next run's
Trainer starts from. Everything is written under a temporary name renamed into place, so
a `Format-Serving/` that exists is complete, its state included.

Usage:
  serving_export = ServingExport(trained_model=trainer.outputs["model"],
                                 transform_graph=transform.outputs["transform_graph"],
                                 decoding=DecodingConfig(beam_width=8), serving=ServingConfig())
  evaluator = tfx.components.Evaluator(model=serving_export.outputs["model"], ...)
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from enja.models.config import DecodingConfig
from enja.models.export import reexport
from enja.models.training import warm_start_state
from enja.serving.config import ServingConfig

# The input cannot share the output's name: a ComponentSpec's names are unique.
TRAINED_MODEL_KEY = "trained_model"
MODEL_KEY = standard_component_specs.MODEL_KEY
TRANSFORM_GRAPH_KEY = standard_component_specs.TRANSFORM_GRAPH_KEY
# JSON objects of DecodingConfig and ServingConfig: the same value on every orchestrator.
DECODING_KEY = "decoding"
SERVING_KEY = "serving"
STAGING_SUFFIX = ".partial"


def export_model(trainer_model_uri: str, transform_graph_uri: str, output_uri: str,
                 decoding: DecodingConfig, serving: ServingConfig) -> None:
    """Writes the Model artifact at `output_uri` from the Trainer's at `trainer_model_uri`."""
    # Serving computes in float32 whatever precision trained the weights, and a Trainer
    # that ran before in this process may have left its policy set.
    keras.mixed_precision.set_global_policy("float32")
    tf_transform_output = tft.TFTransformOutput(transform_graph_uri)
    state = reexport.load(warm_start_state.state_dir(path_utils.serving_model_dir(trainer_model_uri)))
    model = reexport.rebuild(state, tf_transform_output)
    serving_dir = path_utils.serving_model_dir(output_uri)
    staging_dir = serving_dir + STAGING_SUFFIX
    for stale in (serving_dir, staging_dir):  # a retry into the same folder starts clean
        if tf.io.gfile.exists(stale):
            tf.io.gfile.rmtree(stale)
    reexport.export_serving_model(model, tf_transform_output, decoding, serving, staging_dir)
    warm_start_state.save_state(warm_start_state.exported_state_dir(staging_dir), state)
    tf.io.gfile.rename(staging_dir, serving_dir)
    logging.info("Exported %s for serving into %s with %s.", trainer_model_uri, serving_dir, decoding)


class ServingExportSpec(ComponentSpec):
    """ServingExport's inputs, parameters and output."""

    PARAMETERS = {
        DECODING_KEY: ExecutionParameter(type=str),
        SERVING_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        TRAINED_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
    }
    OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class Executor(base_executor.BaseExecutor):
    """Rebuilds the trained model from the Trainer's state and exports it for serving."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        export_model(artifact_utils.get_single_instance(input_dict[TRAINED_MODEL_KEY]).uri,
                     artifact_utils.get_single_instance(input_dict[TRANSFORM_GRAPH_KEY]).uri,
                     artifact_utils.get_single_instance(output_dict[MODEL_KEY]).uri,
                     DecodingConfig(**json.loads(exec_properties[DECODING_KEY])),
                     ServingConfig(**json.loads(exec_properties[SERVING_KEY])))


class ServingExport(base_component.BaseComponent):
    """Exports the Trainer's model for serving with the given decoding settings.

    Output `model`: a Model with `Format-Serving/` (its state in `assets.extra/warm_start/`),
    for Evaluator, InfraCheck, Pusher and, once pushed, the next run's Trainer.
    """

    SPEC_CLASS = ServingExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, trained_model: types.BaseChannel, transform_graph: types.BaseChannel,
                 decoding: DecodingConfig, serving: ServingConfig) -> None:
        """Builds the component.

        Args:
          trained_model: The Trainer's Model; its `warm_start/` state holds the weights.
          transform_graph: The Transform graph the model was trained on (its vocabularies
            and source preprocessing go into the SavedModel).
          decoding: How the serving signatures decode.
          serving: The served model's name and warm-up sentences.
        """
        super().__init__(spec=ServingExportSpec(
            trained_model=trained_model, transform_graph=transform_graph,
            decoding=json.dumps(dataclasses.asdict(decoding), sort_keys=True),
            serving=json.dumps(dataclasses.asdict(serving), sort_keys=True),
            model=types.Channel(type=standard_artifacts.Model)))
