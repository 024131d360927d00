"""The Keras Functional LSTM encoder–decoder.

`build` returns three Functional models over one set of layers: the teacher-forcing
model that is trained, and the encoder and one-step decoder that the serving graph
calls to decode. Sharing layers is what keeps the three in step.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import keras
import tensorflow as tf
from keras import layers, ops

from enja.models.config import ModelConfig, TrainingConfig
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

    def encode(self, source_ids: Any) -> tuple[Any, Any, Any, Any]:
        """Encoder outputs, source mask [B, S] and final state (h, c), for `step`.

        The outputs are copied without the padding mask Keras attaches to them: `step`
        takes the source mask as an input instead, and Keras would warn that it drops it.
        """
        outputs, state_h, state_c = self.encoder(source_ids)
        return ops.copy(outputs), ops.not_equal(source_ids, features.PAD_ID), state_h, state_c

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


class TiedLogits(layers.Layer):
    """Output logits that reuse the target embedding matrix as the projection kernel.

    Tying shares one [vocabulary, dim] matrix between the decoder's input and output
    (Press & Wolf, 2017): 1.3M fewer weights at the default sizes, and rare target
    words learn from both ends. Multiplies as one 2-D matmul, like SequenceDense.
    """

    def __init__(self, embedding: layers.Embedding, **kwargs: Any):
        super().__init__(**kwargs)
        self.embedding = embedding
        # As with Dense, the target padding mask passes through to the loss and metrics.
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        self.bias = self.add_weight(shape=(self.embedding.input_dim,), initializer="zeros",
                                    name="bias")

    def call(self, inputs: Any) -> Any:
        shape = ops.shape(inputs)
        flat = ops.matmul(ops.reshape(inputs, (-1, inputs.shape[-1])),
                          ops.transpose(self.embedding.embeddings)) + self.bias
        return ops.reshape(flat, (shape[0], shape[1], self.embedding.input_dim))


def _sum_over_replicas(value: Any) -> Any:
    """`value` summed over the replicas of a tf.distribute step (itself on one device, and
    where Keras traces the loss outside any step, only to build it)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


class TokenCrossentropy(keras.losses.Loss):
    """Mean cross-entropy over the non-padding target tokens, optionally label-smoothed.

    With smoothing ε the target distribution puts 1-ε on the reference token and
    spreads ε uniformly over the vocabulary (Szegedy et al., 2016), which keeps the
    model from growing over-confident on a 50k-pair corpus. Keras's sparse loss has no
    smoothing and its dense one needs one-hot labels of vocabulary width.

    The mean is over the real tokens of the global batch: on several replicas
    (models/distribution.py) Keras sums the replicas' gradients and logs each replica's
    loss times their number, so each replica's loss must be its part of the global mean;
    dividing by its own tokens would double both on two replicas. (Keras weighs the
    logged replica losses by their examples: exact while the replicas' batches are equally
    large, so on all but perhaps an epoch's last.)
    """

    def __init__(self, label_smoothing: float = 0.0):
        # The call already averages over real tokens; "sum" keeps that mean.
        super().__init__(name="token_crossentropy", reduction="sum")
        self.label_smoothing = label_smoothing

    def call(self, labels: Any, logits: Any) -> Any:
        labels = ops.cast(labels, "int32")
        # The fused softmax cross-entropy op, as in Keras's own sparse loss.
        loss = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if self.label_smoothing:
            # -mean(log-softmax) over the vocabulary, without materialising it.
            uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
            loss = (1.0 - self.label_smoothing) * loss + self.label_smoothing * uniform
        real = ops.cast(ops.not_equal(labels, features.PAD_ID), loss.dtype)
        return loss * real / ops.maximum(_sum_over_replicas(ops.sum(real)), 1.0)


def build(config: ModelConfig, source_vocab_size: int, target_vocab_size: int) -> Seq2Seq:
    """Builds the encoder–decoder for the given vocabulary sizes (reserved ids included)."""
    source_embedding = layers.Embedding(
        source_vocab_size, config.embedding_dim, mask_zero=True, name="source_embedding")
    if config.bidirectional:
        # Two half-width directions: outputs and states keep the decoder's width.
        encoder_lstm = layers.Bidirectional(layers.LSTM(
            config.units // 2, return_sequences=True, return_state=True), name="encoder_lstm")
    else:
        encoder_lstm = layers.LSTM(
            config.units, return_sequences=True, return_state=True, name="encoder_lstm")
    target_embedding = layers.Embedding(
        target_vocab_size, config.embedding_dim, mask_zero=True, name="target_embedding")
    decoder_lstm = layers.LSTM(
        config.units, return_sequences=True, return_state=True, name="decoder_lstm")
    attention = (_ATTENTION_LAYERS[config.attention](name="attention")
                 if config.attention != "none" else None)
    attention_output = SequenceDense(config.units, activation="tanh", name="attention_output")
    logits_layer = (TiedLogits(target_embedding, name="logits") if config.tie_embeddings
                    else SequenceDense(target_vocab_size, name="logits"))
    # Dropout layers are inert outside training, so the serving graph ignores them.
    source_dropout = layers.Dropout(config.dropout, name="source_dropout")
    target_dropout = layers.Dropout(config.dropout, name="target_dropout")
    output_dropout = layers.Dropout(config.dropout, name="output_dropout")

    def encode(source_ids):
        outputs, *states = encoder_lstm(source_dropout(source_embedding(source_ids)))
        if config.bidirectional:  # [forward h, forward c, backward h, backward c]
            states = [layers.Concatenate()([states[0], states[2]]),
                      layers.Concatenate()([states[1], states[3]])]
        return outputs, *states

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
        loss=TokenCrossentropy(config.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
