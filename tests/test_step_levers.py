"""The training-speed settings of issue #24 learn what float32 without them learns.

Each setting trains a tiny model for the same steps, from the same seed, on a small
learnable task (the target is the source reversed, in another vocabulary), with what the
Trainer uses per step: Adam with clipnorm, weight averaging (the averaged weights are
scored), the per-step warm-up callback and the per-epoch cosine rate. The dev loss must
match the run without the setting within a stated tolerance, and must have fallen well
below its start (so a setting that stopped learning fails too). bench/step_levers.py
measures what each setting is worth.
"""
from __future__ import annotations

import contextlib
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from enja.models.architectures import lstm, registry, seq2seq
from enja.models.config import ModelConfig, TrainingConfig
from enja.models.training import trainer
from enja.preprocessing import features
from support.corpus import TINY_PAIRS
from support.paths import LOADER_SCRIPT
from support.tiny_models import fit_to_tiny_pairs

SOURCE_VOCAB, TARGET_VOCAB = 16, 20
SOURCE_LENGTH, TARGET_LENGTH = 7, 8
BATCH, TRAIN_BATCHES, EPOCHS = 16, 12, 3

LSTM = ModelConfig(embedding_dim=16, units=24, dropout=0.0)
TRANSFORMER = ModelConfig(architecture="transformer", units=16, layers=1, heads=2,
                          feedforward_dim=32, dropout=0.0)
TRAINING = TrainingConfig(batch_size=BATCH, epochs=EPOCHS, learning_rate=1e-2, clipnorm=0.5,
                          warmup_steps=5, weight_averaging=0.9, early_stopping_patience=0)
# Identical math in another order of float32 additions (or XLA's fused kernels): the
# differences measured after these 36 steps were below 1e-5 relative; a broken setting
# (a lost bias, a frozen learning rate, a lost mask) moved the dev loss by more. Not a
# proof of the same math on its own: keras.layers.LSTM(unroll=True), whose backward
# direction zeroes the wrong positions of a padded sequence, moved it by less than 1e-3,
# so each setting also has an equivalence test of its outputs on padded inputs.
SAME_MATH = 1e-3
# bfloat16 matmuls and activations: measured 1e-4 to 8e-4 relative here.
BFLOAT16 = 0.01


def _pairs(rng: np.random.Generator, count: int) -> tf.data.Dataset:
    """Source ids of random lengths; the target is them reversed and shifted into the
    target vocabulary, between <s> and </s>."""
    lengths = rng.integers(3, SOURCE_LENGTH + 1, size=count)
    source = np.zeros((count, SOURCE_LENGTH), np.int64)
    target = np.zeros((count, TARGET_LENGTH + 1), np.int64)
    for row, length in enumerate(lengths):
        tokens = rng.integers(features.NUM_RESERVED, SOURCE_VOCAB, size=length)
        source[row, :length] = tokens
        target[row, 0] = features.START_ID
        target[row, 1:length + 1] = tokens[::-1] + (TARGET_VOCAB - SOURCE_VOCAB)
        target[row, length + 1] = features.END_ID
    return tf.data.Dataset.from_tensor_slices((
        {seq2seq.SOURCE_INPUT: source, seq2seq.TARGET_INPUT: target[:, :-1]}, target[:, 1:]
    )).batch(BATCH)


def dev_loss(model_config: ModelConfig, training: TrainingConfig) -> tuple[float, float]:
    """The averaged weights' dev loss before and after EPOCHS epochs of TRAIN_BATCHES steps."""
    keras.utils.set_random_seed(0)
    train = _pairs(np.random.default_rng(1), BATCH * TRAIN_BATCHES)
    dev = _pairs(np.random.default_rng(2), BATCH * 4)
    keras.mixed_precision.set_global_policy(training.precision)
    try:
        model = registry.build(model_config, SOURCE_VOCAB, TARGET_VOCAB)
        seq2seq.compile_model(model.trainer, training)
        before = model.trainer.evaluate(dev, verbose=0, return_dict=True)["loss"]
        model.trainer.fit(train, epochs=training.epochs, verbose=0,
                          callbacks=[trainer.WarmupAndSchedule(training)])
        optimizer = model.trainer.optimizer
        optimizer.finalize_variable_values(model.trainer.trainable_variables)  # the average
        return before, model.trainer.evaluate(dev, verbose=0, return_dict=True)["loss"]
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[float, float]]:
    """float32 without any of the settings, per architecture."""
    return {"lstm": dev_loss(LSTM, TRAINING), "transformer": dev_loss(TRANSFORMER, TRAINING)}


