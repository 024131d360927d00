"""The preprocessing_fn, run for real with tf.Transform on tiny data."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from enja.preprocessing import features
from support.corpus import TINY_PAIRS


def _transform(transform_output_dir: str, en: list[str], ja: list[str]) -> dict[str, np.ndarray]:
    layer = tft.TFTransformOutput(transform_output_dir).transform_features_layer()
    outputs = layer({features.SOURCE_KEY: tf.constant(en)[:, None],
                     features.TARGET_KEY: tf.constant(ja)[:, None]})
    return {name: value.numpy() for name, value in outputs.items()}


def test_vocabularies_hold_every_token_after_the_reserved_ids(transform_output_dir):
    output = tft.TFTransformOutput(transform_output_dir)
    source_vocab = output.vocabulary_by_name(features.SOURCE_VOCAB_NAME)
    expected = {token.encode() for en, _ in TINY_PAIRS for token in en.split()}
    assert set(source_vocab) == expected
    ids = _transform(transform_output_dir, ["i like cats ."], ["私 は 猫 が 好き で す 。"])
    assert ids[features.SOURCE_IDS_KEY].min() >= 0
    assert (ids[features.SOURCE_IDS_KEY][0, :4] >= features.NUM_RESERVED).all()


def test_sequences_are_padded_truncated_and_framed(transform_output_dir):
    ids = _transform(transform_output_dir,
                     ["i like cats .", "i like cats i like cats i like cats"],
                     ["猫 。", " ".join(["猫"] * 15)])
    source, target = ids[features.SOURCE_IDS_KEY], ids[features.TARGET_IDS_KEY]
    assert source.shape == (2, 6) and target.shape == (2, 14)  # max lengths 6 and 12 + 2
    assert list(source[0, 4:]) == [features.PAD_ID] * 2
    assert (source[1] != features.PAD_ID).all()  # truncated to 6 tokens
    assert target[0, 0] == features.START_ID and target[0, 3] == features.END_ID
    assert list(target[0, 4:]) == [features.PAD_ID] * 10
    assert target[1, 0] == features.START_ID and target[1, 13] == features.END_ID


def test_unknown_tokens_map_to_unk(transform_output_dir):
    ids = _transform(transform_output_dir, ["zebras like cats ."], ["縞馬 。"])
    assert ids[features.SOURCE_IDS_KEY][0, 0] == features.UNK_ID
    assert ids[features.TARGET_IDS_KEY][0, 1] == features.UNK_ID
