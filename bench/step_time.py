"""Seconds per training step of the default model on a synthetic batch, per variant.

    .venv/bin/python bench/step_time.py                      # the model as the Trainer builds it
    .venv/bin/python bench/step_time.py --keras-dense        # Keras Dense on sequences instead
    .venv/bin/python bench/step_time.py --mixed-bfloat16     # Keras mixed precision, bfloat16
    .venv/bin/python bench/step_time.py --attention none
    .venv/bin/python bench/step_time.py --batch-size 128

One batch of the default shape is fitted repeatedly, so only the model's step is timed:
the default batch size, 16 source and 17 target positions with random lengths, and vocabularies
of 4,109 and 4,906 ids (the default run's 4,105 English and 4,902 Japanese tokens plus
the 4 reserved ids). Prints wall and process CPU seconds per step, and wall milliseconds
per sentence to compare batch sizes: on a shared VM the wall time is noisy, the CPU time
less so.
"""
import argparse
import dataclasses
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from enja.models import seq2seq  # noqa: E402
from enja.models.config import ModelConfig, TrainingConfig  # noqa: E402
from enja.preprocessing import features  # noqa: E402

SOURCE_LENGTH, TARGET_LENGTH = 16, 17
WARMUP_STEPS = 3


def random_ids(rng: np.random.Generator, batch: int, vocab_size: int, length: int) -> np.ndarray:
    ids = rng.integers(features.NUM_RESERVED, vocab_size, size=(batch, length))
    lengths = rng.integers(5, length + 1, size=(batch, 1))
    ids[np.arange(length)[None, :] >= lengths] = features.PAD_ID
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--attention", default=ModelConfig().attention)
    parser.add_argument("--units", type=int, default=ModelConfig().units)
    parser.add_argument("--batch-size", type=int, default=TrainingConfig().batch_size)
    parser.add_argument("--source-vocab", type=int, default=4109)
    parser.add_argument("--target-vocab", type=int, default=4906)
    parser.add_argument("--keras-dense", action="store_true",
                        help="Keras Dense on [batch, time, units] instead of SequenceDense")
    parser.add_argument("--mixed-bfloat16", action="store_true")
    args = parser.parse_args()
    if args.mixed_bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if args.keras_dense:
        seq2seq.SequenceDense = keras.layers.Dense
    model_config = dataclasses.replace(ModelConfig(), attention=args.attention,
                                       units=args.units)
    model = seq2seq.build(model_config, args.source_vocab, args.target_vocab)
    seq2seq.compile_model(model.trainer, TrainingConfig())
    rng = np.random.default_rng(0)
    target = random_ids(rng, args.batch_size, args.target_vocab, TARGET_LENGTH)
    source = random_ids(rng, args.batch_size, args.source_vocab, SOURCE_LENGTH)
    batch = ({seq2seq.SOURCE_INPUT: source,
              seq2seq.TARGET_INPUT: target[:, :-1]}, target[:, 1:])
    data = tf.data.Dataset.from_tensors(batch).cache()
    model.trainer.fit(data.repeat(WARMUP_STEPS), verbose=0)
    wall, cpu = time.perf_counter(), time.process_time()
    model.trainer.fit(data.repeat(args.steps), verbose=0)
    wall_per_step = (time.perf_counter() - wall) / args.steps
    print(json.dumps({
        **{name: value for name, value in vars(args).items() if name != "steps"},
        "wall_s_per_step": round(wall_per_step, 3),
        "cpu_s_per_step": round((time.process_time() - cpu) / args.steps, 3),
        "wall_ms_per_sentence": round(1000 * wall_per_step / args.batch_size, 2),
    }))


if __name__ == "__main__":
    main()
