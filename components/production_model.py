"""ProductionModel: the model TF Serving serves now, as this run's baseline and warm start.

The model in production is whatever the serving side says it is: the versions' folder
that Pusher writes into and, when there is one, the TF Serving model config file that
`enja serve` and TF Serving poll and that `enja rollback` edits (a pinned version, or the
newest). The executor reads that state at run time (serving/served.py) and copies the
served SavedModel into its output `model` (`Format-Serving/`, the layout Evaluator and
Trainer read), with the version it was. A pushed SavedModel carries the Keras state the
Trainer warm-starts from (`assets.extra/warm_start/`, written by ServingExport), so the copy
does too.

Reading the state in the executor, rather than resolving artifacts in ML Metadata, is
what lets one pipeline run on open-source Kubeflow Pipelines, whose backend runs no
resolver tasks: a rollback needs nothing changed in ML Metadata, since the model served
*is* the baseline. Locally the component's driver fingerprints the same state, so TFX's
cache reuses the output (and the Trainer after it) only while production is unchanged;
Kubeflow runs no drivers, so there the task is never cached (pipeline.ALWAYS_RUN_NODE_IDS).

With nothing in production the output holds no model: `in_production` is 0, and the
Trainer starts cold and the Evaluator compares with no baseline.
"""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from enja.components import external_state, names
from enja.serving.served import find_served

MODEL_KEY = "model"
SERVING_MODEL_DIR_KEY = "serving_model_dir"
MODEL_CONFIG_FILE_KEY = "model_config_file"
MODEL_NAME_KEY = "model_name"
STAGING_SUFFIX = ".partial"


def _fingerprint(exec_properties: dict[str, Any]) -> str:
    """The served version and its SavedModel file's size and time: a push or rollback changes it."""
    served = find_served(exec_properties[SERVING_MODEL_DIR_KEY],
                         exec_properties[MODEL_CONFIG_FILE_KEY], exec_properties[MODEL_NAME_KEY])
    if served is None:
        return "none"
    stat = tf.io.gfile.stat(os.path.join(served.path, "saved_model.pb"))
    return f"{served.path} {stat.length} {stat.mtime_nsec}"


def holds_model(model: types.Artifact) -> bool:
    return model.get_int_custom_property(names.IN_PRODUCTION) == 1


def _copy_tree(source: str, destination: str) -> None:
    for directory, _, files in tf.io.gfile.walk(source):
        target = os.path.join(destination, os.path.relpath(directory, source))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(target, name), overwrite=True)


class ProductionModelSpec(ComponentSpec):
    PARAMETERS = {
        SERVING_MODEL_DIR_KEY: ExecutionParameter(type=str),
        MODEL_CONFIG_FILE_KEY: ExecutionParameter(type=str),
        MODEL_NAME_KEY: ExecutionParameter(type=str),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class Executor(base_executor.BaseExecutor):
    """Copies the served SavedModel into the output, or marks the output empty."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        output = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        served = find_served(exec_properties[SERVING_MODEL_DIR_KEY],
                             exec_properties[MODEL_CONFIG_FILE_KEY], exec_properties[MODEL_NAME_KEY])
        if served is None:
            logging.info("No model in production under %s.", exec_properties[SERVING_MODEL_DIR_KEY])
            output.set_int_custom_property(names.IN_PRODUCTION, 0)
            return
        serving_dir = path_utils.serving_model_dir(output.uri)
        staging_dir = serving_dir + STAGING_SUFFIX
        for stale in (serving_dir, staging_dir):  # a retry into the same folder starts clean
            if tf.io.gfile.exists(stale):
                tf.io.gfile.rmtree(stale)
        _copy_tree(served.path, staging_dir)
        tf.io.gfile.rename(staging_dir, serving_dir)
        output.set_int_custom_property(names.IN_PRODUCTION, 1)
        output.set_int_custom_property(names.SERVED_VERSION, served.version)
        logging.info("In production: version %d (%s).", served.version, served.path)


class Driver(external_state.FingerprintDriver):
    """Keys the local cache on the served version."""

    FINGERPRINT = staticmethod(_fingerprint)


class ProductionModel(base_component.BaseComponent):
    """The served model: see the module docstring.

    Output `model`: a Model whose `Format-Serving/` is a copy of the served version, with
    custom properties `in_production` and `served_version`.
    """

    SPEC_CLASS = ProductionModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
    DRIVER_CLASS = Driver

    def __init__(self, serving_model_dir: str, model_name: str, model_config_file: str = "") -> None:
        """Builds the component.

        Args:
          serving_model_dir: The versions' folder Pusher pushes into.
          model_name: The model's name in the model config file.
          model_config_file: The TF Serving model config file servers poll, or "" when they
            serve the newest version (TF Serving's default).
        """
        super().__init__(spec=ProductionModelSpec(
            serving_model_dir=serving_model_dir, model_config_file=model_config_file,
            model_name=model_name, model=types.Channel(type=standard_artifacts.Model)))
