"""TFX Trainer entry point: trains the encoder–decoder and keeps its weights.

Named by dotted path (`enja.models.training.trainer.run_fn`) so TFX runs the installed
package instead of packaging a module file. It reads only the `model` and `training`
groups and writes only the warm-start state (models/training/warm_start_state.py); the
ServingExport component builds the serving SavedModel from that state, so decoding
settings change without training again.

It trains under the `tf.distribute` strategy its environment calls for
(models/training/distribution.py): one device, several local GPUs, or the workers TF_CONFIG
names. `training.batch_size` is the global batch, which the strategy splits across the
replicas, so every training setting, the learning rate first, means what it means on one
device, and a run on several replicas takes the steps a run on one would.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from enja.models.architectures import registry, seq2seq
from enja.models.config import ModelConfig, TrainingConfig
from enja.models.training import (
    distribution,
    epoch_bleu,
    length_buckets,
    progress,
    training_clock,
    training_summary,
    warm_start,
    warm_start_state,
)
from enja.preprocessing import features, transform


def teacher_forcing_pair(batch: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Transformed features → model inputs (target shifted right) and labels."""
    target = batch[features.TARGET_IDS_KEY]
    inputs = {seq2seq.SOURCE_INPUT: batch[features.SOURCE_IDS_KEY],
              seq2seq.TARGET_INPUT: target[:, :-1]}
    return inputs, target[:, 1:]


# Examples per read from the transformed TFRecords; independent of the training batch.
READ_BATCH_SIZE = 1024


