"""tf.Transform preprocessing_fn: whitespace tokens → fixed-length id sequences.

The corpus is pre-tokenized, so splitting on whitespace is the tokenizer. Both
vocabularies are computed over the training split; ids below NUM_RESERVED are
reserved (padding, unknown, start, end). The same graph is embedded in the
exported model, which is why serving takes raw text.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from enja.preprocessing import features


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """Splits a [batch] or [batch, 1] string tensor on whitespace."""
    return tf.strings.split(tf.reshape(text, [-1]))


def _token_ids(tokens: tf.RaggedTensor, vocab_size: int, min_frequency: int,
               vocab_name: str) -> tf.RaggedTensor:
    """Maps tokens to ids with a tf.Transform vocabulary, after the reserved ids."""
    ids = tft.compute_and_apply_vocabulary(
        tokens,
        top_k=vocab_size or None,
        frequency_threshold=min_frequency,
        default_value=-1,
        vocab_filename=vocab_name,
    )
    # Out-of-vocabulary tokens come back as -1 and become <unk>.
    return tf.ragged.map_flat_values(
        lambda flat: tf.where(flat < 0, tf.constant(features.UNK_ID, tf.int64),
                              flat + features.NUM_RESERVED),
        ids)


def _pad(ids: tf.RaggedTensor, length: int) -> tf.Tensor:
    return ids.to_tensor(default_value=features.PAD_ID, shape=[None, length])


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Transforms raw `en`/`ja` strings into padded id sequences `en_ids`/`ja_ids`.

    `ja_ids` is `<s> tokens </s>` padded to max_target_length + 2: the Trainer feeds
    its first n-1 positions to the decoder and predicts the last n-1 (teacher forcing).
    """
    vocab = custom_config["vocab"]
    source = _token_ids(tokenize(inputs[features.SOURCE_KEY]), vocab["source_vocab_size"],
                        vocab["min_frequency"], features.SOURCE_VOCAB_NAME)
    target = _token_ids(tokenize(inputs[features.TARGET_KEY]), vocab["target_vocab_size"],
                        vocab["min_frequency"], features.TARGET_VOCAB_NAME)
    batch = target.nrows()
    start = tf.fill([batch, 1], tf.constant(features.START_ID, tf.int64))
    end = tf.fill([batch, 1], tf.constant(features.END_ID, tf.int64))
    target = tf.concat([start, target[:, :vocab["max_target_length"]], end], axis=1)
    return {
        features.SOURCE_IDS_KEY: _pad(source[:, :vocab["max_source_length"]],
                                      vocab["max_source_length"]),
        features.TARGET_IDS_KEY: _pad(target, vocab["max_target_length"] + 2),
    }


def vocabulary_sizes(tf_transform_output: tft.TFTransformOutput) -> tuple[int, int]:
    """Source and target vocabulary sizes, reserved ids included: the model's embedding sizes."""
    return tuple(
        tf_transform_output.vocabulary_size_by_name(name) + features.NUM_RESERVED
        for name in (features.SOURCE_VOCAB_NAME, features.TARGET_VOCAB_NAME))
