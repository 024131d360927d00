"""Dev BLEU per epoch: decoded greedily from the transformed dev split, scored with sacreBLEU."""
from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_transform as tft

from enja.models.training import epoch_bleu
from enja.models.architectures import seq2seq
from enja.preprocessing import features
from support.corpus import TINY_PAIRS


def test_detokenize_stops_at_the_end_and_keeps_unknown_words():
    tokens = [*features.RESERVED_TOKENS, "猫", "が"]
    ids = [4, features.UNK_ID, 5, features.END_ID, 4, features.PAD_ID]
    assert epoch_bleu.detokenize(ids, tokens) == "猫 <unk> が"
    assert epoch_bleu.detokenize(ids, tokens, "<rare>") == "猫 <rare> が"


def test_the_tiny_model_scores_its_own_pairs_like_corpus_bleu(tiny_model, transform_output_dir):
    output = tft.TFTransformOutput(transform_output_dir)
    transformed = output.transform_features_layer()({
        features.SOURCE_KEY: tf.constant([en for en, _ in TINY_PAIRS])[:, None],
        features.TARGET_KEY: tf.constant([ja for _, ja in TINY_PAIRS])[:, None]})
    target = transformed[features.TARGET_IDS_KEY]
    dev = tf.data.Dataset.from_tensors(({seq2seq.SOURCE_INPUT: transformed[features.SOURCE_IDS_KEY]},
                                        target[:, 1:]))
    callback = epoch_bleu.EpochBleu(tiny_model, dev,
                                    output.vocabulary_by_name(features.TARGET_VOCAB_NAME), 14)
    logs: dict = {}

    callback.on_epoch_end(0, logs)

    # The fixture model reproduces its training pairs, so greedy decoding scores 100.
    assert logs[epoch_bleu.LOG_KEY] == pytest.approx(100.0)
