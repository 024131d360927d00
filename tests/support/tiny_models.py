"""The tiny models conftest fits to TINY_PAIRS, and their settings (tests that rebuild one need them)."""
from __future__ import annotations

from enja.models.config import ModelConfig
from support.corpus import TINY_PAIRS

# conftest's `tiny_model` and `tiny_transformer`.
TINY_LSTM = ModelConfig(embedding_dim=16, units=32)
TINY_TRANSFORMER = ModelConfig(architecture="transformer", units=32, layers=1, heads=2,
                               feedforward_dim=64, dropout=0.0)


def fit_to_tiny_pairs(transform_output_dir: str, model_config: ModelConfig, learning_rate: float,
                      epochs: int, **training: object):
    """A model of `model_config` fitted to TINY_PAIRS until it reproduces them (seeded;
    `training`: other TrainingConfig fields)."""
    import keras
    import tensorflow as tf
    import tensorflow_transform as tft

    from enja.models.architectures import registry, seq2seq
    from enja.models.config import TrainingConfig
    from enja.preprocessing import features, transform

    keras.utils.set_random_seed(0)
    output = tft.TFTransformOutput(transform_output_dir)
    transformed = output.transform_features_layer()({
        features.SOURCE_KEY: tf.constant([en for en, _ in TINY_PAIRS])[:, None],
        features.TARGET_KEY: tf.constant([ja for _, ja in TINY_PAIRS])[:, None]})
    target = transformed[features.TARGET_IDS_KEY]
    model = registry.build(model_config, *transform.vocabulary_sizes(output))
    seq2seq.compile_model(model.trainer, TrainingConfig(learning_rate=learning_rate, **training))
    model.trainer.fit({seq2seq.SOURCE_INPUT: transformed[features.SOURCE_IDS_KEY],
                       seq2seq.TARGET_INPUT: target[:, :-1]}, target[:, 1:],
                      epochs=epochs, batch_size=len(TINY_PAIRS), verbose=0)
    return model
