"""Batches of similar-length sentences, trimmed to their longest member.

Transform pads every sentence to the configured maximum (16 source, 18 target ids), but
most sentences are far shorter; the LSTMs and the output layer pay for every padded
position. Grouping sentences of similar length and cutting each batch's all-padding
columns spends the steps on tokens instead. Padding never reached the loss, so the
model learns the same thing.
"""
from __future__ import annotations

import tensorflow as tf

from enja.preprocessing import features

# Upper bounds (exclusive) of the longer side's id count per bucket; the target side
# counts <s> and </s>.
BUCKET_BOUNDARIES = (8, 10, 12, 14, 16)


def _length(example: dict[str, tf.Tensor]) -> tf.Tensor:
    """Non-padding ids of the longer side of one example."""
    return tf.cast(tf.maximum(
        tf.math.count_nonzero(example[features.SOURCE_IDS_KEY] != features.PAD_ID),
        tf.math.count_nonzero(example[features.TARGET_IDS_KEY] != features.PAD_ID)), tf.int32)


def trim_padding(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Cuts the columns that are padding in every sentence of the batch (ids are right-padded)."""
    trimmed = dict(batch)
    for key in (features.SOURCE_IDS_KEY, features.TARGET_IDS_KEY):
        ids = batch[key]
        longest = tf.reduce_max(tf.math.count_nonzero(ids != features.PAD_ID, axis=1))
        trimmed[key] = ids[:, :longest]
    return trimmed


def bucket_by_length(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches (already shuffled) transformed examples by length and trims their padding."""
    return (examples
            .bucket_by_sequence_length(_length, list(BUCKET_BOUNDARIES),
                                       [batch_size] * (len(BUCKET_BOUNDARIES) + 1))
            .map(trim_padding, num_parallel_calls=tf.data.AUTOTUNE))
