"""What a Trainer run keeps of its model: what ServingExport exports and a later run warm-starts from.

A serving SavedModel holds the serving graph, not a Keras model that training can
resume. So the Trainer writes, into its Model artifact (`<uri>/warm_start/`, beside
`<uri>/Format-Serving/`), and ServingExport copies into its export's `assets.extra/warm_start/`
(so that a pushed version carries it, and the model in production can be warm-started from;
TF Serving reads nothing in assets.extra but the warm-up file):

    weights.npz        every weight of the trained model, keyed by `named_weights`
    source_vocab.txt   the Transform vocabularies the model was trained with, one token
    target_vocab.txt   a line (UTF-8); a token's id is its line index + NUM_RESERVED
    state.json         {"model_config": <ModelConfig as a dict>, "training": <what
                       trained the weights, or null>}, written last

`training` is {"inputs": <the Trainer's inputs and settings>, "summary": <its
training_summary.json>} of the Trainer run that trained the weights: a later run with
the same inputs keeps the weights instead of training them again (models/training/warm_start.py).

`state.json` is written last, under a temporary name renamed into place, and removed
first when a state is rewritten: a directory without it is no state at all, so a
half-written state never looks valid. Everything goes through tf.io.gfile (gs:// works).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from enja.models.config import ModelConfig
from enja.preprocessing import features

STATE_DIR = "warm_start"
# Where a SavedModel keeps extra files of its own (TF Serving's warm-up file, too).
ASSETS_EXTRA = "assets.extra"
MANIFEST = "state.json"
WEIGHTS = "weights.npz"
VOCAB_FILES = {"source": "source_vocab.txt", "target": "target_vocab.txt"}


class Vocabularies(NamedTuple):
    """Token lists without the reserved tokens: the token of id i is [i - NUM_RESERVED]."""
    source: list[bytes]
    target: list[bytes]

    @classmethod
    def of(cls, tf_transform_output: tft.TFTransformOutput) -> Vocabularies:
        return cls(tf_transform_output.vocabulary_by_name(features.SOURCE_VOCAB_NAME),
                   tf_transform_output.vocabulary_by_name(features.TARGET_VOCAB_NAME))


class State(NamedTuple):
    # The base model's ModelConfig as saved: a dict, so a field added or removed since
    # still loads (and then differs, so the run starts cold).
    model_config: dict[str, Any]
    vocabularies: Vocabularies
    weights: dict[str, np.ndarray]
    # {"inputs": …, "summary": …} of the training run; None in states saved before it was kept.
    training: dict[str, Any] | None = None


def state_dir(serving_model_dir: str) -> str:
    """The Trainer's state, beside its (empty) serving folder: `<uri>/Format-Serving` → `<uri>/warm_start`."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), STATE_DIR)


def exported_state_dir(saved_model_dir: str) -> str:
    """The state inside an exported SavedModel: `<saved model>/assets.extra/warm_start`."""
    return os.path.join(saved_model_dir, ASSETS_EXTRA, STATE_DIR)


def named_weights(model: keras.Model) -> dict[str, keras.Variable]:
    """Each weight of `model` once, keyed "<layer name>/<index in the layer's weights>".

    Keras's own variable paths change between two builds in one process (the
    bidirectional encoder's inner LSTMs become forward_lstm_1, ...); the layer names
    are fixed by the architecture's build. A weight that two layers share (the tied output layer
    reuses the target embedding) is keyed by the first layer that has it.
    """
    named: dict[str, keras.Variable] = {}
    seen: set[int] = set()
    for layer in model.layers:
        for index, weight in enumerate(layer.weights):
            if id(weight) not in seen:
                seen.add(id(weight))
                named[f"{layer.name}/{index}"] = weight
    return named


def _write(path: str, content: bytes) -> None:
    with tf.io.gfile.GFile(path, "wb") as out:
        out.write(content)


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as source:
        return source.read()


def save(directory: str, model: keras.Model, model_config: ModelConfig,
         vocabularies: Vocabularies, training: dict[str, Any] | None = None) -> None:
    """Writes the state of `model` (the teacher-forcing model) into `directory`."""
    save_state(directory, State(
        dataclasses.asdict(model_config), vocabularies,
        {key: np.asarray(weight) for key, weight in named_weights(model).items()}, training))


def save_state(directory: str, state: State) -> None:
    """Writes `state` into `directory`, its manifest last."""
    manifest = os.path.join(directory, MANIFEST)
    tf.io.gfile.makedirs(directory)
    if tf.io.gfile.exists(manifest):
        tf.io.gfile.remove(manifest)
    arrays = io.BytesIO()
    np.savez(arrays, **state.weights)
    _write(os.path.join(directory, WEIGHTS), arrays.getvalue())
    for side, name in VOCAB_FILES.items():
        _write(os.path.join(directory, name),
               b"".join(token + b"\n" for token in getattr(state.vocabularies, side)))
    _write(manifest + ".tmp", json.dumps(
        {"model_config": state.model_config, "training": state.training}, indent=2).encode())
    tf.io.gfile.rename(manifest + ".tmp", manifest, overwrite=True)


def load(directory: str) -> State | None:
    """The state saved in `directory`, or None if there is none (or only part of one)."""
    manifest = os.path.join(directory, MANIFEST)
    if not tf.io.gfile.exists(manifest):
        return None
    saved = json.loads(_read(manifest))
    with np.load(io.BytesIO(_read(os.path.join(directory, WEIGHTS)))) as arrays:
        weights = dict(arrays)
    vocabularies = Vocabularies(**{
        side: _read(os.path.join(directory, name)).split(b"\n")[:-1]
        for side, name in VOCAB_FILES.items()})
    return State(saved["model_config"], vocabularies, weights, saved.get("training"))