@pytest.mark.parametrize(("architecture", "model_changes", "training_changes"), [
    ("lstm", {}, {"jit_compile": True}),
    ("lstm", {"project_inputs_once": True}, {}),
    ("lstm", {"project_inputs_once": True}, {"jit_compile": True}),
    ("transformer", {}, {"jit_compile": True}),
    ("transformer", {"fused_qkv": True}, {}),
    ("transformer", {"fused_qkv": True}, {"jit_compile": True}),
], ids=["lstm-xla", "lstm-projected", "lstm-all", "transformer-xla",
        "transformer-fused", "transformer-all"])
def test_a_speed_setting_learns_what_float32_without_it_learns(
        reference, architecture, model_changes, training_changes):
    base = LSTM if architecture == "lstm" else TRANSFORMER
    before, after = dev_loss(dataclasses.replace(base, **model_changes),
                             dataclasses.replace(TRAINING, **training_changes))
    reference_before, reference_after = reference[architecture]
    assert reference_after < 0.8 * reference_before  # the task is learnt at all
    assert before == pytest.approx(reference_before, rel=SAME_MATH)
    assert after == pytest.approx(reference_after, rel=SAME_MATH)


@pytest.mark.parametrize(("architecture", "model_changes", "training_changes"), [
    ("lstm", {}, {"precision": "mixed_bfloat16"}),
    ("lstm", {"project_inputs_once": True}, {"precision": "mixed_bfloat16"}),
    ("transformer", {}, {"precision": "mixed_bfloat16", "jit_compile": True}),
], ids=["lstm-bf16", "lstm-projected-bf16", "transformer-xla-bf16"])
def test_bfloat16_learns_within_its_tolerance_of_float32(
        reference, architecture, model_changes, training_changes):
    """bfloat16 changes the math (8 bits of mantissa in every matmul and activation); its
    dev loss here stays within BFLOAT16 of float32's."""
    base = LSTM if architecture == "lstm" else TRANSFORMER
    before, after = dev_loss(dataclasses.replace(base, **model_changes),
                             dataclasses.replace(TRAINING, **training_changes))
    reference_before, reference_after = reference[architecture]
    print(f"{architecture} bfloat16 dev loss {before:.4f} → {after:.4f}; float32 "
          f"{reference_before:.4f} → {reference_after:.4f}")
    assert before == pytest.approx(reference_before, rel=BFLOAT16)
    assert after == pytest.approx(reference_after, rel=BFLOAT16)


def test_xla_compiles_the_step_once_while_the_callback_sets_each_steps_rate():
    """The warm-up assigns the optimizer's learning-rate variable every step; the compiled
    step reads it rather than baking it in, so more steps at other rates trace nothing
    new, and each step's rate is the one the callback set."""
    training = dataclasses.replace(TRAINING, jit_compile=True, warmup_steps=8, epochs=1)
    model = registry.build(LSTM, SOURCE_VOCAB, TARGET_VOCAB)
    seq2seq.compile_model(model.trainer, training)
    assert model.trainer.jit_compile
    schedule = trainer.WarmupAndSchedule(training)
    data = _pairs(np.random.default_rng(1), BATCH * 6)
    model.trainer.fit(data.take(2), verbose=0, callbacks=[schedule])
    traced = {id(f): f.experimental_get_tracing_count()
              for f in _tf_functions(model.trainer.train_function)}
    assert traced
    rates, updates = [], []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: (
        rates.append(float(model.trainer.optimizer.learning_rate)),
        updates.append(int(model.trainer.optimizer.iterations))))
    model.trainer.fit(data, verbose=0, callbacks=[schedule, record])
    assert rates == pytest.approx([training.learning_rate * step / 8 for step in range(3, 9)])
    assert updates == list(range(3, 9))
    assert {id(f): f.experimental_get_tracing_count()
            for f in _tf_functions(model.trainer.train_function)} == traced


