"""The Transformer encoder–decoder (Vaswani et al., 2017) in the Keras Functional API.

Pre-layer-norm blocks (Xiong et al., 2020), which train without a long warm-up;
sinusoidal positions; embeddings scaled by sqrt(width). It reads the same Transform
output and trains in the same Trainer as the LSTM model, and decodes through the same
interface (`seq2seq.EncoderDecoder`):

- the memory every step reads is each decoder block's cross-attention keys and values
  of the source, projected once in `encode`, and the source mask;
- the state is each decoder block's self-attention keys and values of the tokens decoded
  so far, [B, t, units] each, one position longer after every step: a step attends over
  the cache instead of recomputing the prefix.

The attention a step reports (the `attention` signature's weights) is the last decoder
block's cross-attention, averaged over its heads.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

from enja.models.architectures import seq2seq
from enja.models.config import ModelConfig

# Added to the scores of positions a query may not see; exp() of it is exactly 0.
_HIDDEN = -1e9


def _sinusoids(start: Any, length: Any, dim: int) -> Any:
    """Sinusoidal position encodings [length, dim] of positions start, start + 1, ..."""
    positions = ops.cast(ops.arange(length) + start, "float32")[:, None]
    rates = ops.exp(ops.arange(0, dim, 2, dtype="float32") * (-math.log(10_000.0) / dim))
    angles = positions * rates[None, :]
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)


class AddPositions(layers.Layer):
    """Scales token embeddings [B, T, U] by sqrt(U) and adds the positions from `start` on."""

    def call(self, embedded: Any, start: Any = 0) -> Any:
        dim = embedded.shape[-1]
        positions = _sinusoids(start, ops.shape(embedded)[1], dim)
        return embedded * math.sqrt(dim) + ops.cast(positions, embedded.dtype)[None]


class Attention(layers.Layer):
    """Multi-head scaled dot-product attention whose key/value projection can run apart,
    so that decoding projects each key and value once."""

    def __init__(self, units: int, heads: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.heads = units, heads
        self.query = seq2seq.SequenceDense(units, name="query")
        self.key = seq2seq.SequenceDense(units, name="key")
        self.value = seq2seq.SequenceDense(units, name="value")
        self.combine = seq2seq.SequenceDense(units, name="combine")
        self.weights_dropout = layers.Dropout(dropout)

    def build(self, inputs_shape: Any) -> None:
        for dense in (self.query, self.key, self.value, self.combine):
            dense.build((None, None, self.units))

    def _split_heads(self, x: Any) -> Any:
        """[B, T, U] → [B, heads, T, U / heads]."""
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.heads, self.units // self.heads))
        return ops.transpose(x, (0, 2, 1, 3))

    def keys_values(self, memory: Any) -> tuple[Any, Any]:
        return self.key(memory), self.value(memory)

    def attend(self, inputs: Any, keys: Any, values: Any, visible: Any = None,
               training: Any = None) -> tuple[Any, Any]:
        """Output [B, T, U] and weights [B, heads, T, S]; `visible` [B or 1, T or 1, S] says
        which keys each query may see (all when None)."""
        return self._attend_projected(self.query(inputs), keys, values, visible, training)

    def self_attend(self, inputs: Any, visible: Any = None, training: Any = None
                    ) -> tuple[Any, Any]:
        """`call(inputs, inputs, …)` with the query, key and value projections as one matmul
        of their kernels side by side (model.fused_qkv): the same weights and math."""
        dense = (self.query, self.key, self.value)
        kernel = ops.concatenate([d.kernel for d in dense], axis=1)
        bias = ops.concatenate([d.bias for d in dense], axis=0)
        shape = ops.shape(inputs)
        flat = ops.matmul(ops.reshape(inputs, (-1, self.units)), kernel) + bias
        queries, keys, values = ops.split(
            ops.reshape(flat, (shape[0], shape[1], 3 * self.units)), 3, axis=-1)
        return self._attend_projected(queries, keys, values, visible, training)

    def _attend_projected(self, queries: Any, keys: Any, values: Any, visible: Any,
                          training: Any) -> tuple[Any, Any]:
        queries = self._split_heads(queries)
        scores = ops.matmul(queries, ops.transpose(self._split_heads(keys), (0, 1, 3, 2)))
        scores = scores / math.sqrt(self.units // self.heads)
        if visible is not None:
            scores = ops.where(visible[:, None], scores, ops.cast(_HIDDEN, scores.dtype))
        # tf's softmax: Keras's warns at every first decoding step, over one key.
        weights = tf.nn.softmax(scores, axis=-1)
        context = ops.matmul(self.weights_dropout(weights, training=training),
                             self._split_heads(values))
        shape = ops.shape(context)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)),
                              (shape[0], shape[2], self.units))
        return self.combine(context), weights

    def call(self, inputs: Any, memory: Any, visible: Any, training: Any = None
             ) -> tuple[Any, Any]:
        return self.attend(inputs, *self.keys_values(memory), visible, training=training)


class FeedForward(layers.Layer):
    def __init__(self, units: int, feedforward_dim: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.expand = seq2seq.SequenceDense(feedforward_dim, activation="relu", name="expand")
        self.contract = seq2seq.SequenceDense(units, name="contract")
        self.hidden_dropout = layers.Dropout(dropout)

    def build(self, inputs_shape: Any) -> None:
        self.expand.build((None, None, self.units))
        self.contract.build((None, None, self.expand.units))

    def call(self, inputs: Any, training: Any = None) -> Any:
        return self.contract(self.hidden_dropout(self.expand(inputs), training=training))


class _Block(layers.Layer):
    """Residual sublayers, each applied to the layer-normalised input."""

    def __init__(self, config: ModelConfig, sublayers: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.units = config.units
        self.norms = {name: layers.LayerNormalization(epsilon=1e-6, name=f"{name}_norm")
                      for name in sublayers}
        self.feedforward = FeedForward(config.units, config.feedforward_dim, config.dropout,
                                       name="feedforward")
        self.residual_dropout = layers.Dropout(config.dropout)

    def build(self, inputs_shape: Any) -> None:
        for sublayer in (*self.norms.values(), *self._attentions(), self.feedforward):
            sublayer.build((None, None, self.units))

    def get_config(self) -> dict[str, Any]:
        """The settings as plain values, so that the model's JSON (TensorBoard's summary) has them."""
        return {**super().get_config(), "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> _Block:
        return cls(ModelConfig(**config.pop("config")), **config)

    def _attentions(self) -> list[Attention]:
        return []

    def _self_attention(self, normed: Any, visible: Any, training: Any) -> tuple[Any, Any]:
        if self.config.fused_qkv:
            return self.self_attention.self_attend(normed, visible, training=training)
        return self.self_attention(normed, normed, visible, training=training)

    def _add(self, x: Any, update: Any, training: Any) -> Any:
        return x + self.residual_dropout(update, training=training)

    def _feedforward(self, x: Any, training: Any = None) -> Any:
        return self._add(x, self.feedforward(self.norms["feedforward"](x), training=training),
                         training)


class EncoderBlock(_Block):
    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        super().__init__(config, ["self_attention", "feedforward"], **kwargs)
        self.self_attention = Attention(config.units, config.heads, config.dropout,
                                        name="self_attention")

    def _attentions(self) -> list[Attention]:
        return [self.self_attention]

    def call(self, x: Any, source_visible: Any, training: Any = None) -> Any:
        normed = self.norms["self_attention"](x)
        attended, _ = self._self_attention(normed, source_visible[:, None, :], training)
        return self._feedforward(self._add(x, attended, training), training)


class DecoderBlock(_Block):
    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        super().__init__(config, ["self_attention", "cross_attention", "feedforward"],
                         **kwargs)
        self.self_attention = Attention(config.units, config.heads, config.dropout,
                                        name="self_attention")
        self.cross_attention = Attention(config.units, config.heads, config.dropout,
                                         name="cross_attention")

    def _attentions(self) -> list[Attention]:
        return [self.self_attention, self.cross_attention]

    def _cross_and_feedforward(self, x: Any, cross_keys: Any, cross_values: Any,
                               source_visible: Any, training: Any = None) -> tuple[Any, Any]:
        context, weights = self.cross_attention.attend(
            self.norms["cross_attention"](x), cross_keys, cross_values,
            source_visible[:, None, :], training=training)
        x = self._feedforward(self._add(x, context, training), training)
        return x, ops.mean(weights, axis=1)

    def call(self, x: Any, memory: Any, source_visible: Any, training: Any = None
             ) -> tuple[Any, Any]:
        """Teacher forcing over the whole target [B, T, U]: each position sees itself and
        the ones before it. Returns the output and the cross-attention [B, T, S]."""
        normed = self.norms["self_attention"](x)
        length = ops.shape(x)[1]
        causal = (ops.arange(length)[:, None] >= ops.arange(length)[None, :])[None]
        attended, _ = self._self_attention(normed, causal, training)
        return self._cross_and_feedforward(self._add(x, attended, training),
                                           *self.cross_attention.keys_values(memory),
                                           source_visible, training)

    def step(self, x: Any, cache: tuple[Any, Any], cross: tuple[Any, Any], source_visible: Any
             ) -> tuple[Any, tuple[Any, Any], Any]:
        """One position [B, 1, U] given the keys and values of the earlier ones [B, t, U]:
        the output, the cache with this position's keys and values added, and the
        cross-attention [B, 1, S]."""
        normed = self.norms["self_attention"](x)
        new_keys, new_values = self.self_attention.keys_values(normed)
        cache = (ops.concatenate([cache[0], new_keys], axis=1),
                 ops.concatenate([cache[1], new_values], axis=1))
        attended, _ = self.self_attention.attend(normed, *cache)
        x, weights = self._cross_and_feedforward(x + attended, *cross, source_visible)
        return x, cache, weights


class TransformerEncoderDecoder(seq2seq.EncoderDecoder):
    def __init__(self, trainer: keras.Model, encoder: keras.Model, units: int) -> None:
        super().__init__(trainer)
        # source_ids [B, S] -> the last encoder block's normalised output [B, S, U]
        self.encoder = encoder
        self.units = units
        self.target_embedding = trainer.get_layer("target_embedding")
        self.target_positions = trainer.get_layer("target_positions")
        self.decoder_blocks = [layer for layer in trainer.layers
                               if isinstance(layer, DecoderBlock)]
        self.decoder_norm = trainer.get_layer("decoder_norm")
        self.logits = trainer.get_layer("logits")

    def encode(self, source_ids: tf.Tensor) -> tuple[seq2seq.Memory, seq2seq.State]:
        memory = self.encoder(source_ids)
        cross = tuple(block.cross_attention.keys_values(memory) for block in self.decoder_blocks)
        empty = tf.zeros([tf.shape(source_ids)[0], 0, self.units], memory.dtype)
        state = tuple((empty, empty) for _ in self.decoder_blocks)
        return (cross, seq2seq.source_mask(source_ids)), state

    def step(self, token: tf.Tensor, state: seq2seq.State, memory: seq2seq.Memory
             ) -> tuple[tf.Tensor, seq2seq.State, tf.Tensor]:
        cross, source_visible = memory
        x = self.target_positions(self.target_embedding(token), start=tf.shape(state[0][0])[1])
        next_state = []
        for block, cache, block_cross in zip(self.decoder_blocks, state, cross, strict=True):
            x, next_cache, weights = block.step(x, cache, block_cross, source_visible)
            next_state.append(next_cache)
        logits = self.logits(self.decoder_norm(x))
        return logits[:, 0], tuple(next_state), weights[:, 0]


def build(config: ModelConfig, source_vocab_size: int, target_vocab_size: int
          ) -> TransformerEncoderDecoder:
    """Builds the encoder–decoder for the given vocabulary sizes (reserved ids included)."""
    source_embedding = layers.Embedding(source_vocab_size, config.units, name="source_embedding")
    target_embedding = layers.Embedding(target_vocab_size, config.units, name="target_embedding")
    encoder_blocks = [EncoderBlock(config, name=f"encoder_block_{i}") for i in range(config.layers)]
    decoder_blocks = [DecoderBlock(config, name=f"decoder_block_{i}") for i in range(config.layers)]
    encoder_norm = layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")
    decoder_norm = layers.LayerNormalization(epsilon=1e-6, name="decoder_norm")
    logits_layer = seq2seq.logits_layer(config, target_embedding)

    source_ids = keras.Input(shape=(None,), dtype="int64", name=seq2seq.SOURCE_INPUT)
    target_in = keras.Input(shape=(None,), dtype="int64", name=seq2seq.TARGET_INPUT)
    source_visible = seq2seq.source_mask(source_ids)
    x = layers.Dropout(config.dropout, name="source_dropout")(
        AddPositions(name="source_positions")(source_embedding(source_ids)))
    for block in encoder_blocks:
        x = block(x, source_visible)
    memory = encoder_norm(x)
    y = layers.Dropout(config.dropout, name="target_dropout")(
        AddPositions(name="target_positions")(target_embedding(target_in)))
    for block in decoder_blocks:
        y, _ = block(y, memory, source_visible)
    logits = logits_layer(decoder_norm(y))
    trainer = keras.Model({seq2seq.SOURCE_INPUT: source_ids, seq2seq.TARGET_INPUT: target_in},
                          logits, name="transformer")
    encoder = keras.Model(source_ids, memory, name="encoder")
    return TransformerEncoderDecoder(trainer, encoder, config.units)
