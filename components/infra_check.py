"""InfraCheck: serves the candidate model for real before Pusher, in place of TFX's InfraValidator.

InfraValidator needs a container engine (absent here) and the Kubeflow Pipelines v2
compiler of TFX 1.16 rejects it, so a model that stock TF Serving cannot serve could
be pushed unnoticed. This component checks ServingExport's SavedModel the way TF
Serving would take it — core ops only, the TF1 session loader, its warm-up requests —
then serves a copy with the project's gRPC model server and sends real Predict calls.

The verdict is an `InfraBlessing` that Pusher reads (`infra_blessing=`): int custom
property `blessed` (1 or 0), string custom property `reason` (what was checked, or
the first thing that failed) and a marker file INFRA_BLESSED / INFRA_NOT_BLESSED, as
InfraValidator writes them. A model that fails a check is a normal outcome (blessed=0);
only an internal error (I/O, the server not starting) fails the component.

Usage:
  infra_check = InfraCheck(model=trainer.outputs["model"], model_name="enja",
                           sentences=["i like cats .", "where is the station ?"])
  pusher = tfx.components.Pusher(model=trainer.outputs["model"],
                                 infra_blessing=infra_check.outputs["blessing"], ...)
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import message
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils, path_utils

from enja.components import names
from enja.serving import contract, ops
from enja.serving.loader import LoadedModel
from enja.serving.predict_api import predict_request
from enja.serving.server import ModelServer, ServerOptions

MODEL_KEY = standard_component_specs.MODEL_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY
MODEL_NAME_KEY = "model_name"
SENTENCES_KEY = "sentences"  # a JSON list of strings: the same value on every orchestrator

BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"

VERSION = 1  # the served copy's version folder
LOAD_TIMEOUT_S = 300.0  # InfraValidator's default max_loading_time_seconds
RPC_TIMEOUT_S = 60.0
STATUS_POLL_S = 0.2
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


class RejectedError(Exception):
    """The candidate failed a check: a verdict for the blessing, not an error of the component."""


def check_core_ops(saved_model: str) -> str:
    """The TF Serving binary links only core TF ops; a graph needing others fails there at load."""
    if not fileio.exists(os.path.join(saved_model, "saved_model.pb")):
        raise RejectedError(f"not a SavedModel: no saved_model.pb in {saved_model}")
    try:
        missing = ops.non_core_ops(saved_model)
    except message.DecodeError as error:
        raise RejectedError(f"not a SavedModel: saved_model.pb in {saved_model} does not parse: "
                            f"{error}") from error
    if missing:
        raise RejectedError(f"uses ops stock TF Serving lacks: {', '.join(sorted(missing))}")
    return "only core TF ops"


def check_session_load(saved_model: str, options: ServerOptions) -> str:
    """Loads and warms up as TF Serving does, to name the failure before a server is involved.

    Any exception counts against the model, as in the model server's own loader:
    TF Serving refuses a version whatever made its load or warm-up fail.
    """
    try:
        model = LoadedModel(saved_model, VERSION)
    except Exception as error:  # whatever fails the load, TF Serving refuses the version
        raise RejectedError("does not load with the TF1 session loader: "
                            f"{type(error).__name__}: {error}") from error
    try:
        count = model.warm_up(options.limits)
    except Exception as error:  # likewise a failed warm-up
        raise RejectedError(f"a stored warm-up request failed: {type(error).__name__}: {error}") from error
    return f"loads with the TF1 session loader and answers its {count} warm-up request(s)"


def _output(response: predict_pb2.PredictResponse, key: str, dtype: tf.DType, rows: int) -> np.ndarray:
    """One output of the serving signature, of the contract's dtype and one row per sentence."""
    if key not in response.outputs:
        raise RejectedError(f"the answer lacks output '{key}' (has {sorted(response.outputs)})")
    proto = response.outputs[key]
    if proto.dtype != dtype.as_datatype_enum:
        raise RejectedError(f"output '{key}' is {tf.dtypes.as_dtype(proto.dtype).name}, not {dtype.name}")
    array = tf.make_ndarray(proto)
    if array.shape != (rows,):
        raise RejectedError(f"output '{key}' has shape {list(array.shape)} for {rows} sentence(s)")
    return array


def check_answer(sentences: Sequence[str], response: predict_pb2.PredictResponse) -> None:
    """One non-empty UTF-8 translation per sentence, with a finite log-probability ≤ 0."""
    translations = _output(response, contract.TRANSLATIONS_OUTPUT, tf.string, len(sentences))
    scores = _output(response, contract.SCORES_OUTPUT, tf.float32, len(sentences))
    for sentence, translation, score in zip(sentences, translations, scores, strict=True):
        try:
            text = translation.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RejectedError(f"the translation of {sentence!r} is not valid UTF-8: "
                                f"{translation!r}") from error
        if not text.strip():
            raise RejectedError(f"empty translation of {sentence!r}")
        if not (np.isfinite(score) and score <= 0):
            raise RejectedError(f"score {score} of {sentence!r} is not a finite log-probability ≤ 0")


