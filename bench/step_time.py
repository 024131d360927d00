"""Seconds and FLOP/s per training step of a preset's model on a synthetic batch, beside
this CPU's measured matmul peak.

    .venv/bin/python bench/step_time.py                      # the default preset's model
    .venv/bin/python bench/step_time.py --preset transformer
    .venv/bin/python bench/step_time.py --set training.precision=mixed_bfloat16
    .venv/bin/python bench/step_time.py --keras-dense        # Keras Dense on sequences instead
    .venv/bin/python bench/step_time.py --set model.attention=none --set training.batch_size=128

One batch of the default shape is fitted repeatedly, so only the model's step is timed:
the preset's batch size, 16 source and 17 target positions with random lengths, and
vocabularies of 4,109 and 4,906 ids (the default run's 4,105 English and 4,902 Japanese
tokens plus the 4 reserved ids). Prints wall and process CPU seconds per step, wall
milliseconds per sentence (to compare batch sizes; on a shared VM the wall time is noisy,
the CPU time less so), the step's matmul FLOPs counted from the model's shapes
(`bench/flops.py`), the FLOP/s that achieves, and the peak a large square matmul reaches
here in float32 and bfloat16.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from enja.models.architectures import registry, seq2seq
from enja.pipeline import configs
from enja.pipeline.cli import arguments
from enja.preprocessing import features
from flops import peak_matmul_flops, training_flops

SOURCE_LENGTH, TARGET_LENGTH = 16, 17
WARMUP_STEPS = 3


def random_ids(rng: np.random.Generator, batch: int, vocab_size: int, length: int) -> np.ndarray:
    ids = rng.integers(features.NUM_RESERVED, vocab_size, size=(batch, length))
    lengths = rng.integers(5, length + 1, size=(batch, 1))
    ids[np.arange(length)[None, :] >= lengths] = features.PAD_ID
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=configs.DEFAULT_PRESET, choices=sorted(configs.PRESETS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--source-vocab", type=int, default=4109)
    parser.add_argument("--target-vocab", type=int, default=4906)
    parser.add_argument("--keras-dense", action="store_true",
                        help="Keras Dense on [batch, time, units] instead of SequenceDense")
    arguments.add_settings_argument(parser)
    args = parser.parse_args()
    config = configs.with_overrides(configs.PRESETS[args.preset], args.settings)
    keras.mixed_precision.set_global_policy(config.training.precision)
    if args.keras_dense:
        seq2seq.SequenceDense = keras.layers.Dense
    model = registry.build(config.model, args.source_vocab, args.target_vocab)
    seq2seq.compile_model(model.trainer, config.training)
    batch_size = config.training.batch_size
    rng = np.random.default_rng(0)
    target = random_ids(rng, batch_size, args.target_vocab, TARGET_LENGTH)
    source = random_ids(rng, batch_size, args.source_vocab, SOURCE_LENGTH)
    batch = ({seq2seq.SOURCE_INPUT: source,
              seq2seq.TARGET_INPUT: target[:, :-1]}, target[:, 1:])
    data = tf.data.Dataset.from_tensors(batch).cache()
    model.trainer.fit(data.repeat(WARMUP_STEPS), verbose=0)
    wall, cpu = time.perf_counter(), time.process_time()
    model.trainer.fit(data.repeat(args.steps), verbose=0)
    wall_per_step = (time.perf_counter() - wall) / args.steps
    step_flops = training_flops(config.model, batch_size, SOURCE_LENGTH, TARGET_LENGTH - 1,
                                args.target_vocab)
    print(json.dumps({
        "preset": args.preset, "settings": args.settings, "keras_dense": args.keras_dense,
        "batch_size": batch_size,
        "wall_s_per_step": round(wall_per_step, 3),
        "cpu_s_per_step": round((time.process_time() - cpu) / args.steps, 3),
        "wall_ms_per_sentence": round(1000 * wall_per_step / batch_size, 2),
        "gflop_per_step": round(step_flops / 1e9, 2),
        "achieved_gflop_s": round(step_flops / wall_per_step / 1e9, 1),
        "peak_gflop_s": {dtype: round(peak_matmul_flops(dtype) / 1e9, 1)
                         for dtype in ("float32", "bfloat16")},
    }))


if __name__ == "__main__":
    main()
