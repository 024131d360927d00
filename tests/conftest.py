"""Shared fixtures: a real tf.Transform output on tiny data, tiny models fitted to it and their export,
one smoke pipeline run, a stand-in SavedModel for the server, the deploy recipes. Their helpers: support/."""
from __future__ import annotations

import os

import pytest

from support.corpus import BEAM_ARGS, TINY_PAIRS, tfrecord_data_accessor, tiny_vocab_config
from support.deploy import compose_service, kubernetes_objects
from support.serving import MODEL, STANDIN_TRANSLATIONS, BatchedCalls
from support.tiny_models import TINY_LSTM, TINY_TRANSFORMER, fit_to_tiny_pairs


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


@pytest.fixture(scope="session")
def tiny_model(transform_output_dir):
    """A tiny LSTM attention model fitted to TINY_PAIRS until it reproduces them."""
    return fit_to_tiny_pairs(transform_output_dir, TINY_LSTM, learning_rate=2e-2, epochs=60)


@pytest.fixture(scope="session")
def tiny_transformer(transform_output_dir):
    """A tiny Transformer fitted to TINY_PAIRS until it reproduces them."""
    return fit_to_tiny_pairs(transform_output_dir, TINY_TRANSFORMER, learning_rate=1e-2, epochs=60)


@pytest.fixture(scope="session")
def exported_model_dir(tiny_model, transform_output_dir, tmp_path_factory) -> str:
    """The tiny model exported as ServingExport exports it: SavedModel plus warm-up requests."""
    import tensorflow_transform as tft

    from enja.models.config import DecodingConfig
    from enja.models.export import translator
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
    pairs.write_text("".join(f"{en}\t{ja}\n" for en, ja in STANDIN_TRANSLATIONS.items()), encoding="utf-8")
    module = StandIn(str(pairs))
    base = root / "serving_model"
    tf.saved_model.save(module, str(base / MODEL / "1"),
                        signatures={contract.SERVING_SIGNATURE: module.serve})
    return str(base)


@pytest.fixture(scope="session")
def compose() -> dict:
    """The model's service in serving/deploy/docker-compose.yaml."""
    return compose_service()


@pytest.fixture(scope="session")
def k8s() -> dict[str, dict]:
    """serving/deploy/k8s.yaml's objects by kind."""
    return kubernetes_objects()


@pytest.fixture
def batched_calls(monkeypatch) -> BatchedCalls:
    """Counts the calls that reach a batcher in this process, from now on."""
    from enja.serving.batcher import Batcher

    calls, run = BatchedCalls(), Batcher.run

    def counted_run(self, *args, **kwargs):
        calls.arrived()
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Batcher, "run", counted_run)
    return calls
