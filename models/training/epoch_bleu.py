"""Dev BLEU after every epoch, so that training curves show quality and not only loss.

The Trainer holds the transformed dev split, not its raw text: the translations are
decoded greedily from the dev source ids and scored against the dev targets as the
vocabulary sees them (at most max_target_length tokens). A rare reference word, <unk>
to the vocabulary, never matches, as the real word never matches a predicted <unk>
in the Evaluator. The score is close to, not equal to, the Evaluator's BLEU of the
exported beam-search model, and it is the same measure for every run, which is what
comparing a warm start with a cold one needs.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from enja.models.architectures import decoding, seq2seq
from enja.models.architectures.seq2seq import EncoderDecoder
from enja.models.evaluation import bleu
from enja.preprocessing import features

LOG_KEY = "val_bleu"
# Stands for a rare word in a reference; no translation contains it.
UNMATCHABLE = "<rare>"


def detokenize(ids: np.ndarray, tokens: Sequence[str], unknown: str | None = None) -> str:
    """The tokens of one id sequence up to </s>, reserved ids other than <unk> left out.

    `unknown` replaces <unk> when given.
    """
    words = []
    for token_id in ids:
        if token_id == features.END_ID:
            break
        if token_id == features.UNK_ID:
            words.append(unknown or tokens[token_id])
        elif token_id >= features.NUM_RESERVED:
            words.append(tokens[token_id])
    return " ".join(words)


class EpochBleu(keras.callbacks.Callback):
    """Adds `val_bleu` (greedy, 0–100) to each epoch's logs, beside `val_loss`."""

    def __init__(self, model: EncoderDecoder, dev_batches: tf.data.Dataset,
                 target_vocabulary: Sequence[bytes], max_length: int) -> None:
        """`target_vocabulary`: Transform's target tokens, without the reserved ones."""
        super().__init__()
        sources, labels = [], []
        for inputs, batch_labels in dev_batches:
            sources.append(inputs[seq2seq.SOURCE_INPUT])
            labels.append(batch_labels.numpy())
        self._source_ids = tf.concat(sources, axis=0)
        self._tokens = [*features.RESERVED_TOKENS, *(token.decode("utf-8") for token in target_vocabulary)]
        self._references = [detokenize(row, self._tokens, UNMATCHABLE)
                            for row in np.concatenate(labels)]
        self._decode = tf.function(lambda ids: decoding.greedy_decode(model, ids, max_length)[0])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        hypotheses = [detokenize(row, self._tokens) for row in self._decode(self._source_ids).numpy()]
        if logs is not None:
            logs[LOG_KEY] = bleu.corpus_bleu(hypotheses, self._references)
