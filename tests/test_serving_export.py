"""ServingExport's executor on a Trainer-like Model: the tiny model's state in, a serving model out."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from enja.components import serving_export
from enja.components.serving_export import ServingExport
from enja.models.config import DecodingConfig
from enja.models.export import translator
from enja.models.training import warm_start_state
from enja.models.training.warm_start_state import Vocabularies
from enja.serving import contract, warmup
from enja.serving.config import ServingConfig
from support.corpus import TINY_PAIRS
from support.tiny_models import TINY_LSTM

SENTENCES = [en for en, _ in TINY_PAIRS]


def trainer_model(tmp_path, model, vocabularies: Vocabularies) -> standard_artifacts.Model:
    """A Model artifact as the Trainer leaves it: the state of `model` and nothing to serve."""
    artifact = standard_artifacts.Model()
    artifact.uri = str(tmp_path / "trainer_model")
    warm_start_state.save(warm_start_state.state_dir(path_utils.serving_model_dir(artifact.uri)),
                          model.trainer, TINY_LSTM, vocabularies)
    return artifact


def run_serving_export(trained: standard_artifacts.Model, transform_output_dir: str, tmp_path,
                       decoding: DecodingConfig) -> standard_artifacts.Model:
    """The executor, with the exec properties the component hands it."""
    component = ServingExport(trained_model=tfx.dsl.Channel(type=standard_artifacts.Model),
                              transform_graph=tfx.dsl.Channel(type=standard_artifacts.TransformGraph),
                              decoding=decoding, serving=ServingConfig())
    transform_graph = standard_artifacts.TransformGraph()
    transform_graph.uri = transform_output_dir
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "serving_export_model")
    serving_export.Executor().Do(
        {serving_export.TRAINED_MODEL_KEY: [trained], serving_export.TRANSFORM_GRAPH_KEY: [transform_graph]},
        {serving_export.MODEL_KEY: [output]}, component.exec_properties)
    return output


# Not the defaults, and each decides some of UNSEEN's translations: the tiny model has not learnt
# them, so they follow the weights and each decoding setting (checked below, setting by setting).
DECODING = DecodingConfig(max_output_length=8, beam_width=4, length_penalty=0.0)
OTHER_DECODINGS = {"beam_width": 1, "length_penalty": 1.0, "max_output_length": 18}
UNSEEN = ["i", "pen", "he", "this book", "pen she cat", "pen raining", "that dogs has", "pen today my",
          "she likes a pen", "my cat is raining"]


def _translations(translate, sentences: list[str]) -> list[str]:
    return [t.decode() for t in translate(text=tf.constant(sentences))[contract.TRANSLATIONS_OUTPUT].numpy()]


def test_the_state_exports_a_model_that_translates_as_the_direct_export_with_its_own_decoding(
        tiny_model, transform_output_dir, tmp_path):
    """The re-export from the Trainer's state translates unseen sentences as the trained model does
    with the decoding settings handed to ServingExport: other weights, or any of those settings lost
    on the way (another width, length penalty or length limit), would translate some differently."""
    tf_transform_output = tft.TFTransformOutput(transform_output_dir)
    vocabularies = Vocabularies.of(tf_transform_output)
    trained = trainer_model(tmp_path, tiny_model, vocabularies)

    output = run_serving_export(trained, transform_output_dir, tmp_path, DECODING)

    serving_dir = path_utils.serving_model_dir(output.uri)
    assert os.listdir(output.uri) == ["Format-Serving"]
    assert os.path.isfile(os.path.join(serving_dir, warmup.WARMUP_FILE))
    exported = _translations(tf.saved_model.load(serving_dir).signatures[contract.SERVING_SIGNATURE],
                             SENTENCES + UNSEEN)
    # The memorised pairs, cut at the 8 steps the limit allows.
    assert exported[:len(SENTENCES)] == [" ".join(ja.split()[:DECODING.max_output_length]) for _,
                                         ja in TINY_PAIRS]

    def direct(decoding: DecodingConfig) -> list[str]:
        # Held while it translates: its tf.function refers to it weakly.
        module = translator.Translator(tiny_model, tf_transform_output, decoding)
        return _translations(module.translate, UNSEEN)

    expected = direct(DECODING)
    assert exported[len(SENTENCES):] == expected
    for setting, value in OTHER_DECODINGS.items():
        assert direct(dataclasses.replace(DECODING, **{setting: value})) != expected, \
            f"UNSEEN no longer shows whether {setting} reaches the export"

    # Once pushed, the next run's Trainer warm-starts from it: the SavedModel carries the state.
    state = warm_start_state.load(warm_start_state.exported_state_dir(serving_dir))
    saved = warm_start_state.load(warm_start_state.state_dir(path_utils.serving_model_dir(trained.uri)))
    assert (state.model_config, state.vocabularies) == (saved.model_config, saved.vocabularies)
    assert state.weights.keys() == saved.weights.keys()
    for key, weights in saved.weights.items():
        np.testing.assert_array_equal(state.weights[key], weights, err_msg=key)


def _no_state(tmp_path, model, vocabularies: Vocabularies) -> standard_artifacts.Model:
    artifact = standard_artifacts.Model()
    artifact.uri = str(tmp_path / "trainer_model")
    os.makedirs(path_utils.serving_model_dir(artifact.uri))
    return artifact


def _a_setting_model_config_lost(tmp_path, model, vocabularies: Vocabularies) -> standard_artifacts.Model:
    artifact = trainer_model(tmp_path, model, vocabularies)
    manifest = os.path.join(artifact.uri, warm_start_state.STATE_DIR, warm_start_state.MANIFEST)
    with open(manifest, encoding="utf-8") as saved:
        content = json.load(saved)
    content["model_config"]["precision"] = "float32"
    with open(manifest, "w", encoding="utf-8") as out:
        json.dump(content, out)
    return artifact


def _other_vocabularies(tmp_path, model, vocabularies: Vocabularies) -> standard_artifacts.Model:
    return trainer_model(tmp_path, model, vocabularies._replace(
        source=[b"zebra", *vocabularies.source[1:]]))


@pytest.mark.parametrize(("make_trained", "error", "message"), [
    (_no_state, FileNotFoundError, "no warm-start state in .*trainer_model/warm_start"),
    (_a_setting_model_config_lost, ValueError, "settings ModelConfig no longer has: precision"),
    (_other_vocabularies, ValueError, "vocabularies are not the ones the model was trained with"),
], ids=["no-state", "unknown-model-setting", "other-vocabularies"])
def test_a_state_it_cannot_export_fails_clearly_and_leaves_no_serving_model(
        tiny_model, transform_output_dir, tmp_path, make_trained, error, message):
    vocabularies = Vocabularies.of(tft.TFTransformOutput(transform_output_dir))
    trained = make_trained(tmp_path, tiny_model, vocabularies)

    with pytest.raises(error, match=message):
        run_serving_export(trained, transform_output_dir, tmp_path, DecodingConfig())

    assert not os.path.exists(path_utils.serving_model_dir(str(tmp_path / "serving_export_model")))

