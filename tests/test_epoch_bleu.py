"""Dev BLEU per epoch: decoded greedily from the transformed dev split, scored with sacreBLEU."""
from __future__ import annotations

import pytest
import sacrebleu
import tensorflow as tf
import tensorflow_transform as tft

from enja.models.architectures import seq2seq
from enja.models.training import epoch_bleu
from enja.preprocessing import features
from support.corpus import TINY_PAIRS


def test_detokenize_stops_at_the_end_and_keeps_unknown_words():
    tokens = [*features.RESERVED_TOKENS, "猫", "が"]
    ids = [4, features.UNK_ID, 5, features.END_ID, 4, features.PAD_ID]
    assert epoch_bleu.detokenize(ids, tokens) == "猫 <unk> が"
    assert epoch_bleu.detokenize(ids, tokens, "<rare>") == "猫 <rare> が"


@pytest.mark.parametrize("shift", [0, 1], ids=["own-references", "the-next-pairs-references"])
def test_the_tiny_model_is_scored_with_corpus_bleu_against_the_dev_references(tiny_model,
                                                                              transform_output_dir,
                                                                             shift):
    """The fixture model reproduces its training pairs: against their own references it scores 100, and
    against each next pair's it scores what sacreBLEU gives its translations there, so a callback that
    scored anything but the decoded dev sources against the dev targets would show."""
    references = [ja for _, ja in TINY_PAIRS[shift:] + TINY_PAIRS[:shift]]
    output = tft.TFTransformOutput(transform_output_dir)
    transformed = output.transform_features_layer()({
        features.SOURCE_KEY: tf.constant([en for en, _ in TINY_PAIRS])[:, None],
        features.TARGET_KEY: tf.constant(references)[:, None]})
    target = transformed[features.TARGET_IDS_KEY]
    dev = tf.data.Dataset.from_tensors(({seq2seq.SOURCE_INPUT: transformed[features.SOURCE_IDS_KEY]},
                                        target[:, 1:]))
    callback = epoch_bleu.EpochBleu(tiny_model, dev,
                                    output.vocabulary_by_name(features.TARGET_VOCAB_NAME), 14)
    logs: dict = {}

    callback.on_epoch_end(0, logs)

    expected = sacrebleu.corpus_bleu([ja for _, ja in TINY_PAIRS], [references], tokenize="none").score
    assert expected == pytest.approx(100) if shift == 0 else 0 < expected < 90
    assert logs[epoch_bleu.LOG_KEY] == pytest.approx(expected)