def _tf_functions(function) -> list:
    """The tf.functions Keras's train function closes over (its one-step and loop functions)."""
    found, pending, seen = [], [function], set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if hasattr(item, "experimental_get_tracing_count"):
            found.append(item)
            item = getattr(item, "_python_function", None)
        for cell in getattr(item, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                pending.append(cell.cell_contents)
        wrapped = getattr(item, "__wrapped__", None)
        if wrapped is not None:
            pending.append(wrapped)
    return found


def test_the_projected_lstm_keeps_the_lstms_weights_and_outputs():
    """Same weights in the same order (warm starts and saved states key them by layer and
    index), and the teacher-forced logits of a plain LSTM built from them."""
    keras.utils.set_random_seed(0)
    plain = registry.build(LSTM, SOURCE_VOCAB, TARGET_VOCAB).trainer
    projected = registry.build(dataclasses.replace(LSTM, project_inputs_once=True),
                                    SOURCE_VOCAB, TARGET_VOCAB).trainer
    assert isinstance(projected.get_layer("decoder_lstm"), lstm.ProjectedLSTM)
    assert [w.shape for w in projected.weights] == [w.shape for w in plain.weights]
    projected.set_weights(plain.get_weights())
    inputs, _ = next(iter(_pairs(np.random.default_rng(3), 8)))
    np.testing.assert_allclose(projected(inputs), plain(inputs), rtol=1e-5, atol=1e-6)


def test_a_model_with_the_speed_settings_exports_and_translates_in_both_loaders(
        transform_output_dir, tmp_path):
    """Projected LSTMs trained under XLA: the serving graph (the encoder on the padded
    serving input, one-step decoding in a tf.while_loop) translates its training pairs,
    without project code, in both loaders."""
    import json
    import subprocess
    import sys

    import tensorflow_transform as tft

    from enja.models.config import DecodingConfig
    from enja.models.export import translator
    from enja.serving import contract

    config = ModelConfig(embedding_dim=16, units=32, project_inputs_once=True)
    model = fit_to_tiny_pairs(transform_output_dir, config, learning_rate=2e-2, epochs=60,
                               jit_compile=True)
    assert model.trainer.jit_compile
    module = translator.Translator(model, tft.TFTransformOutput(transform_output_dir),
                                   DecodingConfig(max_output_length=12))
    outputs = module.translate(tf.constant([en for en, _ in TINY_PAIRS]))
    assert [t.decode() for t in outputs[contract.TRANSLATIONS_OUTPUT].numpy()] == [
        ja for _, ja in TINY_PAIRS]
    export_dir = str(tmp_path / "export")
    translator.save(module, export_dir)
    sentences = [TINY_PAIRS[0][0], TINY_PAIRS[4][0]]
    result = subprocess.run([sys.executable, str(LOADER_SCRIPT), export_dir, *sentences],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["tf2"] == [TINY_PAIRS[0][1], TINY_PAIRS[4][1]]
    assert loaded["tf1"]["translations"] == loaded["tf2"]


def test_fused_qkv_keeps_the_transformers_weights_and_outputs():
    """The same weights, the teacher-forced logits of the unfused model built from them,
    and decoding (which projects keys and values apart, into its cache) gives them too."""
    keras.utils.set_random_seed(0)
    plain = registry.build(TRANSFORMER, SOURCE_VOCAB, TARGET_VOCAB)
    fused = registry.build(dataclasses.replace(TRANSFORMER, fused_qkv=True),
                                SOURCE_VOCAB, TARGET_VOCAB)
    assert [w.shape for w in fused.trainer.weights] == [w.shape for w in plain.trainer.weights]
    fused.trainer.set_weights(plain.trainer.get_weights())
    inputs, _ = next(iter(_pairs(np.random.default_rng(3), 8)))
    logits = fused.trainer(inputs)
    np.testing.assert_allclose(logits, plain.trainer(inputs), rtol=1e-5, atol=1e-6)
    memory, state = fused.encode(inputs[seq2seq.SOURCE_INPUT])
    step_logits, _, _ = fused.step(inputs[seq2seq.TARGET_INPUT][:, :1], state, memory)
    np.testing.assert_allclose(step_logits, logits[:, 0], rtol=1e-4, atol=1e-5)
