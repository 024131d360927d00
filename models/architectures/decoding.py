"""Decoding inside the serving graph: turns source ids into target ids with TF ops only.

Everything here traces into a tf.function (loops become `tf.while_loop`), so the
exported SavedModel decodes on a stock TF Serving binary. Each sentence stops at its
own length limit, given as a scalar or a [B] tensor (see `output_length_limits`).
The model's memory and decoder state are opaque nested tensors (`seq2seq.EncoderDecoder`):
beam search repeats and reorders them leaf by leaf, whatever the architecture.
"""
from __future__ import annotations

import functools

import tensorflow as tf

from enja.models.architectures.seq2seq import EncoderDecoder, State
from enja.preprocessing import features

_NEG_INF = float("-inf")
# Added to the logits of ids 0..NUM_RESERVED-1: -inf for <pad> and <s>, 0 for <unk> and </s>.
_RESERVED_LOGIT_OFFSETS = [_NEG_INF if i in (features.PAD_ID, features.START_ID) else 0.0
                           for i in range(features.NUM_RESERVED)]


def output_length_limits(source_ids: tf.Tensor, max_length: int, ratio: float, offset: int
                         ) -> tf.Tensor:
    """Per-sentence step limits [B] int32: min(max_length, floor(ratio * source length + offset)).

    A translation rarely needs many more tokens than its source, and an untrained or
    confused model otherwise loops to `max_length`; `ratio` 0 turns the relative cap off.
    """
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(source_ids, features.PAD_ID), tf.float32), 1)
    cap = tf.fill(tf.shape(lengths), tf.constant(max_length, tf.int32))
    if ratio <= 0:
        return cap
    relative = tf.cast(tf.floor(ratio * lengths + offset), tf.int32)
    return tf.minimum(cap, tf.maximum(relative, 0))


