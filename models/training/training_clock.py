"""What a training run measures of itself for its summary (models/training/training_summary.py):
seconds spent on training batches, tokens trained on, the epochs and the one kept."""
from __future__ import annotations

import time
from typing import Any

import keras
import tensorflow as tf

from enja.models.architectures import seq2seq
from enja.models.training import epoch_bleu
from enja.preprocessing import features


def count_batches_and_tokens(dataset: tf.data.Dataset) -> tuple[int, int]:
    """Batches, and non-padding source tokens and target labels (</s> included), over
    (inputs, labels) batches: one pass over the data."""
    def add(totals: tuple[tf.Tensor, tf.Tensor], batch: tuple[dict[str, tf.Tensor], tf.Tensor]
            ) -> tuple[tf.Tensor, tf.Tensor]:
        inputs, labels = batch
        tokens = (tf.math.count_nonzero(inputs[seq2seq.SOURCE_INPUT] != features.PAD_ID)
                  + tf.math.count_nonzero(labels != features.PAD_ID))
        return totals[0] + 1, totals[1] + tokens

    batches, tokens = dataset.reduce((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), add)
    return int(batches), int(tokens)


class TrainingClock(keras.callbacks.Callback):
    """Seconds spent on training batches, validation passes left out."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.after_epoch: list[float] = []  # self.seconds at the end of each epoch
        self._started: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._stop()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._stop()
        self.after_epoch.append(self.seconds)

    def _stop(self) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None


def summarize(history: keras.callbacks.History, clock: TrainingClock, tokens_per_epoch: int,
              kept_best: bool) -> dict[str, Any]:
    """Epochs run, the epoch whose weights were kept, and training throughput.

    `kept_best`: early stopping restored the epoch with the lowest dev loss (otherwise
    the last epoch's weights are kept).
    """
    val_loss = history.history.get("val_loss", [])
    epochs_run = len(history.history["loss"])
    return {
        "epochs_run": epochs_run,
        "kept_epoch": (val_loss.index(min(val_loss)) + 1) if kept_best and val_loss
                      else epochs_run,
        "loss": history.history["loss"],
        "val_loss": val_loss,
        "val_bleu": history.history.get(epoch_bleu.LOG_KEY, []),
        "epoch_train_seconds": clock.after_epoch,
        "train_seconds": clock.seconds,
        "tokens_per_epoch": tokens_per_epoch,
        "tokens_per_second": tokens_per_epoch * epochs_run / clock.seconds,
    }
