"""Whether TensorFlow's fused LSTM kernel would speed up the default LSTM's recurrence (issue #24).

    .venv/bin/python bench/fused_lstm.py --rounds 5 --seconds 2

Times one LSTM layer's forward and backward pass (the gradient of the sum of its outputs with
respect to its weights) at the default preset's shapes, for Keras's LSTM (its loop,
`backend.rnn`), the project's ProjectedLSTM (`model.project_inputs_once`) and TensorFlow's
CPU kernel over the whole sequence, `BlockLSTMV2` with its registered gradient, which fuses each
step's gates into one op. Batch 32, 16 source positions at 192 units a direction (the
bidirectional encoder's), 17 target positions at 384 units (the decoder's), embeddings of 256.
The variants alternate round after round; the medians are printed. The kernel has no mask, so
the speed it offers is an upper bound on what a layer handling padding by lengths would give.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from tensorflow.python.ops import rnn_grad  # noqa: F401  (registers BlockLSTMV2's gradient)

from enja.models.architectures.lstm import ProjectedLSTM

BATCH, EMBEDDING = 32, 256
SHAPES = {"encoder": (16, 192), "decoder": (17, 384)}  # (positions, units)


def keras_step(layer_class: type[keras.layers.LSTM], inputs: tf.Tensor, units: int) -> Callable[[], object]:
    layer = layer_class(units, return_sequences=True)
    layer(inputs)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs))
        return tape.gradient(loss, layer.trainable_variables)
    return step


def block_lstm_step(inputs: tf.Tensor, units: int) -> Callable[[], object]:
    """BlockLSTMV2 multiplies [x, h] by one kernel [E + U, 4U] a step, the gates fused."""
    kernel = tf.Variable(tf.random.normal([EMBEDDING + units, 4 * units], stddev=0.05))
    bias = tf.Variable(tf.zeros([4 * units]))
    zeros, no_peephole = tf.zeros([BATCH, units]), tf.zeros([units])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = tf.raw_ops.BlockLSTMV2(
                seq_len_max=tf.constant(inputs.shape[1], tf.int64), x=tf.transpose(inputs, [1, 0, 2]),
                cs_prev=zeros, h_prev=zeros, w=kernel, wci=no_peephole, wcf=no_peephole,
                wco=no_peephole, b=bias, cell_clip=0.0, use_peephole=False)
            loss = tf.reduce_sum(outputs[6])  # h of every step
        return tape.gradient(loss, [kernel, bias])
    return step


def seconds_a_step(step: Callable[[], object], seconds: float) -> float:
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="of steps per variant and round")
    args = parser.parse_args()
    for part, (positions, units) in SHAPES.items():
        inputs = tf.random.normal([BATCH, positions, EMBEDDING])
        variants = {"keras LSTM": keras_step(keras.layers.LSTM, inputs, units),
                    "ProjectedLSTM": keras_step(ProjectedLSTM, inputs, units),
                    "BlockLSTMV2": block_lstm_step(inputs, units)}
        for step in variants.values():
            step()  # traces
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, step in variants.items():
                times[name].append(seconds_a_step(step, args.seconds))
        base = statistics.median(times["keras LSTM"])
        for name, measured in times.items():
            median = statistics.median(measured)
            print(f"{part} ({positions} positions, {units} units): {name}: "
                  f"{median * 1000:.1f} ms a step (median of {args.rounds}; "
                  f"best {min(measured) * 1000:.1f}), {base / median:.2f}× keras LSTM")


if __name__ == "__main__":
    main()
