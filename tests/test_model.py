"""The Keras encoder–decoder: shapes, loss masking, and that training reduces the loss."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from enja.models.architectures import lstm, registry, seq2seq
from enja.models.config import ModelConfig, TrainingConfig
from enja.preprocessing import features

SOURCE_VOCAB, TARGET_VOCAB = 12, 15


def _batch(rng: np.random.Generator, batch: int = 4) -> tuple[dict, np.ndarray]:
    source = rng.integers(features.NUM_RESERVED, SOURCE_VOCAB, size=(batch, 5))
    source[:, 3:] = features.PAD_ID
    target = rng.integers(features.NUM_RESERVED, TARGET_VOCAB, size=(batch, 7))
    target[:, 0] = features.START_ID
    target[:, 5] = features.END_ID
    target[:, 6:] = features.PAD_ID
    return ({seq2seq.SOURCE_INPUT: source, seq2seq.TARGET_INPUT: target[:, :-1]},
            target[:, 1:])


TRANSFORMER = ModelConfig(architecture="transformer", embedding_dim=8, units=8, layers=2,
                          heads=2, feedforward_dim=16)


@pytest.mark.parametrize("config", [
    ModelConfig(embedding_dim=8, units=6, attention="none"),
    ModelConfig(embedding_dim=8, units=6, attention="luong"),
    ModelConfig(embedding_dim=8, units=6, attention="bahdanau"),
    ModelConfig(embedding_dim=6, units=6, bidirectional=True, tie_embeddings=True),
    TRANSFORMER,
    dataclasses.replace(TRANSFORMER, tie_embeddings=True),
], ids=["none", "luong", "bahdanau", "bidirectional-tied", "transformer", "transformer-tied"])
def test_stepwise_decoding_gives_the_teacher_forced_logits(config):
    keras.utils.set_random_seed(0)
    model = registry.build(config, SOURCE_VOCAB, TARGET_VOCAB)
    inputs, _ = _batch(np.random.default_rng(0))
    logits = model.trainer(inputs)
    assert logits.shape == (4, 6, TARGET_VOCAB)
    memory, state = model.encode(keras.ops.convert_to_tensor(inputs[seq2seq.SOURCE_INPUT]))
    targets = keras.ops.convert_to_tensor(inputs[seq2seq.TARGET_INPUT])
    # Step by step over the decoder's state (h and c, or the key/value cache), each step
    # reproduces the teacher-forced model's position.
    for position in range(targets.shape[1]):
        step_logits, state, weights = model.step(targets[:, position:position + 1], state,
                                                 memory)
        np.testing.assert_allclose(step_logits, logits[:, position], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-5)
        assert np.all(np.asarray(weights)[:, 3:] == 0)  # padded source positions get none
    if isinstance(model, lstm.LstmEncoderDecoder):
        assert not ({id(w) for w in model.decoder_step.weights}
                    - {id(w) for w in model.trainer.weights})


def test_loss_ignores_padding_positions():
    model = registry.build(ModelConfig(embedding_dim=8, units=6), SOURCE_VOCAB, TARGET_VOCAB)
    seq2seq.compile_model(model.trainer, TrainingConfig())
    inputs, labels = _batch(np.random.default_rng(1))
    loss = model.trainer.evaluate(inputs, labels, verbose=0, return_dict=True)["loss"]
    inputs_more_pad = {
        seq2seq.SOURCE_INPUT: np.pad(inputs[seq2seq.SOURCE_INPUT], ((0, 0), (0, 3))),
        seq2seq.TARGET_INPUT: np.pad(inputs[seq2seq.TARGET_INPUT], ((0, 0), (0, 3))),
    }
    more_pad_labels = np.pad(labels, ((0, 0), (0, 3)))
    loss_more_pad = model.trainer.evaluate(inputs_more_pad, more_pad_labels, verbose=0,
                                           return_dict=True)["loss"]
    assert loss_more_pad == pytest.approx(loss, rel=1e-4)


def test_tied_logits_project_with_the_target_embedding():
    model = registry.build(ModelConfig(embedding_dim=6, units=6, tie_embeddings=True),
                          SOURCE_VOCAB, TARGET_VOCAB)
    embedding = model.trainer.get_layer("target_embedding").embeddings
    logits = model.trainer.get_layer("logits")
    assert not [w for w in logits.trainable_weights if w.shape == embedding.shape
                and w is not embedding]
    hidden = np.random.default_rng(4).normal(size=(2, 3, 6)).astype("float32")
    np.testing.assert_allclose(logits(hidden), hidden @ np.asarray(embedding).T,
                               rtol=1e-5, atol=1e-6)  # the bias starts at zero


@pytest.mark.parametrize(("fields", "message"), [
    ({"units": 7, "bidirectional": True}, "even"),
    ({"embedding_dim": 8, "units": 6, "tie_embeddings": True}, "embedding_dim == model.units"),
    ({"attention": "dot"}, "model.attention is 'dot'; choose one of none, luong, bahdanau"),
    ({"architecture": "rnn"}, "model.architecture is 'rnn'; choose one of lstm, transformer"),
    ({"architecture": "transformer", "embedding_dim": 12, "units": 12, "heads": 4},
     "heads of even width"),
])
def test_inconsistent_settings_are_rejected_when_the_config_is_made(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**fields)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_token_crossentropy_averages_real_tokens(smoothing):
    logits = np.random.default_rng(5).normal(size=(2, 3, TARGET_VOCAB)).astype("float32")
    labels = np.array([[5, 6, features.PAD_ID], [7, features.PAD_ID, features.PAD_ID]])
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    real = labels != features.PAD_ID
    reference = -np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    expected = ((1 - smoothing) * reference - smoothing * log_probs.mean(axis=-1))[real].mean()
    loss = seq2seq.TokenCrossentropy(smoothing)(labels, logits)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_a_few_steps_reduce_the_loss():
    keras.utils.set_random_seed(0)
    model = registry.build(ModelConfig(embedding_dim=8, units=16), SOURCE_VOCAB, TARGET_VOCAB)
    seq2seq.compile_model(model.trainer, TrainingConfig(learning_rate=1e-2))
    inputs, labels = _batch(np.random.default_rng(2), batch=8)
    history = model.trainer.fit(inputs, labels, epochs=30, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]


def test_sequence_dense_matches_keras_dense():
    inputs = np.random.default_rng(3).normal(size=(4, 5, 6)).astype("float32")
    sequence_dense = seq2seq.SequenceDense(7, activation="tanh")
    dense = keras.layers.Dense(7, activation="tanh")
    sequence_dense.build(inputs.shape)
    dense.build(inputs.shape)
    dense.set_weights(sequence_dense.get_weights())
    np.testing.assert_allclose(sequence_dense(inputs), dense(inputs), rtol=1e-5, atol=1e-6)


def test_the_transformers_json_rebuilds_it(recwarn):
    """TensorBoard writes the model's JSON; the blocks give their settings as plain values."""
    from enja.models.architectures import transformer

    model = registry.build(TRANSFORMER, SOURCE_VOCAB, TARGET_VOCAB).trainer
    rebuilt = keras.models.model_from_json(model.to_json(), custom_objects={
        "SequenceDense": seq2seq.SequenceDense, "AddPositions": transformer.AddPositions,
        "EncoderBlock": transformer.EncoderBlock, "DecoderBlock": transformer.DecoderBlock})
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights]
    assert not [w for w in recwarn if "serialize" in str(w.message)]