def _sharded_by_data(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` for tf.distribute to shard by data: each worker reads every file and keeps
    its replicas' parts of each global batch (AutoShardPolicy.DATA; one device ignores it).

    Not by file: Transform may write fewer files than there are workers, and a worker
    shuffling only its own files would train on other global batches than one device.
    Reading the whole corpus costs each worker little: it is read once and cached, and
    the seeded shuffle gives every worker the same order, so each example is trained on
    once an epoch, by one replica.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return batches.with_options(options)


def teacher_forcing_batches(files: list[str], data_accessor: DataAccessor,
                            tf_transform_output: tft.TFTransformOutput, training: TrainingConfig,
                            shuffle: bool, bucket: bool) -> tf.data.Dataset:
    """Transformed examples as (inputs, labels) global batches for teacher forcing, one epoch.

    With `training.cache_examples` the examples are read and parsed once and replayed
    from memory every epoch, so the shuffle can draw from the whole corpus, reshuffled
    each epoch, without re-reading the files.
    """
    examples = data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=READ_BATCH_SIZE, num_epochs=1, shuffle=False),
        tf_transform_output.transformed_metadata.schema).unbatch()
    if training.cache_examples:
        examples = examples.cache()
    if shuffle:
        examples = examples.shuffle(training.shuffle_buffer_size, seed=training.seed,
                                    reshuffle_each_iteration=True)
    batches = (length_buckets.bucket_by_length(examples, training.batch_size) if bucket
               else examples.batch(training.batch_size))
    return _sharded_by_data(batches.map(teacher_forcing_pair,
                                        num_parallel_calls=tf.data.AUTOTUNE)
                            .prefetch(tf.data.AUTOTUNE))


def learning_rate(training: TrainingConfig, epoch: int) -> float:
    """The learning rate of a (0-based) epoch under the configured schedule."""
    if training.learning_rate_schedule == "constant":
        return training.learning_rate
    return training.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / training.epochs))  # cosine


class WarmupAndSchedule(keras.callbacks.Callback):
    """Sets each step's learning rate: its epoch's rate under the schedule, scaled up
    linearly over the first `training.warmup_steps` steps of the run."""

    def __init__(self, training: TrainingConfig) -> None:
        super().__init__()
        self._training = training
        self._epoch_rate = training.learning_rate
        self._steps = 0

    def _set(self, rate: float) -> None:
        self.model.optimizer.learning_rate = rate

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_rate = learning_rate(self._training, epoch)
        self._set(self._epoch_rate)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._steps < self._training.warmup_steps:
            self._steps += 1
            self._set(self._epoch_rate * self._steps / self._training.warmup_steps)


def _callbacks(training: TrainingConfig, log_dir: str, clock: training_clock.TrainingClock,
               dev_bleu: epoch_bleu.EpochBleu, shown: progress.EpochProgress
               ) -> list[keras.callbacks.Callback]:
    # With weight averaging the averaged weights are swapped in before validation and
    # kept in for the epoch-end callbacks that follow (dev BLEU, early stopping's best
    # weights), and they are what training leaves in the model.
    averaging = ([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]
                 if training.weight_averaging else [])
    # The clock stops before validation and the BLEU pass; TensorBoard and the progress line
    # show val_bleu too.
    callbacks: list[keras.callbacks.Callback] = [
        *averaging, clock, dev_bleu, shown, keras.callbacks.TensorBoard(log_dir=log_dir),
        WarmupAndSchedule(training)]
    if training.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=training.early_stopping_patience,
            restore_best_weights=True, verbose=1))
    return callbacks


def label_length(tf_transform_output: tft.TFTransformOutput) -> int:
    """Steps of a label: Transform's longest target and its </s>.

    The dev BLEU decodes at most this many steps, enough for any reference in full. It
    is the Trainer's own measure: the serving decoding settings belong to ServingExport
    and stay out of the Trainer's custom_config, so changing them does not retrain.
    """
    return tf_transform_output.transformed_feature_spec()[features.TARGET_IDS_KEY].shape[0] - 1


def _train(model: seq2seq.EncoderDecoder, training: TrainingConfig, train_data: tf.data.Dataset,
           eval_data: tf.data.Dataset, target_vocabulary: list[bytes], max_output_length: int,
           model_run_dir: str) -> dict[str, Any]:
    """Fits the teacher-forcing model and returns the training summary of the run.

    A first pass over the data counts its batches (and fills the example cache, which the
    first epoch would do): with the count, the progress line knows each epoch's length, and
    Keras knows where the data ends.
    """
    batches, tokens = training_clock.count_batches_and_tokens(train_data)
    train_data = train_data.apply(tf.data.experimental.assert_cardinality(batches))
    eval_batches, _ = training_clock.count_batches_and_tokens(eval_data)
    eval_data = eval_data.apply(tf.data.experimental.assert_cardinality(eval_batches))
    clock = training_clock.TrainingClock()
    dev_bleu = epoch_bleu.EpochBleu(model, eval_data, target_vocabulary, max_output_length)
    shown = progress.EpochProgress(training.epochs, batches, progress.ProgressLine())
    history = model.trainer.fit(
        train_data, validation_data=eval_data, epochs=training.epochs,
        callbacks=_callbacks(training, model_run_dir, clock, dev_bleu, shown), verbose=0)
    return training_clock.summarize(history, clock, tokens,
                                    kept_best=training.early_stopping_patience > 0)


def _keep(start: warm_start.Start, state: warm_start_state.State, fn_args: FnArgs,
          strategy: tf.distribute.Strategy) -> None:
    """Writes the base model's state as this run's model, and its training summary with
    this start: a run that trained nothing reports the training of the weights it serves."""
    print(start.log_line())
    with (distribution.worker_dir(fn_args.model_run_dir, strategy) as model_run_dir,
          distribution.worker_dir(fn_args.serving_model_dir, strategy) as serving_model_dir):
        training_summary.write({**state.training["summary"], "start": start.as_json()},
                               model_run_dir)
        warm_start_state.save_state(warm_start_state.state_dir(serving_model_dir), state)
        tf.io.gfile.makedirs(serving_model_dir)


def run_fn(fn_args: FnArgs) -> None:
    """Trains — warm-started from the model in production when it can — and keeps the weights;
    or keeps the base model's weights when they were trained from this run's very inputs.

    On a cluster every worker runs all of it, in step; only the chief writes into the
    output paths, the others write into temporary directories they remove (see
    models/training/distribution.py). The state goes where models/training/warm_start_state.py puts it,
    beside `fn_args.serving_model_dir`, which is created last and stays empty: TFX's
    Trainer fails unless run_fn creates it, and the SavedModel is ServingExport's.
    """
    strategy = distribution.strategy_from_environment()  # before any other TensorFlow op
    custom_config: dict[str, Any] = fn_args.custom_config
    model_config = ModelConfig(**custom_config["model"])
    training = TrainingConfig(**custom_config["training"])
    inputs = warm_start.training_inputs(fn_args.train_files, fn_args.eval_files,
                                        fn_args.transform_output, model_config, training)
    base_model = warm_start.base_model_dir(fn_args.base_model)
    reusable = warm_start.reusable_state(base_model, inputs)
    if reusable:
        _keep(*reusable, fn_args, strategy)
        return
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    vocabularies = warm_start_state.Vocabularies.of(tf_transform_output)
    keras.utils.set_random_seed(training.seed)
    keras.mixed_precision.set_global_policy(training.precision)

    with strategy.scope():  # the model's and the optimizer's variables, on every replica
        model = registry.build(model_config, *transform.vocabulary_sizes(tf_transform_output))
        start = warm_start.start_model(model.trainer, model_config, training,
                                       base_model, vocabularies)
        training = warm_start.training_for(training, start)  # a warm start's epochs and rate
        seq2seq.compile_model(model.trainer, training)
    print(start.log_line())
    train_data = teacher_forcing_batches(fn_args.train_files, fn_args.data_accessor,
                                         tf_transform_output, training, shuffle=True,
                                         bucket=training.bucket_by_length)
    eval_data = teacher_forcing_batches(fn_args.eval_files, fn_args.data_accessor,
                                        tf_transform_output, training, shuffle=False, bucket=False)
    with (distribution.worker_dir(fn_args.model_run_dir, strategy) as model_run_dir,
          distribution.worker_dir(fn_args.serving_model_dir, strategy) as serving_model_dir):
        summary = _train(model, training, train_data, eval_data, vocabularies.target,
                         label_length(tf_transform_output), model_run_dir)
        summary = {**summary, "start": start.as_json()}
        training_summary.write(summary, model_run_dir)
        print(f"Kept epoch {summary['kept_epoch']} of {summary['epochs_run']}; "
              f"{summary['tokens_per_second']:.0f} tokens/s in training.")

        warm_start_state.save(warm_start_state.state_dir(serving_model_dir), model.trainer,
                              model_config, vocabularies, {"inputs": inputs, "summary": summary})
        tf.io.gfile.makedirs(serving_model_dir)
