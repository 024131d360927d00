"""Warm start: the saved state, carrying weights over token by token, and when it starts cold."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from enja.components import serving_export
from enja.models.architectures import registry, seq2seq
from enja.models.config import DecodingConfig, ModelConfig, TrainingConfig
from enja.models.training import trainer, training_summary, warm_start, warm_start_state
from enja.models.training.warm_start_state import Vocabularies
from enja.preprocessing import features
from enja.serving import contract
from enja.serving.config import ServingConfig
from support.corpus import TINY_PAIRS, write_transformed
from support.tiny_models import TINY_LSTM

R = features.NUM_RESERVED
OLD = Vocabularies(source=[b"a", b"b", b"c", b"d", b"e"], target=[b"p", b"q", b"r", b"s"])
# Reordered; b, e and s dropped; x, y, z and t new.
NEW = Vocabularies(source=[b"d", b"x", b"a", b"c", b"y", b"z"], target=[b"r", b"t", b"p", b"q"])
CONFIGS = [
    ModelConfig(embedding_dim=8, units=6, attention="luong"),
    ModelConfig(embedding_dim=6, units=6, attention="bahdanau", bidirectional=False,
                tie_embeddings=True),
]
CONFIG_IDS = ["bidirectional-luong", "one-way-bahdanau-tied"]


def _build(config: ModelConfig, vocabularies: Vocabularies, seed: int) -> seq2seq.EncoderDecoder:
    """A model whose every weight (biases too) is random, so carried values are telling."""
    keras.utils.set_random_seed(seed)
    model = registry.build(config, len(vocabularies.source) + R, len(vocabularies.target) + R)
    rng = np.random.default_rng(seed)
    for weight in model.trainer.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    return model


def _base_model(tmp_path, config: ModelConfig, vocabularies: Vocabularies = OLD
                ) -> tuple[seq2seq.EncoderDecoder, str]:
    """A base model with its state saved where an export keeps it; returns it and its
    (otherwise empty) SavedModel dir."""
    model = _build(config, vocabularies, seed=1)
    serving_dir = str(tmp_path / "base" / "Format-Serving")
    warm_start_state.save(warm_start_state.exported_state_dir(serving_dir), model.trainer, config,
                          vocabularies)
    return model, serving_dir


def _values(model: seq2seq.EncoderDecoder) -> dict[str, np.ndarray]:
    return {key: np.array(weight)
            for key, weight in warm_start_state.named_weights(model.trainer).items()}


def _old_id(token_id: int, old: list[bytes], new: list[bytes]) -> int | None:
    """The old id of a new id's token, None for a new token."""
    if token_id < R:
        return token_id
    token = new[token_id - R]
    return old.index(token) + R if token in old else None


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_rows_carry_over_by_token_and_new_tokens_keep_fresh_rows(tmp_path, config):
    base, serving_dir = _base_model(tmp_path, config)
    new = _build(config, NEW, seed=2)
    old_values, fresh = _values(base), _values(new)

    start = warm_start.start_model(new.trainer, config, TrainingConfig(), serving_dir, NEW)

    assert start.mode == "warm" and start.base_model == serving_dir
    assert start.source == warm_start.TokenCounts(carried=3, new=3)
    assert start.target == warm_start.TokenCounts(carried=3, new=1)
    assert start.log_line() == (f"Warm start from {serving_dir}: carried 3 of 6 source and "
                                "3 of 4 target tokens (3 and 1 new)")
    layer = new.trainer.get_layer
    token_axes = {  # weight → (side, its axis with one slice per token)
        id(layer("source_embedding").embeddings): ("source", 0),
        id(layer("target_embedding").embeddings): ("target", 0),
        id(layer("logits").bias): ("target", 0)}
    if not config.tie_embeddings:
        token_axes[id(layer("logits").kernel)] = ("target", 1)
    checked = set()
    for key, weight in warm_start_state.named_weights(new.trainer).items():
        if id(weight) not in token_axes:
            np.testing.assert_array_equal(weight, old_values[key], err_msg=key)
            continue
        checked.add(id(weight))
        side, axis = token_axes[id(weight)]
        by_id = functools.partial(np.moveaxis, source=axis, destination=0)
        for token_id in range(len(getattr(NEW, side)) + R):
            old_id = _old_id(token_id, getattr(OLD, side), getattr(NEW, side))
            expected = (by_id(fresh[key])[token_id] if old_id is None
                        else by_id(old_values[key])[old_id])
            np.testing.assert_array_equal(by_id(np.asarray(weight))[token_id], expected,
                                          err_msg=f"{key} id {token_id}")
    assert checked == set(token_axes)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("order", ["identical", "reordered"])
