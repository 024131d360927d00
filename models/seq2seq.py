"""The Keras Functional LSTM encoder–decoder.

`build` returns three Functional models over one set of layers: the teacher-forcing
model that is trained, and the encoder and one-step decoder that the serving graph
calls to decode. Sharing layers is what keeps the three in step.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import layers, ops

from enja.pipeline.configs import ModelConfig, TrainingConfig
from enja.preprocessing import features

SOURCE_INPUT = "source_ids"
TARGET_INPUT = "target_in"

_ATTENTION_LAYERS = {"luong": layers.Attention, "bahdanau": layers.AdditiveAttention}


class Seq2Seq(NamedTuple):
    # {source_ids [B, S], target_in [B, T]} -> logits [B, T, V]
    trainer: keras.Model
    # source_ids [B, S] -> encoder_outputs [B, S, U], h [B, U], c [B, U]
    encoder: keras.Model
    # {token [B, 1], state_h, state_c, source_mask [B, S], encoder_outputs (with attention)}
    #   -> logits [B, V], h, c, attention weights [B, S] (uniform without attention)
    decoder_step: keras.Model

    def step(self, token: Any, state_h: Any, state_c: Any, encoder_outputs: Any,
             source_mask: Any) -> list[Any]:
        """One decoder step; passes encoder outputs only to a model that attends to them."""
        available = {"token": token, "state_h": state_h, "state_c": state_c,
                     "encoder_outputs": encoder_outputs, "source_mask": source_mask}
        return self.decoder_step({name: available[name] for name in self.decoder_step.input})


class SequenceDense(layers.Dense):
    """Dense over the last axis of [batch, time, features], as one 2-D matmul.

    Keras's Dense multiplies 3-D inputs with a broadcast batch matmul, whose kernel
    gradient builds one kernel-sized matrix per sequence before summing them: at a
    4.9k-token vocabulary that doubled the CPU time of a whole training step here
    (`bench/step_time.py --keras-dense`).
    """

    def call(self, inputs: Any) -> Any:
        shape = ops.shape(inputs)
        flat = super().call(ops.reshape(inputs, (-1, inputs.shape[-1])))
        return ops.reshape(flat, (shape[0], shape[1], self.units))


def build(config: ModelConfig, source_vocab_size: int, target_vocab_size: int) -> Seq2Seq:
    """Builds the encoder–decoder for the given vocabulary sizes (reserved ids included)."""
    if config.attention not in ("none", *_ATTENTION_LAYERS):
        raise ValueError(f"model.attention must be none, luong or bahdanau, not {config.attention!r}")
    source_embedding = layers.Embedding(
        source_vocab_size, config.embedding_dim, mask_zero=True, name="source_embedding")
    encoder_lstm = layers.LSTM(
        config.units, return_sequences=True, return_state=True, name="encoder_lstm")
    target_embedding = layers.Embedding(
        target_vocab_size, config.embedding_dim, mask_zero=True, name="target_embedding")
    decoder_lstm = layers.LSTM(
        config.units, return_sequences=True, return_state=True, name="decoder_lstm")
    attention = (_ATTENTION_LAYERS[config.attention](name="attention")
                 if config.attention != "none" else None)
    attention_output = SequenceDense(config.units, activation="tanh", name="attention_output")
    logits_layer = SequenceDense(target_vocab_size, name="logits")
    # Dropout layers are inert outside training, so the serving graph ignores them.
    source_dropout = layers.Dropout(config.dropout, name="source_dropout")
    target_dropout = layers.Dropout(config.dropout, name="target_dropout")
    output_dropout = layers.Dropout(config.dropout, name="output_dropout")

    def encode(source_ids):
        return encoder_lstm(source_dropout(source_embedding(source_ids)))

    def decode(target_ids, state, encoder_outputs, source_mask):
        outputs, h, c = decoder_lstm(target_dropout(target_embedding(target_ids)),
                                     initial_state=state)
        if attention is None:
            # Without attention every source position weighs the same, for plots.
            mask = ops.cast(source_mask, "float32")
            uniform = ops.expand_dims(mask / ops.sum(mask, axis=1, keepdims=True), 1)
            weights = uniform + ops.zeros_like(outputs[:, :, :1])  # [B, T, S]
        else:
            context, weights = attention(
                [outputs, encoder_outputs], mask=[None, source_mask],
                return_attention_scores=True)
            outputs = attention_output(layers.Concatenate()([outputs, context]))
        return logits_layer(output_dropout(outputs)), h, c, weights

    source_ids = keras.Input(shape=(None,), dtype="int64", name=SOURCE_INPUT)
    target_in = keras.Input(shape=(None,), dtype="int64", name=TARGET_INPUT)
    source_mask = ops.not_equal(source_ids, features.PAD_ID)
    encoder_outputs, h, c = encode(source_ids)
    logits, _, _, _ = decode(target_in, [h, c], encoder_outputs, source_mask)
    trainer = keras.Model({SOURCE_INPUT: source_ids, TARGET_INPUT: target_in}, logits,
                          name="seq2seq")
    encoder = keras.Model(source_ids, [encoder_outputs, h, c], name="encoder")

    token = keras.Input(shape=(1,), dtype="int64", name="token")
    state_h = keras.Input(shape=(config.units,), name="state_h")
    state_c = keras.Input(shape=(config.units,), name="state_c")
    memory = keras.Input(shape=(None, config.units), name="encoder_outputs")
    memory_mask = keras.Input(shape=(None,), dtype="bool", name="source_mask")
    step_logits, next_h, next_c, step_weights = decode(token, [state_h, state_c], memory,
                                                       memory_mask)
    step_inputs = {"token": token, "state_h": state_h, "state_c": state_c,
                   "source_mask": memory_mask}
    if attention is not None:
        step_inputs["encoder_outputs"] = memory
    decoder_step = keras.Model(
        step_inputs,
        [step_logits[:, 0], next_h, next_c, step_weights[:, 0]],
        name="decoder_step")
    return Seq2Seq(trainer, encoder, decoder_step)


def compile_model(model: keras.Model, config: TrainingConfig) -> None:
    """Adam on the token cross-entropy, with padding positions left out of the loss."""
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm or None),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=features.PAD_ID),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
