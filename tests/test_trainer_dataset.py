"""The Trainer's input: every example once an epoch, reshuffled, read from disk only once."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from enja.models.architectures import seq2seq
from enja.models.config import TrainingConfig
from enja.models.training import trainer
from enja.preprocessing import features
from support.corpus import tfrecord_data_accessor

NUM_EXAMPLES = 40
BATCH_SIZE = 16


@pytest.fixture
def transformed_examples(transform_output_dir, tmp_path) -> tuple[str, tft.TFTransformOutput]:
    """NUM_EXAMPLES transformed examples whose first source id numbers them."""
    output = tft.TFTransformOutput(transform_output_dir)
    spec = output.transformed_feature_spec()
    path = str(tmp_path / "transformed_examples.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for number in range(NUM_EXAMPLES):
            example = tf.train.Example()
            for key in (features.SOURCE_IDS_KEY, features.TARGET_IDS_KEY):
                ids = np.zeros(spec[key].shape, np.int64)
                ids[:2] = [number + features.NUM_RESERVED, features.NUM_RESERVED]
                example.features.feature[key].int64_list.value.extend(ids)
            writer.write(example.SerializeToString())
    return path, output


def _epoch(dataset: tf.data.Dataset) -> list[int]:
    """The example numbers of one pass, in order; checks each batch's size."""
    numbers: list[int] = []
    for inputs, _labels in dataset.as_numpy_iterator():
        assert len(inputs[seq2seq.SOURCE_INPUT]) <= BATCH_SIZE
        numbers.extend(inputs[seq2seq.SOURCE_INPUT][:, 0] - features.NUM_RESERVED)
    return numbers


def test_each_epoch_yields_every_example_once_reshuffled_from_memory(transformed_examples):
    path, output = transformed_examples
    training = TrainingConfig(batch_size=BATCH_SIZE)
    dataset = trainer.teacher_forcing_batches([path], tfrecord_data_accessor(), output, training,
                                              shuffle=True, bucket=False)

    first = _epoch(dataset)
    os.remove(path)  # the second epoch must come from the cache
    second = _epoch(dataset)

    assert sorted(first) == sorted(second) == list(range(NUM_EXAMPLES))
    assert first != second  # reshuffled each epoch
    assert first != sorted(first)  # and shuffled at all


def test_without_cache_each_epoch_reads_the_files_again(transformed_examples):
    path, output = transformed_examples
    training = dataclasses.replace(TrainingConfig(batch_size=BATCH_SIZE), cache_examples=False)
    dataset = trainer.teacher_forcing_batches([path], tfrecord_data_accessor(), output, training,
                                              shuffle=False, bucket=False)

    assert _epoch(dataset) == list(range(NUM_EXAMPLES))  # unshuffled: file order
    os.remove(path)
    with pytest.raises(tf.errors.NotFoundError):
        _epoch(dataset)