def test_warm_model_computes_the_base_models_logits(tmp_path, config, order):
    """Same tokens, in the same or another order: the same logits for the same sentence."""
    base, serving_dir = _base_model(tmp_path, config)
    vocabularies = OLD if order == "identical" else Vocabularies(
        source=OLD.source[::-1], target=[OLD.target[i] for i in (2, 0, 3, 1)])
    new = _build(config, vocabularies, seed=2)
    start = warm_start.start_model(new.trainer, config, TrainingConfig(), serving_dir,
                                   vocabularies)
    assert start.mode == "warm"
    assert start.source.new == start.target.new == 0

    def ids(tokens: list[list[bytes]], vocabulary: list[bytes]) -> np.ndarray:
        return np.array([[vocabulary.index(t) + R for t in sentence] for sentence in tokens])

    source = [[b"a", b"c", b"e"], [b"d", b"b", b"b"]]
    target = [[b"p", b"s", b"q"], [b"r", b"r", b"p"]]

    def logits(model: seq2seq.EncoderDecoder, vocab: Vocabularies) -> np.ndarray:
        start_ids = np.full((2, 1), features.START_ID)
        return np.asarray(model.trainer({
            seq2seq.SOURCE_INPUT: ids(source, vocab.source),
            seq2seq.TARGET_INPUT: np.concatenate([start_ids, ids(target, vocab.target)], 1)}))

    # Each new id's logit is its token's old logit.
    to_old = [_old_id(i, OLD.target, vocabularies.target) for i in range(len(OLD.target) + R)]
    np.testing.assert_allclose(logits(new, vocabularies), logits(base, OLD)[..., to_old],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("change", "reason"), [
    ({"units": 8}, "the base model has units=6; this config units=8"),
    ({"attention": "none"}, "the base model has attention='luong'; this config attention='none'"),
])
def test_other_model_settings_start_cold_and_say_which(tmp_path, change, reason):
    _base_model(tmp_path, CONFIGS[0])
    config = dataclasses.replace(CONFIGS[0], **change)
    new = _build(config, NEW, seed=2)
    fresh = _values(new)

    start = warm_start.start_model(new.trainer, config, TrainingConfig(),
                                   str(tmp_path / "base" / "Format-Serving"), NEW)

    assert (start.mode, start.reason) == ("cold", reason)
    assert start.log_line() == f"Cold start: {reason}"
    assert start.source == warm_start.TokenCounts(carried=0, new=6)
    for key, value in _values(new).items():
        np.testing.assert_array_equal(value, fresh[key])


@pytest.mark.parametrize("change", [{"dropout": 0.5}, {"layers": 6, "heads": 8, "feedforward_dim": 64}],
                         ids=["dropout", "transformer-settings"])
def test_settings_that_shape_no_lstm_weight_keep_a_warm_start(tmp_path, change):
    _, serving_dir = _base_model(tmp_path, CONFIGS[0])
    config = dataclasses.replace(CONFIGS[0], **change)
    start = warm_start.start_model(_build(config, NEW, 2).trainer, config, TrainingConfig(),
                                   serving_dir, NEW)
    assert start.mode == "warm"


def test_a_state_saved_before_a_setting_existed_reads_it_as_its_default(tmp_path):
    """An LSTM's state from before the Transformer names none of its settings; it still warm-starts."""
    _, serving_dir = _base_model(tmp_path, CONFIGS[0])
    manifest = pathlib.Path(warm_start_state.exported_state_dir(serving_dir), warm_start_state.MANIFEST)
    saved = json.loads(manifest.read_text())
    for added_with_the_transformer in ("architecture", "layers", "heads", "feedforward_dim"):
        del saved["model_config"][added_with_the_transformer]
    manifest.write_text(json.dumps(saved))

    start = warm_start.start_model(_build(CONFIGS[0], NEW, 2).trainer, CONFIGS[0], TrainingConfig(),
                                   serving_dir, NEW)
    assert start.mode == "warm"
    transformer = ModelConfig(architecture="transformer", units=8, heads=2)
    start = warm_start.start_model(_build(transformer, NEW, 2).trainer, transformer, TrainingConfig(),
                                   serving_dir, NEW)
    assert start.reason == "the base model has architecture='lstm'; this config architecture='transformer'"


def _no_base_model(tmp_path) -> str | None:
    return None


def _base_without_state(tmp_path) -> str:
    """A model exported by a Trainer that kept no state (as before warm start existed)."""
    serving_dir = tmp_path / "old" / "Format-Serving"
    serving_dir.mkdir(parents=True)
    return str(serving_dir)


def _half_written_state(tmp_path) -> str:
    """Everything written but the manifest, as when the writer stopped before the end."""
    _, serving_dir = _base_model(tmp_path, CONFIGS[0])
    state_dir = warm_start_state.exported_state_dir(serving_dir)
    os.remove(os.path.join(state_dir, warm_start_state.MANIFEST))
    assert os.listdir(state_dir)
    return serving_dir


