"""Shared fixtures: a real tf.Transform output on tiny data, and one smoke pipeline run."""
from __future__ import annotations

import os
import pathlib

import pytest

# Made-up pairs, tokenized like the corpus (the corpus itself stays out of the repo).
TINY_PAIRS = [
    ("i like cats .", "私 は 猫 が 好き で す 。"),
    ("i like dogs .", "私 は 犬 が 好き で す 。"),
    ("he likes cats .", "彼 は 猫 が 好き で す 。"),
    ("she has a dog .", "彼女 は 犬 を 飼 っ て い ま す 。"),
    ("this is a pen .", "これ は ペン で す 。"),
    ("that is my cat .", "あれ は 私 の 猫 で す 。"),
    ("it is raining today .", "今日 は 雨 が 降 っ て い ま す 。"),
    ("i read a book .", "私 は 本 を 読 み ま し た 。"),
]
BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def tiny_vocab_config(max_source_length: int = 6, max_target_length: int = 12) -> dict:
    return {"vocab": {"source_vocab_size": 0, "target_vocab_size": 0, "min_frequency": 1,
                      "max_source_length": max_source_length,
                      "max_target_length": max_target_length}}


def tfrecord_data_accessor():
    """Reads tf.Example TFRecords with tfx_bsl, as TFX's accessor does for Transform's output."""
    from tfx import v1 as tfx
    from tfx_bsl.public import tfxio

    def tf_dataset_factory(files, options, schema):
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)
    return tfx.components.DataAccessor(tf_dataset_factory=tf_dataset_factory,
                                       record_batch_factory=None, data_view_decode_fn=None)


def write_transformed(transform_output_dir: str, pairs: list[tuple[str, str]], path: str) -> str:
    """`pairs` through the Transform graph, as Transform's output TFRecords."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from enja.preprocessing import features

    transformed = tft.TFTransformOutput(transform_output_dir).transform_features_layer()({
        features.SOURCE_KEY: tf.constant([en for en, _ in pairs])[:, None],
        features.TARGET_KEY: tf.constant([ja for _, ja in pairs])[:, None]})
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in range(len(pairs)):
            example = tf.train.Example()
            for key in (features.SOURCE_IDS_KEY, features.TARGET_IDS_KEY):
                example.features.feature[key].int64_list.value.extend(transformed[key][row].numpy())
            writer.write(example.SerializeToString())
    return path


@pytest.fixture(scope="session")
def transform_output_dir(tmp_path_factory) -> str:
    """Runs the real preprocessing_fn with tf.Transform's Beam implementation on TINY_PAIRS."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from enja.preprocessing import features, transform

    output_dir = str(tmp_path_factory.mktemp("transform_output"))
    raw = [{features.SOURCE_KEY: [en.encode()], features.TARGET_KEY: [ja.encode()]}
           for en, ja in TINY_PAIRS]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        features.SOURCE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.TARGET_KEY: tf.io.FixedLenFeature([1], tf.string),
    }))
    config = tiny_vocab_config()
    with beam.Pipeline(argv=BEAM_ARGS) as pipeline, tft_beam.Context(
            temp_dir=os.path.join(output_dir, "tmp")):
        transform_fn = (
            (pipeline | beam.Create(raw), metadata)
            | tft_beam.AnalyzeDataset(lambda inputs: transform.preprocessing_fn(inputs, config)))
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    # The raw schema, as TFX's Transform writes it: the export parses examples with it.
    metadata_io.write_metadata(
        metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return output_dir


def _fit_to_tiny_pairs(transform_output_dir: str, model_config, learning_rate: float,
                       epochs: int, **training):
    """A model of `model_config` fitted to TINY_PAIRS until it reproduces them (`training`:
    other TrainingConfig fields)."""
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


@pytest.fixture(scope="session")
def tiny_model(transform_output_dir):
    """A tiny LSTM attention model fitted to TINY_PAIRS until it reproduces them."""
    from enja.models.config import ModelConfig

    return _fit_to_tiny_pairs(transform_output_dir, ModelConfig(embedding_dim=16, units=32),
                              learning_rate=2e-2, epochs=60)


@pytest.fixture(scope="session")
def tiny_transformer(transform_output_dir):
    """A tiny Transformer fitted to TINY_PAIRS until it reproduces them."""
    from enja.models.config import ModelConfig

    config = ModelConfig(architecture="transformer", units=32, layers=1, heads=2,
                         feedforward_dim=64, dropout=0.0)
    return _fit_to_tiny_pairs(transform_output_dir, config, learning_rate=1e-2, epochs=60)


@pytest.fixture(scope="session")
def exported_model_dir(tiny_model, transform_output_dir, tmp_path_factory) -> str:
    """The tiny model exported as ServingExport exports it: SavedModel plus warm-up requests."""
    import tensorflow_transform as tft

    from enja.models.export import translator
    from enja.models.config import DecodingConfig
    from enja.serving import warmup
    from enja.serving.config import ServingConfig

    export_dir = str(tmp_path_factory.mktemp("exported_model") / "saved_model")
    module = translator.Translator(tiny_model, tft.TFTransformOutput(transform_output_dir),
                                   DecodingConfig(max_output_length=12))
    translator.save(module, export_dir)
    serving = ServingConfig()
    warmup.write_warmup_requests(export_dir, serving.warmup_sentences, serving.model_name)
    return export_dir


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> dict:
    """Runs the whole pipeline once with the `smoke` preset (corpus from $ENJA_DATA_ROOT)."""
    from enja.pipeline import configs, local_runner

    output_dir = str(tmp_path_factory.mktemp("smoke_pipeline"))
    record = local_runner.run(preset="smoke", output_dir=output_dir)
    layout = local_runner.OutputLayout(output_dir, configs.PRESETS["smoke"])
    pushed = None if record.pushed_version is None else layout.pushed_dir(record.pushed_version)
    return {"output_dir": output_dir, "pushed": pushed, "record": record, "layout": layout}


@pytest.fixture(scope="session")
def pushed_model_base(smoke_run) -> str:
    """The Pusher's base path, holding <model_name>/<version>/ as TF Serving expects."""
    assert smoke_run["pushed"], "the smoke pipeline pushed no model"
    return os.path.dirname(smoke_run["layout"].serving_model_dir)


@pytest.fixture(scope="session")
def data_accessor():
    return tfrecord_data_accessor()


@pytest.fixture(scope="session")
def standin_model_base(tmp_path_factory) -> str:
    """A tiny real SavedModel at <base>/enja/1/: the real model's serving signature over a lookup table
    initialised from an asset file, so the server's loading and protocol run in seconds."""
    import tensorflow as tf

    from enja.serving import contract
    from enja.serving.config import ServingConfig

    class StandIn(tf.Module):
        def __init__(self, pairs_file: str):
            super().__init__()
            initializer = tf.lookup.TextFileInitializer(
                pairs_file, tf.string, 0, tf.string, 1, delimiter="\t")
            self.table = tf.lookup.StaticHashTable(initializer, default_value="?")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, text):
            return {
                contract.TRANSLATIONS_OUTPUT: self.table.lookup(text),
                contract.SCORES_OUTPUT: -tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32),
            }

    root = tmp_path_factory.mktemp("standin")
    pairs = root / "pairs.tsv"
    pairs.write_text("hello\tこんにちは\nthank you\tありがとう\ngood morning\tおはよう\n", encoding="utf-8")
    module = StandIn(str(pairs))
    base = root / "serving_model"
    tf.saved_model.save(module, str(base / ServingConfig.model_name / "1"),
                        signatures={contract.SERVING_SIGNATURE: module.serve})
    return str(base)