def _limits(max_length: int | tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
    """Broadcasts a scalar or [B] length limit to [B] int32."""
    return tf.broadcast_to(tf.cast(max_length, tf.int32), [batch])


def _state_invariants(state: State) -> list[tuple[State, State]]:
    """The loop shape invariant of the decoder state (autograph takes one per loop
    variable, nested like it): any batch and length, a fixed last axis."""
    return [(state, tf.nest.map_structure(
        lambda leaf: tf.TensorShape([None] * (leaf.shape.rank - 1) + [leaf.shape[-1]]), state))]


def _log_probs(model: EncoderDecoder, token: tf.Tensor, state: State, memory: object
               ) -> tuple[tf.Tensor, State, tf.Tensor]:
    """One decoder step from `token` [N]: log-probabilities [N, V], new state, attention [N, S]."""
    logits, state, weights = model.step(token[:, None], state, memory)
    # <pad> and <s> never follow in a translation; an untrained model may still rank them first.
    # The vocabulary size is static, so this traces to one constant, not a per-step op.
    offsets = _RESERVED_LOGIT_OFFSETS + [0.0] * (logits.shape[-1] - features.NUM_RESERVED)
    logits = tf.cast(logits, tf.float32) + tf.constant(offsets)
    return tf.nn.log_softmax(logits), state, tf.cast(weights, tf.float32)


def _greedy(model: EncoderDecoder, source_ids: tf.Tensor, max_length: int | tf.Tensor,
            with_attention: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Greedy decoding; `with_attention` is a trace-time switch so that serving graphs
    do not carry attention weights through the loop (they get an empty [B, 0, S])."""
    batch = tf.shape(source_ids)[0]
    limits = _limits(max_length, batch)
    memory, state = model.encode(source_ids)
    token = tf.fill([batch], tf.constant(features.START_ID, tf.int64))
    finished = limits <= 0
    scores = tf.zeros([batch])
    ids = tf.zeros([batch, 0], tf.int64)
    attention = tf.zeros([batch, 0, tf.shape(source_ids)[1]])
    invariants = [(ids, tf.TensorShape([None, None]))]
    if with_attention:
        invariants.append((attention, tf.TensorShape([None, None, None])))
    for step in tf.range(tf.reduce_max(tf.concat([limits, [0]], 0))):
        tf.autograph.experimental.set_loop_options(
            shape_invariants=invariants + _state_invariants(state))
        if tf.reduce_all(finished):
            break
        log_probs, state, weights = _log_probs(model, token, state, memory)
        token = tf.argmax(log_probs, axis=-1)
        scores += tf.where(finished, 0.0, tf.reduce_max(log_probs, axis=-1))
        token = tf.where(finished, tf.constant(features.PAD_ID, tf.int64), token)
        ids = tf.concat([ids, token[:, None]], axis=1)
        if with_attention:
            weights = tf.where(finished[:, None], 0.0, weights)
            attention = tf.concat([attention, weights[:, None]], axis=1)
        finished |= tf.equal(token, features.END_ID) | (step + 1 >= limits)
    return ids, scores, attention


def greedy_decode(model: EncoderDecoder, source_ids: tf.Tensor, max_length: int | tf.Tensor
                  ) -> tuple[tf.Tensor, tf.Tensor]:
    """Picks the most likely token at each step until </s> or the sentence's length limit.

    Returns ids [B, T] (0-padded after </s>) and each sequence's log-probability [B].
    """
    ids, scores, _ = _greedy(model, source_ids, max_length, with_attention=False)
    return ids, scores


def greedy_decode_with_attention(model: EncoderDecoder, source_ids: tf.Tensor,
                                 max_length: int | tf.Tensor
                                 ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`greedy_decode` plus each step's attention weights [B, T, S] (rows of 0 after </s>)."""
    return _greedy(model, source_ids, max_length, with_attention=True)


def length_penalty(length: tf.Tensor, alpha: float) -> tf.Tensor:
    """GNMT's ((5 + length) / 6) ** alpha: dividing by it stops beams favouring short outputs."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def beam_search_decode(model: EncoderDecoder, source_ids: tf.Tensor, beam_width: int | tf.Tensor,
                       max_length: int | tf.Tensor, length_penalty_alpha: float = 0.0
                       ) -> tuple[tf.Tensor, tf.Tensor]:
    """Keeps the `beam_width` most likely hypotheses per sentence; returns the best one.

    Each step takes the K best one-token extensions of the live hypotheses; those that
    end (</s> or the length limit) move to a pool of the K best finished ones, ranked by
    log-probability / length_penalty. A sentence's search stops once no live hypothesis
    could still beat its best finished one. With K = 1 this is exactly `greedy_decode`.
    `beam_width` may be a scalar tensor, so one graph serves any width.

    Returns ids [B, T] (0-padded after </s>) and each best hypothesis' log-probability [B]
    (not length-normalised, as greedy's).
    """
    batch = tf.shape(source_ids)[0]
    width = tf.convert_to_tensor(beam_width, tf.int32)
    with tf.control_dependencies([
            tf.debugging.assert_positive(width, message="beam_width must be at least 1")]):
        width = tf.identity(width)  # everything that uses the width waits for the check
    limits = _limits(max_length, batch)
    vocab = model.target_vocab_size

    # Row b * K + k holds hypothesis k of sentence b.
    memory, state = tf.nest.map_structure(lambda leaf: tf.repeat(leaf, width, axis=0),
                                          model.encode(source_ids))
    token = tf.fill([batch * width], tf.constant(features.START_ID, tf.int64))
    # Only the first copy of each sentence is live at first, so the K start copies
    # do not fill the beam with duplicates.
    first = tf.equal(tf.range(width), 0)[None, :] & (limits > 0)[:, None]
    alive_scores = tf.where(first, 0.0, _NEG_INF)  # [B, K] log-probabilities
    alive_ids = tf.zeros([batch, width, 0], tf.int64)
    # Empty finished slots: normalised score -inf, log-probability 0 (the empty output).
    finished_norm = tf.fill([batch, width], _NEG_INF)
    finished_scores = tf.zeros([batch, width])
    finished_ids = tf.zeros([batch, width, 0], tf.int64)
    beam_offsets = (tf.range(batch) * width)[:, None]

    for step in tf.range(tf.reduce_max(tf.concat([limits, [0]], 0))):
        # A constant width gives [B, K] shapes a static K that ops in the loop lose.
        tf.autograph.experimental.set_loop_options(shape_invariants=[
            (tensor, tf.TensorShape([None] * tensor.shape.rank)) for tensor in (
                token, alive_scores, alive_ids, finished_norm, finished_scores, finished_ids)]
            + _state_invariants(state))
        # Log-probabilities only fall, and the penalty is largest at the limit.
        best_possible = (tf.reduce_max(alive_scores, 1)
                         / length_penalty(limits, length_penalty_alpha))
        if not tf.reduce_any(best_possible > finished_norm[:, 0]):
            break
        log_probs, state, _ = _log_probs(model, token, state, memory)
        extended = alive_scores[:, :, None] + tf.reshape(log_probs, [batch, width, vocab])
        scores, index = tf.math.top_k(tf.reshape(extended, [batch, width * vocab]), k=width)
        origin = index // vocab
        token = tf.cast(index % vocab, tf.int64)
        ids = tf.concat([tf.gather(alive_ids, origin, batch_dims=1), token[:, :, None]], 2)
        ends = ((tf.equal(token, features.END_ID) | (step + 1 >= limits[:, None]))
                & (scores > _NEG_INF))

        # The pool keeps the K best finished; top_k is stable, so earlier ones win ties.
        pool_norm = tf.concat([finished_norm, tf.where(
            ends, scores / length_penalty(step + 1, length_penalty_alpha), _NEG_INF)], 1)
        finished_norm, keep = tf.math.top_k(pool_norm, k=width)
        finished_scores = tf.gather(tf.concat([finished_scores, scores], 1), keep, batch_dims=1)
        padded = tf.pad(finished_ids, [[0, 0], [0, 0], [0, 1]])
        finished_ids = tf.gather(tf.concat([padded, ids], 1), keep, batch_dims=1)

        alive_scores = tf.where(ends, _NEG_INF, scores)
        alive_ids = ids
        rows = tf.reshape(origin + beam_offsets, [-1])
        state = tf.nest.map_structure(functools.partial(tf.gather, indices=rows), state)
        token = tf.reshape(token, [-1])
    return finished_ids[:, 0], finished_scores[:, 0]