def _weights_of_another_build(tmp_path) -> str:
    """A state whose model had one weight fewer: as if the build changed since."""
    _, serving_dir = _base_model(tmp_path, CONFIGS[0])
    path = os.path.join(warm_start_state.exported_state_dir(serving_dir), warm_start_state.WEIGHTS)
    with np.load(path) as arrays:
        weights = {key: value for key, value in arrays.items() if key != "attention_output/1"}
    np.savez(path, **weights)
    return serving_dir


@pytest.mark.parametrize(("base_model", "training", "reason"), [
    (_no_base_model, TrainingConfig(), "no model in production yet"),
    (_base_without_state, TrainingConfig(), "the base model kept no warm-start state"),
    (_half_written_state, TrainingConfig(), "the base model kept no warm-start state"),
    (_weights_of_another_build, TrainingConfig(),
     "the base model's weights do not fit this model: only one of them has attention_output/1"),
    (lambda tmp_path: _base_model(tmp_path, CONFIGS[0])[1], TrainingConfig(warm_start=False),
     "training.warm_start is off"),
], ids=["first-run", "no-state", "half-written", "weights-do-not-fit", "switched-off"])
def test_without_a_usable_base_model_it_starts_cold(tmp_path, base_model, training, reason):
    path = base_model(tmp_path)
    new = _build(CONFIGS[0], NEW, seed=2)
    fresh = _values(new)

    start = warm_start.start_model(new.trainer, CONFIGS[0], training, path, NEW)

    assert start.as_json() == {"mode": "cold", "reason": reason, "base_model": path,
                               "source": {"carried": 0, "new": 6},
                               "target": {"carried": 0, "new": 4}}
    for key, value in _values(new).items():
        np.testing.assert_array_equal(value, fresh[key])


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_saved_state_round_trips(tmp_path, config):
    vocabularies = Vocabularies(source=["猫".encode(), b"a", b"b"], target=[])
    model, serving_dir = _base_model(tmp_path, config, vocabularies)
    state_dir = warm_start_state.exported_state_dir(serving_dir)
    assert state_dir == str(tmp_path / "base" / "Format-Serving" / "assets.extra" / "warm_start")

    state = warm_start_state.load(state_dir)

    assert state.model_config == dataclasses.asdict(config)
    assert state.vocabularies == vocabularies
    expected = _values(model)
    assert state.weights.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(state.weights[key], value)


def _inputs(**training: Any) -> dict[str, Any]:
    return warm_start.training_inputs(["examples/Split-train/*"], ["examples/Split-eval/*"],
                                      "transform_graph/7", CONFIGS[0], TrainingConfig(**training))


def test_a_base_model_trained_from_the_same_inputs_is_kept_and_any_other_is_not(tmp_path):
    model = _build(CONFIGS[0], OLD, seed=1)
    trained = str(tmp_path / "trained" / "Format-Serving")
    warm_start_state.save(warm_start_state.exported_state_dir(trained), model.trainer, CONFIGS[0], OLD,
                          {"inputs": _inputs(), "summary": {"epochs_run": 3}})
    untracked = str(tmp_path / "untracked" / "Format-Serving")  # saved before inputs were kept
    warm_start_state.save(warm_start_state.exported_state_dir(untracked), model.trainer, CONFIGS[0], OLD)

    start, state = warm_start.reusable_state(trained, _inputs())

    assert start.as_json() == {
        "mode": "reused", "base_model": trained,
        "reason": "it was trained on the same examples and Transform graph with the same settings",
        "source": {"carried": 5, "new": 0}, "target": {"carried": 4, "new": 0}}
    assert state.training["summary"] == {"epochs_run": 3}
    assert state.weights.keys() == _values(model).keys()
    assert warm_start.reusable_state(trained, _inputs(seed=1)) is None
    other_span = {**_inputs(), "train_files": ["examples-of-span-2/Split-train/*"]}
    assert warm_start.reusable_state(trained, other_span) is None
    assert warm_start.reusable_state(untracked, _inputs()) is None
    assert warm_start.reusable_state(None, _inputs()) is None


def test_a_warm_start_trains_its_own_epochs_and_decays_over_them():
    training = TrainingConfig(epochs=10, learning_rate=1e-3, warm_start_epochs=2,
                              warm_start_learning_rate=4e-4)
    warm = warm_start.Start("warm", "", "base", warm_start.TokenCounts(1, 0),
                            warm_start.TokenCounts(1, 0))
    cold = dataclasses.replace(warm, mode="cold")

    warm_training = warm_start.training_for(training, warm)

    assert (warm_training.epochs, warm_training.learning_rate) == (2, 4e-4)
    assert [trainer.learning_rate(warm_training, epoch) for epoch in range(2)] == pytest.approx(
        [4e-4, 2e-4])
    assert warm_start.training_for(training, cold) == training
    unset = TrainingConfig(epochs=10, learning_rate=1e-3)
    assert warm_start.training_for(unset, warm) == unset  # 0: as a cold start


