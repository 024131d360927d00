"""What every encoder–decoder here shares: its interface, output layers, loss and compile.

An architecture (`lstm.py`, `transformer.py`; `registry.py` picks one) builds a Keras
Functional teacher-forcing model and decodes one token at a time through `encode` and
`step`. Decoding (`decoding.py`) treats the decoder's state and the encoder's memory as
opaque nested tensors: an LSTM's (h, c) and a
Transformer's key/value cache go through the same greedy and beam search.
"""
from __future__ import annotations

import abc
from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

from enja.models.config import ModelConfig, TrainingConfig
from enja.preprocessing import features

SOURCE_INPUT = "source_ids"
TARGET_INPUT = "target_in"

# Nested structures of tensors whose leading axis is the batch (tf.nest): what `encode`
# returns and `step` takes and returns.
Memory = Any
State = Any


class EncoderDecoder(abc.ABC):
    """A trained model seen by decoding: the teacher-forcing model and one decoder step.

    Every tensor in `Memory` and `State` has the batch on its first axis, so that beam
    search can repeat and reorder them as a whole; a state leaf may grow along its second
    axis from step to step (a key/value cache) but keeps the size of its last one.
    """

    def __init__(self, trainer: keras.Model) -> None:
        # {source_ids [B, S], target_in [B, T]} -> logits [B, T, V]
        self.trainer = trainer

    @property
    def target_vocab_size(self) -> int:
        return self.trainer.output.shape[-1]

    @abc.abstractmethod
    def encode(self, source_ids: tf.Tensor) -> tuple[Memory, State]:
        """What every step reads of the source [B, S], and the decoder's first state."""

    @abc.abstractmethod
    def step(self, token: tf.Tensor, state: State, memory: Memory
             ) -> tuple[tf.Tensor, State, tf.Tensor]:
        """From `token` [B, 1]: logits [B, V], the next state, attention over the source [B, S]
        (zero on padding, summing to one over the real positions)."""


def source_mask(source_ids: Any) -> Any:
    """True at the real (non-padding) source positions."""
    return ops.not_equal(source_ids, features.PAD_ID)


class SequenceDense(layers.Dense):
    """Dense over the last axis of [batch, time, features], as one 2-D matmul.

    Keras's Dense multiplies 3-D inputs with a broadcast batch matmul, whose kernel
    gradient builds one kernel-sized matrix per sequence before summing them: at the output
    layer's vocabulary width that costs more than the rest of the step
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

    def __init__(self, embedding: layers.Embedding, **kwargs: Any) -> None:
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


def logits_layer(config: ModelConfig, target_embedding: layers.Embedding) -> layers.Layer:
    """The output projection onto the target vocabulary, tied to the embedding or not."""
    if config.tie_embeddings:
        return TiedLogits(target_embedding, name="logits")
    return SequenceDense(target_embedding.input_dim, name="logits")


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
    (models/training/distribution.py) Keras sums the replicas' gradients and logs each replica's
    loss times their number, so each replica's loss must be its part of the global mean;
    dividing by its own tokens would double both on two replicas. (Keras weighs the
    logged replica losses by their examples: exact while the replicas' batches are equally
    large, so on all but perhaps an epoch's last.)
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        # The call already averages over real tokens; "sum" keeps that mean.
        super().__init__(name="token_crossentropy", reduction="sum")
        self.label_smoothing = label_smoothing

    def call(self, labels: Any, logits: Any) -> Any:
        labels = ops.cast(labels, "int32")
        logits = ops.cast(logits, "float32")  # bfloat16 logits lose the small differences
        # The fused softmax cross-entropy op, as in Keras's own sparse loss.
        loss = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if self.label_smoothing:
            # -mean(log-softmax) over the vocabulary, without materialising it.
            uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
            loss = (1.0 - self.label_smoothing) * loss + self.label_smoothing * uniform
        real = ops.cast(ops.not_equal(labels, features.PAD_ID), loss.dtype)
        return loss * real / ops.maximum(_sum_over_replicas(ops.sum(real)), 1.0)


class TokenAccuracy(keras.metrics.Mean):
    """The share of real (non-padding) target tokens whose most likely prediction is right.

    Counts padding out itself, whether or not the model carries a Keras mask (the
    LSTM's embeddings do, the Transformer's do not).
    """

    def __init__(self, name: str = "accuracy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def update_state(self, labels: Any, logits: Any, sample_weight: Any = None) -> None:
        labels = ops.cast(labels, "int32")
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels),
                           "float32")
        real = ops.cast(ops.not_equal(labels, features.PAD_ID), "float32")
        if sample_weight is not None:
            real = real * ops.cast(sample_weight, "float32")
        super().update_state(correct, sample_weight=real)


def compile_model(model: keras.Model, config: TrainingConfig) -> None:
    """Adam on the token cross-entropy, with padding positions left out of the loss.

    With `config.weight_averaging` the optimizer also keeps an exponential moving average
    of the weights (Polyak averaging), which the Trainer validates and exports.
    """
    averaging = {"use_ema": True, "ema_momentum": config.weight_averaging} \
        if config.weight_averaging else {}
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, beta_2=config.adam_beta_2,
                                        clipnorm=config.clipnorm or None, **averaging),
        loss=TokenCrossentropy(config.label_smoothing),
        metrics=[TokenAccuracy()],
        jit_compile=config.jit_compile and not tf.distribute.has_strategy())
