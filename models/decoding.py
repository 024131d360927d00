"""Decoding inside the serving graph: turns source ids into target ids with TF ops only."""
from __future__ import annotations

import tensorflow as tf

from enja.models.seq2seq import Seq2Seq
from enja.preprocessing import features


def greedy_decode(model: Seq2Seq, source_ids: tf.Tensor, max_length: int
                  ) -> tuple[tf.Tensor, tf.Tensor]:
    """Picks the most likely token at each step until </s> or `max_length` tokens.

    Returns ids [B, T] (0-padded after </s>) and each sequence's log-probability [B].
    """
    batch = tf.shape(source_ids)[0]
    encoder_outputs, h, c = model.encoder(source_ids)
    source_mask = tf.not_equal(source_ids, features.PAD_ID)
    token = tf.fill([batch], tf.constant(features.START_ID, tf.int64))
    finished = tf.zeros([batch], tf.bool)
    scores = tf.zeros([batch])
    ids = tf.zeros([batch, 0], tf.int64)
    for _ in tf.range(max_length):
        tf.autograph.experimental.set_loop_options(
            shape_invariants=[(ids, tf.TensorShape([None, None]))])
        logits, h, c, _ = model.step(token[:, None], h, c, encoder_outputs, source_mask)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
        token = tf.argmax(log_probs, axis=-1)
        scores += tf.where(finished, 0.0, tf.reduce_max(log_probs, axis=-1))
        token = tf.where(finished, tf.constant(features.PAD_ID, tf.int64), token)
        ids = tf.concat([ids, token[:, None]], axis=1)
        finished |= tf.equal(token, features.END_ID)
        if tf.reduce_all(finished):
            break
    return ids, scores
