"""The Trainer's learning-rate warm-up and weight averaging, on a tiny real model."""
from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf

from enja.models.architectures import registry, seq2seq
from enja.models.config import ModelConfig, TrainingConfig
from enja.models.training import epoch_bleu, progress, trainer, training_clock
from enja.preprocessing import features

SOURCE_VOCAB, TARGET_VOCAB = 12, 15


def _data(batches: int, batch: int = 4) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    source = rng.integers(features.NUM_RESERVED, SOURCE_VOCAB, size=(batches * batch, 5))
    target = rng.integers(features.NUM_RESERVED, TARGET_VOCAB, size=(batches * batch, 6))
    target[:, 0], target[:, -1] = features.START_ID, features.END_ID
    return tf.data.Dataset.from_tensor_slices((
        {seq2seq.SOURCE_INPUT: source, seq2seq.TARGET_INPUT: target[:, :-1]}, target[:, 1:]
    )).batch(batch)


class _Rates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def _fit(training: TrainingConfig, epochs: int, data: tf.data.Dataset, *extra_callbacks):
    keras.utils.set_random_seed(0)
    model = registry.build(ModelConfig(embedding_dim=8, units=8), SOURCE_VOCAB, TARGET_VOCAB)
    seq2seq.compile_model(model.trainer, training)
    callbacks = trainer._callbacks(
        training, "", training_clock.TrainingClock(),
        epoch_bleu.EpochBleu(model, data, [str(i).encode() for i in range(TARGET_VOCAB - 4)], 6),
        progress.EpochProgress(epochs, int(data.cardinality()), progress.ProgressLine(io.StringIO())))
    callbacks = [c for c in callbacks if not isinstance(c, keras.callbacks.TensorBoard)]
    history = model.trainer.fit(data, validation_data=data, epochs=epochs, verbose=0,
                                callbacks=[*callbacks, *extra_callbacks])
    return model, history.history


def test_warm_up_scales_the_scheduled_rate_over_the_first_steps():
    training = TrainingConfig(learning_rate=0.1, learning_rate_schedule="cosine", epochs=2,
                              warmup_steps=3, early_stopping_patience=0)
    rates = _Rates()
    _fit(training, 2, _data(batches=4), rates)
    epoch_2 = trainer.learning_rate(training, 1)
    assert rates.rates == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, epoch_2, epoch_2, epoch_2,
                                         epoch_2])


@pytest.mark.parametrize("patience", [0, 1])
def test_averaged_weights_are_validated_and_kept(patience):
    """With weight averaging, what training leaves in the model (and the export serves) is
    the averaged weights that validation scored: the last epoch's, or the best epoch's."""
    data = _data(batches=3)
    training = TrainingConfig(learning_rate=0.05, epochs=4, weight_averaging=0.5,
                              early_stopping_patience=patience)
    model, history = _fit(training, 4, data)
    final_loss = model.trainer.evaluate(data, verbose=0, return_dict=True)["loss"]
    kept = min(history["val_loss"]) if patience else history["val_loss"][-1]
    assert final_loss == pytest.approx(kept, rel=1e-5)
    # The average lags the raw weights, so their losses differ: the check above can fail.
    _, plain_history = _fit(TrainingConfig(learning_rate=0.05, epochs=4,
                                               early_stopping_patience=0), 4, data)
    assert plain_history["val_loss"][-1] != pytest.approx(history["val_loss"][-1], rel=1e-3)
