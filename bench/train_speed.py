"""Trainer throughput against a plain Keras loop on the same model and data.

    .venv/bin/python bench/train_speed.py --output-dir pipeline_output --preset default
    .venv/bin/python bench/train_speed.py --set training.bucket_by_length=true

Reads a finished run's transformed examples and the Trainer's training_summary.json and
prints three rates in tokens/second (non-padding source tokens plus target labels): the
Trainer's own, a plain `model.fit` of the preset's model for one epoch over the Trainer's
input pipeline (`enja.models.training.trainer.teacher_forcing_batches`, its cache filled first, read
with tfx_bsl as TFX reads it), and the same `fit` for --steps steps over a plain cached
tf.data pipeline (TFRecords → parse → batch, no TFX). The first two differ by what TFX
adds; the last two by what the input pipeline costs beyond replaying fixed batches.
"""
import argparse
import glob
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from enja.models.architectures import registry, seq2seq
from enja.models.training import length_buckets, trainer, training_clock, training_summary
from enja.pipeline import configs
from enja.pipeline.cli import arguments
from enja.preprocessing import transform
from pipeline_runs import latest_output

WARMUP_STEPS = 5


def train_files(output_dir: str) -> list[str]:
    return glob.glob(os.path.join(latest_output(output_dir, "Transform", "transformed_examples"),
                                  "Split-train", "*"))


def example_data_accessor() -> tfx.components.DataAccessor:
    """Reads tf.Example TFRecords with tfx_bsl, as the accessor TFX hands the Trainer does."""
    def tf_dataset_factory(files, options, schema):
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)
    return tfx.components.DataAccessor(tf_dataset_factory=tf_dataset_factory,
                                       record_batch_factory=None, data_view_decode_fn=None)


def timed_fit(config: configs.PipelineConfig, transform_output: tft.TFTransformOutput,
              warmup: tf.data.Dataset, timed: tf.data.Dataset) -> float:
    """Seconds of one `fit` pass over `timed`, after a fresh model has fitted `warmup`."""
    keras.utils.set_random_seed(config.training.seed)
    model = registry.build(config.model, *transform.vocabulary_sizes(transform_output))
    seq2seq.compile_model(model.trainer, config.training)
    model.trainer.fit(warmup, verbose=0)
    start = time.perf_counter()
    model.trainer.fit(timed, verbose=0)
    return time.perf_counter() - start


def trainer_input_tokens_per_second(output_dir: str, config: configs.PipelineConfig,
                                    transform_output: tft.TFTransformOutput) -> float:
    data = trainer.teacher_forcing_batches(train_files(output_dir), example_data_accessor(),
                                           transform_output, config.training, shuffle=True,
                                           bucket=config.training.bucket_by_length)
    _, tokens = training_clock.count_batches_and_tokens(data)  # one pass, as the first epoch: fills the cache
    return tokens / timed_fit(config, transform_output, data.take(WARMUP_STEPS), data)


def plain_dataset(output_dir: str, transform_output: tft.TFTransformOutput,
                  batch_size: int, bucket: bool) -> tf.data.Dataset:
    files = train_files(output_dir)
    spec = transform_output.transformed_feature_spec()
    batches = (tf.data.TFRecordDataset(files, compression_type="GZIP")
               .shuffle(10_000, seed=0)
               .batch(batch_size)
               .map(lambda records: tf.io.parse_example(records, spec),
                    num_parallel_calls=tf.data.AUTOTUNE))
    if bucket:
        batches = length_buckets.bucket_by_length(batches.unbatch(), batch_size)
    return (batches.map(trainer.teacher_forcing_pair, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def plain_keras_tokens_per_second(output_dir: str, config: configs.PipelineConfig,
                                  transform_output: tft.TFTransformOutput, steps: int) -> float:
    data = plain_dataset(output_dir, transform_output, config.training.batch_size,
                         config.training.bucket_by_length).repeat()
    timed = data.skip(WARMUP_STEPS).take(steps).cache()
    _, tokens = training_clock.count_batches_and_tokens(timed)  # also fills the cache: reading is not timed
    return tokens / timed_fit(config, transform_output, data.take(WARMUP_STEPS), timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="pipeline_output")
    parser.add_argument("--preset", default=configs.DEFAULT_PRESET, choices=sorted(configs.PRESETS))
    parser.add_argument("--steps", type=int, default=100)
    arguments.add_settings_argument(parser)
    args = parser.parse_args()
    config = configs.with_overrides(configs.PRESETS[args.preset], args.settings)
    summary = training_summary.read(latest_output(args.output_dir, "Trainer", "model_run"))
    transform_output = tft.TFTransformOutput(
        latest_output(args.output_dir, "Transform", "transform_graph"))
    trainer_input = trainer_input_tokens_per_second(args.output_dir, config, transform_output)
    plain = plain_keras_tokens_per_second(args.output_dir, config, transform_output, args.steps)
    print("| training loop | tokens/s |")
    print("|---|---|")
    print(f"| TFX Trainer ({summary['epochs_run']} epochs, validation excluded) "
          f"| {summary['tokens_per_second']:.0f} |")
    bucketing = "by length" if config.training.bucket_by_length else "fully padded"
    print(f"| plain Keras `fit`, the Trainer's input pipeline, {bucketing} (one epoch) "
          f"| {trainer_input:.0f} |")
    print(f"| plain Keras `fit`, cached tf.data, {bucketing} ({args.steps} steps) | {plain:.0f} |")


if __name__ == "__main__":
    main()