def wait_until_available(channel: grpc.Channel, model_name: str) -> None:
    """Polls GetModelStatus, as a client of TF Serving would, until the version serves or ends."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    request.model_spec.version.value = VERSION
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status = stub.GetModelStatus(request, timeout=RPC_TIMEOUT_S).model_version_status[0]
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: not discovered yet
                raise
        else:
            if status.state == AVAILABLE:
                return
            if status.state == END:
                raise RejectedError(f"the model server did not load it: {status.status.error_message}")
        time.sleep(STATUS_POLL_S)
    raise RejectedError(f"the model server did not make it available within {LOAD_TIMEOUT_S:.0f} s")


def predict_and_check(channel: grpc.Channel, model_name: str, sentences: Sequence[str]) -> None:
    """One real Predict call of the serving signature, its answer checked against the contract."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        response = stub.Predict(predict_request(sentences, model_name), timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as error:
        raise RejectedError(f"Predict of {list(sentences)} failed: "
                            f"{error.code().name}: {error.details()}") from error
    check_answer(sentences, response)


def check_served(saved_model: str, model_name: str, sentences: Sequence[str], options: ServerOptions) -> str:
    """Serves a copy laid out as <base>/<model_name>/1/ and translates each sentence alone, then
    all at once."""
    with tempfile.TemporaryDirectory(prefix="infra_check_") as base:
        version_dir = os.path.join(base, model_name, str(VERSION))
        io_utils.copy_dir(saved_model, version_dir)  # TFX's file system layer: gs:// works too
        logging.info("Copied %s to %s.", saved_model, version_dir)
        server = ModelServer(base, model_name, options)
        server.start()
        try:
            logging.info("Model server on %s; waiting for version %d.", server.address, VERSION)
            with grpc.insecure_channel(server.address) as channel:
                wait_until_available(channel, model_name)
                for batch in [[sentence] for sentence in sentences] + [list(sentences)]:
                    predict_and_check(channel, model_name, batch)
                    logging.info("Predict of %d sentence(s) answered valid translations.", len(batch))
        finally:
            server.stop()
    return (f"served over gRPC: {len(sentences)} sentence(s) alone and as one batch got "
            f"non-empty UTF-8 translations with finite scores ≤ 0")


def run_checks(saved_model: str, model_name: str, sentences: Sequence[str]) -> str:
    """Every check in order; returns what passed, or raises RejectedError at the first failure."""
    options = ServerOptions(host="127.0.0.1", port=0, max_load_retries=0)
    checks = [("the graph's ops", lambda: check_core_ops(saved_model)),
              ("the TF1 session loader", lambda: check_session_load(saved_model, options)),
              ("serving over gRPC", lambda: check_served(saved_model, model_name, sentences, options))]
    passed = []
    for name, check in checks:
        logging.info("InfraCheck: checking %s.", name)
        passed.append(check())
        logging.info("InfraCheck passed: %s.", passed[-1])
    return "; ".join(passed)


def record_verdict(blessing: types.Artifact, blessed: bool, reason: str) -> None:
    """Writes the verdict where Pusher and lineage look for it."""
    io_utils.write_string_file(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE),
                               reason)
    blessing.set_int_custom_property(names.BLESSED, int(blessed))
    blessing.set_string_custom_property(names.REASON, reason)


class InfraCheckSpec(ComponentSpec):
    """InfraCheck's inputs, parameters and output."""

    PARAMETERS = {
        MODEL_NAME_KEY: ExecutionParameter(type=str),
        SENTENCES_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing)}


class Executor(base_executor.BaseExecutor):
    """Runs the checks on the Model's serving SavedModel and records the verdict."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        saved_model = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        logging.info("InfraCheck of %s.", saved_model)
        try:
            reason, blessed = run_checks(saved_model, exec_properties[MODEL_NAME_KEY],
                                         json.loads(exec_properties[SENTENCES_KEY])), True
        except RejectedError as rejected:
            reason, blessed = str(rejected), False
        logging.info("InfraCheck %s %s: %s", "blessed" if blessed else "did not bless", saved_model, reason)
        record_verdict(blessing, blessed, reason)


class InfraCheck(base_component.BaseComponent):
    """Blesses a Model only if the project's TF Serving-compatible server serves it correctly.

    Output `blessing`: an InfraBlessing with custom properties `blessed` (int) and
    `reason` (str), for Pusher's `infra_blessing`.
    """

    SPEC_CLASS = InfraCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, model_name: str, sentences: Sequence[str]) -> None:
        """Builds the component.

        Args:
          model: ServingExport's Model; its serving SavedModel is checked.
          model_name: The name the model is served under (the warm-up requests carry it too).
          sentences: English test sentences, each sent alone and then all as one batch.
        """
        if not sentences or not all(isinstance(s, str) and s.strip() for s in sentences):
            raise ValueError(f"InfraCheck needs non-empty English test sentences, got {sentences!r}")
        super().__init__(spec=InfraCheckSpec(
            model=model, model_name=model_name, sentences=json.dumps(list(sentences)),
            blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
