"""The exported translator: loads and translates without project code, with both loaders."""
from __future__ import annotations

import collections
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2

from enja.models.config import DecodingConfig
from enja.models.export import translator
from enja.preprocessing import features
from enja.serving import contract, ops
from support.corpus import TINY_PAIRS
from support.paths import LOADER_SCRIPT

SIGNATURES = (contract.SERVING_SIGNATURE, contract.EXAMPLES_SIGNATURE,
              contract.OPTIONS_SIGNATURE, contract.ATTENTION_SIGNATURE)


def signature_ops(export_dir: str, signature: str) -> collections.Counter:
    """The op types a call of `signature` runs: its graph nodes and the functions they call,
    each function counted once."""
    saved_model = saved_model_pb2.SavedModel.FromString(
        (pathlib.Path(export_dir) / "saved_model.pb").read_bytes())
    meta_graph = saved_model.meta_graphs[0]
    library = {function.signature.name: function
               for function in meta_graph.graph_def.library.function}
    main_nodes = {node.name: node for node in meta_graph.graph_def.node}
    pending = [tensor.name.split(":")[0]
               for tensor in meta_graph.signature_def[signature].outputs.values()]
    seen_nodes: set[str] = set()
    nodes = []
    while pending:  # the main graph's nodes the outputs depend on
        name = pending.pop()
        if name not in seen_nodes:
            seen_nodes.add(name)
            nodes.append(main_nodes[name])
            pending.extend(source.lstrip("^").split(":")[0] for source in main_nodes[name].input)
    seen_functions: set[str] = set()
    ops: collections.Counter = collections.Counter()
    while nodes:  # and every node of the functions they call, recursively
        node = nodes.pop()
        ops[node.op] += 1
        for value in node.attr.values():
            for function in [value.func, *value.list.func]:
                if function.name in library and function.name not in seen_functions:
                    seen_functions.add(function.name)
                    nodes.extend(library[function.name].node_def)
    return ops


@pytest.fixture(scope="module", params=["tiny_model", "tiny_transformer"])
def trained_translator(request, transform_output_dir) -> translator.Translator:
    """The tiny LSTM and the tiny Transformer, each fitted to TINY_PAIRS."""
    return translator.Translator(request.getfixturevalue(request.param),
                             tft.TFTransformOutput(transform_output_dir),
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
    translator.save(trained_translator, export_dir)
    sentences = [TINY_PAIRS[0][0], TINY_PAIRS[4][0], "unknown words only"]
    result = subprocess.run([sys.executable, str(LOADER_SCRIPT), export_dir, *sentences],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["tf2"][:2] == [TINY_PAIRS[0][1], TINY_PAIRS[4][1]]
    assert loaded["tf1"]["translations"] == loaded["tf2"]
    assert all(score <= 0 for score in loaded["tf1"]["scores"])
    assert ops.non_core_ops(export_dir) == set()  # what a stock TF Serving binary runs


def test_zero_output_length_translates_to_nothing(tiny_model, transform_output_dir):
    silent = translator.Translator(tiny_model, tft.TFTransformOutput(transform_output_dir),
                               DecodingConfig(max_output_length=0))
    outputs = silent.translate(tf.constant([TINY_PAIRS[0][0]]))
    assert outputs[contract.TRANSLATIONS_OUTPUT].numpy().tolist() == [b""]


@pytest.mark.parametrize("signature", SIGNATURES)
def test_a_call_looks_up_the_source_vocabulary_only_and_initialises_no_table(exported_model_dir,
                                                                           signature):
    """Only English comes in: the target side of the Transform graph (on placeholder text)
    is not run per call, and the source table is initialised once at load, not per call."""
    ops = signature_ops(exported_model_dir, signature)
    assert ops["LookupTableFindV2"] == 1
    assert not [op for op in ops if op.startswith("InitializeTable")]
