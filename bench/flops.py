"""Matmul FLOPs of a training step, counted from a model's shapes, and this CPU's peak.

A step's FLOPs are three times its forward matmuls' (the backward pass multiplies twice as
much: into the inputs and into the weights), counted over the padded batch as the model
computes it. Element-wise work (activations, softmax, layer norm) is left out: on these
sizes it is a few per cent of the matmuls, and it is the matmuls the peak is about.
"""
import time

import tensorflow as tf

from enja.models.config import ModelConfig

_PEAK_SIZE = 2048


def _matmul(rows: int, inner: int, columns: int) -> int:
    return 2 * rows * inner * columns


def _lstm_forward(config: ModelConfig, batch: int, source: int, target: int, vocab: int) -> int:
    e, u = config.embedding_dim, config.units
    if config.bidirectional:  # two directions of u/2: input and recurrent kernels, 4 gates
        encoder = 2 * _matmul(batch * source, e + u // 2, 4 * (u // 2))
    else:
        encoder = _matmul(batch * source, e + u, 4 * u)
    decoder = _matmul(batch * target, e + u, 4 * u)
    if config.attention != "none":  # scores and context, then [output; context] → units
        decoder += 2 * _matmul(batch * target, u, source) + _matmul(batch * target, 2 * u, u)
        if config.attention == "bahdanau":  # its query and key projections
            decoder += _matmul(batch * (source + target), u, u)
    return encoder + decoder + _matmul(batch * target, u, vocab)


def _transformer_forward(config: ModelConfig, batch: int, source: int, target: int,
                         vocab: int) -> int:
    u, f = config.units, config.feedforward_dim

    def block(queries: int, keys: int, attentions: int) -> int:
        projections = attentions * 4 * _matmul(batch * queries, u, u)
        if attentions == 2:  # cross-attention projects the source's keys and values
            projections += 2 * _matmul(batch * keys, u, u) - 2 * _matmul(batch * queries, u, u)
        scores = sum(2 * _matmul(batch * queries, u, length)
                     for length in ([queries] if attentions == 1 else [target, keys]))
        return projections + scores + 2 * _matmul(batch * queries, u, f)

    layers = config.layers
    return (layers * block(source, source, 1) + layers * block(target, source, 2)
            + _matmul(batch * target, u, vocab))


def training_flops(config: ModelConfig, batch: int, source: int, target: int, vocab: int) -> int:
    """Matmul FLOPs of one training step on a [batch, source] → [batch, target] batch."""
    forward = (_transformer_forward if config.architecture == "transformer"
               else _lstm_forward)(config, batch, source, target, vocab)
    return 3 * forward


def peak_matmul_flops(dtype: str, seconds: float = 2.0) -> float:
    """FLOP/s of repeated square matmuls of `dtype` ("float32" or "bfloat16") here."""
    a = tf.random.normal([_PEAK_SIZE, _PEAK_SIZE], dtype=tf.float32)
    a = tf.cast(a, dtype)
    multiply = tf.function(lambda x: tf.matmul(x, x))
    multiply(a).numpy()  # trace and warm up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        multiply(a).numpy()
        runs += 1
    return runs * _matmul(_PEAK_SIZE, _PEAK_SIZE, _PEAK_SIZE) / (time.perf_counter() - start)
