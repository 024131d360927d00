"""The exported translator: loads and translates without project code, with both loaders."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from conftest import TINY_PAIRS
from enja.models import contract, export
from enja.models.config import DecodingConfig
from enja.preprocessing import features

LOADER_SCRIPT = pathlib.Path(__file__).with_name("load_exported_model.py")


@pytest.fixture(scope="module")
def trained_translator(tiny_model, transform_output_dir) -> export.Translator:
    return export.Translator(tiny_model, tft.TFTransformOutput(transform_output_dir),
                             DecodingConfig(max_output_length=12))


def test_translator_reproduces_its_training_pairs(trained_translator):
    outputs = trained_translator.translate(tf.constant([en for en, _ in TINY_PAIRS]))
    translations = [t.decode() for t in outputs[contract.TRANSLATIONS_OUTPUT].numpy()]
    assert translations == [ja for _, ja in TINY_PAIRS]
    scores = outputs[contract.SCORES_OUTPUT].numpy()
    assert scores.shape == (len(TINY_PAIRS),) and np.all(scores <= 0)


def test_examples_signature_takes_serialized_examples(trained_translator):
    example = tf.train.Example(features=tf.train.Features(feature={
        features.SOURCE_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[TINY_PAIRS[0][0].encode()]))}))
    outputs = trained_translator.translate_examples(tf.constant([example.SerializeToString()]))
    assert outputs[contract.TRANSLATIONS_OUTPUT].shape == (1, 1)
    assert outputs[contract.TRANSLATIONS_OUTPUT][0, 0].numpy().decode() == TINY_PAIRS[0][1]


def test_export_translates_without_project_code_in_both_loaders(trained_translator, tmp_path):
    export_dir = str(tmp_path / "export")
    export.save(trained_translator, export_dir)
    sentences = [TINY_PAIRS[0][0], TINY_PAIRS[4][0], "unknown words only"]
    result = subprocess.run([sys.executable, str(LOADER_SCRIPT), export_dir, *sentences],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["tf2"][:2] == [TINY_PAIRS[0][1], TINY_PAIRS[4][1]]
    assert loaded["tf1"]["translations"] == loaded["tf2"]
    assert all(score <= 0 for score in loaded["tf1"]["scores"])


def test_zero_output_length_translates_to_nothing(tiny_model, transform_output_dir):
    silent = export.Translator(tiny_model, tft.TFTransformOutput(transform_output_dir),
                               DecodingConfig(max_output_length=0))
    outputs = silent.translate(tf.constant([TINY_PAIRS[0][0]]))
    assert outputs[contract.TRANSLATIONS_OUTPUT].numpy().tolist() == [b""]
