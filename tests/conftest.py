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