@pytest.fixture(scope="module")
def transformed_tiny_pairs(transform_output_dir, tmp_path_factory) -> str:
    """TINY_PAIRS through the Transform graph, as Transform's output TFRecords."""
    return write_transformed(transform_output_dir, TINY_PAIRS,
                             str(tmp_path_factory.mktemp("transformed") / "examples.gz"))


def test_run_fn_warm_starts_keeps_a_state_and_a_run_on_the_same_inputs_trains_nothing(
        tmp_path, tiny_model, transformed_tiny_pairs, transform_output_dir, data_accessor,
        capsys):
    """run_fn on a base model that translates TINY_PAIRS: one gentle epoch on, so does it,
    exported from the state run_fn keeps as ServingExport exports it. A run_fn on the same
    inputs with that export as its base model then keeps its weights and trains nothing.

    (A run from scratch as well would double this test's minute of tracing and export.)
    """
    output = tft.TFTransformOutput(transform_output_dir)
    vocabularies = Vocabularies.of(output)
    base_dir = str(tmp_path / "base" / "Format-Serving")
    warm_start_state.save(warm_start_state.exported_state_dir(base_dir), tiny_model.trainer,
                          TINY_LSTM, vocabularies)
    serving_dir = str(tmp_path / "model" / "Format-Serving")
    model_run_dir = str(tmp_path / "model_run")
    training = TrainingConfig(batch_size=4, epochs=5, warm_start_epochs=1,
                              warm_start_learning_rate=1e-4)

    def run_fn(base_model: str, serving_model_dir: str, model_run_dir: str) -> None:
        trainer.run_fn(tfx.components.FnArgs(
            train_files=[transformed_tiny_pairs], eval_files=[transformed_tiny_pairs],
            transform_output=transform_output_dir, serving_model_dir=serving_model_dir,
            model_run_dir=model_run_dir, base_model=base_model, data_accessor=data_accessor,
            custom_config={"model": dataclasses.asdict(TINY_LSTM),
                           "training": dataclasses.asdict(training)}))

    run_fn(base_dir, serving_dir, model_run_dir)

    summary = training_summary.read(model_run_dir)
    sizes = [len(tokens) for tokens in vocabularies]
    reason = (f"carried {sizes[0]} of {sizes[0]} source and {sizes[1]} of {sizes[1]} target "
              "tokens (0 and 0 new)")
    assert summary["start"] == {"mode": "warm", "reason": reason, "base_model": base_dir,
                                "source": {"carried": sizes[0], "new": 0},
                                "target": {"carried": sizes[1], "new": 0}}
    assert summary["epochs_run"] == 1  # training.warm_start_epochs
    assert f"Warm start from {base_dir}: {reason}" in capsys.readouterr().out
    assert os.listdir(serving_dir) == []  # TFX wants it; the SavedModel is ServingExport's
    state = warm_start_state.load(warm_start_state.state_dir(serving_dir))
    assert state.vocabularies == vocabularies
    assert state.model_config == dataclasses.asdict(TINY_LSTM)
    exported = str(tmp_path / "exported")
    serving_export.export_model(str(tmp_path / "model"), transform_output_dir, exported,
                                DecodingConfig(max_output_length=12), ServingConfig())
    translate = tf.saved_model.load(os.path.join(exported, "Format-Serving")).signatures[
        contract.SERVING_SIGNATURE]
    outputs = translate(text=tf.constant([en for en, _ in TINY_PAIRS]))
    assert [t.decode() for t in outputs[contract.TRANSLATIONS_OUTPUT].numpy()] == [
        ja for _, ja in TINY_PAIRS]

    # The next run, on the same inputs with that export as its base model, trains nothing.
    kept_run_dir = str(tmp_path / "kept_run")
    kept_dir = str(tmp_path / "kept" / "Format-Serving")
    run_fn(os.path.join(exported, "Format-Serving"), kept_dir, kept_run_dir)

    kept = training_summary.read(kept_run_dir)
    assert kept["start"]["mode"] == "reused"
    assert {key: value for key, value in kept.items() if key != "start"} == {
        key: value for key, value in summary.items() if key != "start"}
    assert "Not trained again, the weights of" in capsys.readouterr().out
    kept_state = warm_start_state.load(warm_start_state.state_dir(kept_dir))
    assert kept_state.training == state.training and kept_state.training["summary"] == summary
    for key, value in state.weights.items():
        np.testing.assert_array_equal(kept_state.weights[key], value)
