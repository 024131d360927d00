"""tf.Transform preprocessing_fn: whitespace tokens → fixed-length id sequences.

The corpus is pre-tokenized, so splitting on whitespace is the tokenizer. Both
vocabularies are computed over the training split; ids below NUM_RESERVED are
reserved (padding, unknown, start, end). The exported model turns raw English into
source ids with `source_ids` too, over a table of the same source vocabulary file
(`vocabulary_table`), which is why serving takes raw text: it needs only the source
side, and owning its table lets it initialise once when the model loads.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from enja.preprocessing import features

# Tokens → the line of their token in a vocabulary file, -1 for a token not in it.
Lookup = Callable[[tf.RaggedTensor], tf.RaggedTensor]


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """Splits a [batch] or [batch, 1] string tensor on whitespace."""
    return tf.strings.split(tf.reshape(text, [-1]))


def _token_ids(tokens: tf.RaggedTensor, lookup: Lookup) -> tf.RaggedTensor:
    """Maps tokens to ids with a vocabulary lookup, after the reserved ids."""
    # Out-of-vocabulary tokens come back as -1 and become <unk>.
    return tf.ragged.map_flat_values(
        lambda flat: tf.where(flat < 0, tf.constant(features.UNK_ID, tf.int64),
                              flat + features.NUM_RESERVED),
        lookup(tokens))


def _pad(ids: tf.RaggedTensor, length: int) -> tf.Tensor:
    return ids.to_tensor(default_value=features.PAD_ID, shape=[None, length])


def source_ids(text: tf.Tensor, lookup: Lookup, max_source_length: int) -> tf.Tensor:
    """Raw English [batch] or [batch, 1] → source ids [batch, max_source_length].

    Transform's `en_ids` and the exported model's encoder input both come from here.
    """
    ids = _token_ids(tokenize(text), lookup)
    return _pad(ids[:, :max_source_length], max_source_length)


def _vocabulary(vocab_size: int, min_frequency: int, vocab_name: str) -> Lookup:
    """A tf.Transform vocabulary computed over the tokens it is applied to."""
    return functools.partial(tft.compute_and_apply_vocabulary, top_k=vocab_size or None,
                             frequency_threshold=min_frequency, default_value=-1,
                             vocab_filename=vocab_name)


def vocabulary_table(vocabulary_file: str) -> tf.lookup.StaticHashTable:
    """The table tft.apply_vocabulary looks tokens up in: line n of the file → n, else -1.

    Built outside any tf.function, a tf.Module that keeps it saves it as a resource
    initialised once when the SavedModel loads, not on every call.
    """
    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            vocabulary_file, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER),
        default_value=-1)


def table_lookup(table: tf.lookup.StaticHashTable) -> Lookup:
    """The Lookup of a `vocabulary_table`."""
    return lambda tokens: tf.ragged.map_flat_values(table.lookup, tokens)


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    """Transforms raw `en`/`ja` strings into padded id sequences `en_ids`/`ja_ids`.

    `ja_ids` is `<s> tokens </s>` padded to max_target_length + 2: the Trainer feeds
    its first n-1 positions to the decoder and predicts the last n-1 (teacher forcing).
    """
    vocab = custom_config["vocab"]
    source = source_ids(inputs[features.SOURCE_KEY],
                        _vocabulary(vocab["source_vocab_size"], vocab["min_frequency"],
                                    features.SOURCE_VOCAB_NAME),
                        vocab["max_source_length"])
    target = _token_ids(tokenize(inputs[features.TARGET_KEY]),
                        _vocabulary(vocab["target_vocab_size"], vocab["min_frequency"],
                                    features.TARGET_VOCAB_NAME))
    batch = target.nrows()
    start = tf.fill([batch, 1], tf.constant(features.START_ID, tf.int64))
    end = tf.fill([batch, 1], tf.constant(features.END_ID, tf.int64))
    target = tf.concat([start, target[:, :vocab["max_target_length"]], end], axis=1)
    return {
        features.SOURCE_IDS_KEY: source,
        features.TARGET_IDS_KEY: _pad(target, vocab["max_target_length"] + 2),
    }


def vocabulary_sizes(tf_transform_output: tft.TFTransformOutput) -> tuple[int, int]:
    """Source and target vocabulary sizes, reserved ids included: the model's embedding sizes."""
    return tuple(
        tf_transform_output.vocabulary_size_by_name(name) + features.NUM_RESERVED
        for name in (features.SOURCE_VOCAB_NAME, features.TARGET_VOCAB_NAME))
