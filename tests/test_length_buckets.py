"""Length bucketing: batches hold similar lengths, padding columns go, no example is lost."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from enja.models.training import length_buckets
from enja.preprocessing import features


def _padded(lengths: list[int], width: int, first_id: int) -> np.ndarray:
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = np.arange(first_id, first_id + length) + row * 100
    return ids


def test_trim_padding_cuts_only_all_padding_columns():
    batch = {features.SOURCE_IDS_KEY: _padded([3, 5], 16, 4),
             features.TARGET_IDS_KEY: _padded([4, 2], 18, 4)}
    trimmed = length_buckets.trim_padding(batch)
    np.testing.assert_array_equal(trimmed[features.SOURCE_IDS_KEY],
                                  batch[features.SOURCE_IDS_KEY][:, :5])
    np.testing.assert_array_equal(trimmed[features.TARGET_IDS_KEY],
                                  batch[features.TARGET_IDS_KEY][:, :4])


def test_bucketing_groups_similar_lengths_and_keeps_every_example():
    lengths = [3, 15, 4, 14, 5, 16, 3, 13]
    examples = tf.data.Dataset.from_tensor_slices({
        features.SOURCE_IDS_KEY: _padded(lengths, 16, 4),
        features.TARGET_IDS_KEY: _padded([2] * len(lengths), 18, 4),
    })
    bucketed = list(length_buckets.bucket_by_length(examples, batch_size=2).as_numpy_iterator())

    seen = []
    for batch in bucketed:
        source = batch[features.SOURCE_IDS_KEY]
        row_lengths = np.count_nonzero(source, axis=1)
        assert source.shape[1] == row_lengths.max()  # trimmed to the longest member
        assert row_lengths.max() - row_lengths.min() < 8  # short and long are not mixed
        seen.extend(source[row, 0] for row in range(len(source)))
    assert sorted(seen) == sorted(4 + 100 * row for row in range(len(lengths)))
