"""The training summary: token counts, the kept epoch under early stopping, throughput."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from enja.models.architectures import seq2seq
from enja.models.training import training_clock


def test_counts_batches_and_tokens_leaving_out_padding():
    inputs = {seq2seq.SOURCE_INPUT: np.array([[5, 6, 0], [7, 0, 0]]),
              seq2seq.TARGET_INPUT: np.array([[2, 8, 0], [2, 0, 0]])}
    labels = np.array([[8, 3, 0], [3, 0, 0]])
    dataset = tf.data.Dataset.from_tensors((inputs, labels)).repeat(2)
    # 3 source tokens and 3 labels per batch; the shifted decoder input is not counted.
    assert training_clock.count_batches_and_tokens(dataset) == (2, 12)


@pytest.mark.parametrize(("kept_best", "kept_epoch"), [(True, 2), (False, 3)])
def test_summary_names_the_epoch_whose_weights_were_kept(kept_best, kept_epoch):
    history = keras.callbacks.History()
    history.history = {"loss": [3.0, 2.0, 1.5], "val_loss": [2.5, 2.2, 2.4]}
    clock = training_clock.TrainingClock()
    clock.seconds = 6.0
    summary = training_clock.summarize(history, clock, tokens_per_epoch=100,
                                         kept_best=kept_best)
    assert summary["epochs_run"] == 3 and summary["kept_epoch"] == kept_epoch
    assert summary["tokens_per_second"] == pytest.approx(50.0)
