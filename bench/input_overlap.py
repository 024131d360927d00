"""Is the Trainer's input pipeline ever what a training step waits on? (issue #24, lever 5)

    .venv/bin/python bench/input_overlap.py                       # the default LSTM
    .venv/bin/python bench/input_overlap.py --set training.jit_compile=true --rounds 5

Writes a synthetic corpus of transformed examples (random en_ids [16] and ja_ids [18] of
random lengths, GZIP TFRecords as Transform writes them) and reads it with the Trainer's
own `teacher_forcing_batches` (tfx_bsl's reader, the in-memory cache, the whole-corpus
shuffle, batching, the teacher-forcing map, prefetch). Interleaved over several rounds it
times: the input alone (batches a second, after the first pass filled the cache), `fit`
over the Trainer's input, and `fit` over one batch replayed from memory (the step alone,
as bench/step_levers.py measures it). When the two fits take the same time a step, the
input overlaps the step and costs nothing; the input alone shows the margin. Each `fit`
starts a fresh iterator, whose shuffle first fills its 50,000-example buffer (about 0.6 s,
once an epoch in the Trainer), so the timed fits need enough steps (--steps) to amortise it.
"""
import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from enja.models.architectures import registry, seq2seq
from enja.models.training import trainer
from enja.pipeline import configs
from enja.pipeline.cli import arguments
from enja.preprocessing import features

SOURCE_LENGTH, TARGET_LENGTH = 16, 18
SOURCE_VOCAB, TARGET_VOCAB = 4109, 4906


class _TransformOutput:
    """What teacher_forcing_batches reads of a TFTransformOutput: the transformed schema."""

    class transformed_metadata:  # noqa: N801
        schema = schema_utils.schema_from_feature_spec({
            features.SOURCE_IDS_KEY: tf.io.FixedLenFeature([SOURCE_LENGTH], tf.int64),
            features.TARGET_IDS_KEY: tf.io.FixedLenFeature([TARGET_LENGTH], tf.int64)})


def write_corpus(path: str, count: int) -> None:
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for _ in range(count):
            example = tf.train.Example()
            for key, length, vocab in ((features.SOURCE_IDS_KEY, SOURCE_LENGTH, SOURCE_VOCAB),
                                       (features.TARGET_IDS_KEY, TARGET_LENGTH, TARGET_VOCAB)):
                ids = np.zeros(length, np.int64)
                real = rng.integers(3, length + 1)
                ids[:real] = rng.integers(features.NUM_RESERVED, vocab, size=real)
                example.features.feature[key].int64_list.value.extend(ids.tolist())
            writer.write(example.SerializeToString())


def data_accessor() -> tfx.components.DataAccessor:
    def tf_dataset_factory(files, options, schema):
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)
    return tfx.components.DataAccessor(tf_dataset_factory=tf_dataset_factory,
                                       record_batch_factory=None, data_view_decode_fn=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=configs.DEFAULT_PRESET, choices=sorted(configs.PRESETS))
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=150, help="steps a timed fit")
    parser.add_argument("--rounds", type=int, default=5)
    arguments.add_settings_argument(parser)
    args = parser.parse_args()
    config = configs.with_overrides(configs.PRESETS[args.preset], args.settings)
    training = config.training
    path = os.path.join(tempfile.mkdtemp(), "train.gz")
    write_corpus(path, args.examples)
    real = trainer.teacher_forcing_batches([path], data_accessor(), _TransformOutput(), training,
                                           shuffle=True, bucket=False)
    batches = sum(1 for _ in real)  # the first epoch: fills the cache
    keras.utils.set_random_seed(training.seed)
    model = registry.build(config.model, SOURCE_VOCAB, TARGET_VOCAB)
    seq2seq.compile_model(model.trainer, training)
    replayed = real.take(1).cache()
    schedule = trainer.WarmupAndSchedule(training)
    model.trainer.fit(real.take(3), verbose=0, callbacks=[schedule])

    def fit(data: tf.data.Dataset) -> float:
        start = time.perf_counter()
        model.trainer.fit(data, verbose=0, callbacks=[schedule])
        return (time.perf_counter() - start) / args.steps

    def input_alone() -> float:
        start, count = time.perf_counter(), 0
        for _ in real:
            count += 1
        return count / (time.perf_counter() - start)

    results = {"input alone (batches/s)": [], "fit, Trainer input (s/step)": [],
               "fit, one batch replayed (s/step)": []}
    for _ in range(args.rounds):
        results["input alone (batches/s)"].append(input_alone())
        results["fit, Trainer input (s/step)"].append(fit(real.take(args.steps)))
        results["fit, one batch replayed (s/step)"].append(fit(replayed.repeat(args.steps)))
    print(f"{batches} batches of {training.batch_size} an epoch; settings {args.settings}; "
          f"medians of {args.rounds} interleaved rounds")
    print("| measure | median | range |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.4f} | {min(values):.4f}–{max(values):.4f} |")


if __name__ == "__main__":
    main()
