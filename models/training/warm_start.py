"""How a Trainer run starts: from the production model's weights (warm), from scratch
(cold), or not at all, keeping the production model's weights when they were trained from
this run's very inputs (reused, `reusable_state`).

Each pipeline run on newly arrived data gets the model in production as its base
model (components/production_model.py). If that model kept a warm-start state
(`warm_start_state.exported_state_dir`) and was built with
the same model settings, the new model — built for the new vocabularies — takes over
its weights: every weight that does not depend on the vocabulary as it is, and the
source and target embedding rows, the output layer's kernel columns and its bias
entries token by token. A token in both vocabularies gets its old row, the reserved
ids 0..3 map to themselves, and new tokens keep their fresh initialisation. The
optimizer starts afresh either way.

The model settings that must match are all of ModelConfig but those that shape none of
the architecture's weights (`config.WEIGHT_NEUTRAL_SETTINGS`: dropout, and the other
architecture's settings). A setting added to ModelConfig later must match too until it
is listed as neutral. The saved weights must also fit the new model, which they do
unless the architecture's build changed.
Otherwise — and with training.warm_start off, or without a base model or its state —
the run starts cold.

`Start.as_json()` is the `start` object of training_summary.json:

    mode        "warm", "cold" or "reused"
    reason      why, in words: what was carried over, or why nothing was
    base_model  the base model's serving directory, or null when there is none
    source      {"carried": n, "new": m}: of the new vocabulary's tokens (reserved ids
    target      not counted), n took their rows from the base model and m start fresh
                (on a cold start every token is new)
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enja.models.config import WEIGHT_NEUTRAL_SETTINGS, ModelConfig, TrainingConfig
from enja.models.training import warm_start_state
from enja.models.training.training_summary import COLD, REUSED, WARM
from enja.models.training.warm_start_state import State, Vocabularies
from enja.preprocessing import features


@dataclasses.dataclass(frozen=True)
class TokenCounts:
    carried: int
    new: int


@dataclasses.dataclass(frozen=True)
class Start:
    mode: str
    reason: str
    base_model: str | None
    source: TokenCounts
    target: TokenCounts

    @property
    def warm(self) -> bool:
        return self.mode == WARM

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def log_line(self) -> str:
        if self.mode == REUSED:
            return f"Not trained again, the weights of {self.base_model} kept: {self.reason}"
        if self.warm:
            return f"Warm start from {self.base_model}: {self.reason}"
        return f"Cold start: {self.reason}"


def _config_mismatch(base: dict[str, Any], config: ModelConfig) -> str | None:
    """Which weight-shaping settings differ, in words, or None if the weights carry over.

    A state saved before a setting existed was built as its default builds (that is how
    settings are added), so a missing setting reads as the default.
    """
    base = {**dataclasses.asdict(ModelConfig()), **base}
    current = dataclasses.asdict(config)
    if base["architecture"] != current["architecture"]:
        differ = ["architecture"]
    else:
        neutral = WEIGHT_NEUTRAL_SETTINGS[config.architecture]
        differ = sorted(name for name in current.keys() - neutral if base[name] != current[name])
    if not differ:
        return None
    return ("the base model has " + ", ".join(f"{name}={base[name]!r}" for name in differ)
            + "; this config " + ", ".join(f"{name}={current[name]!r}" for name in differ))


def _old_ids(old_tokens: list[bytes], new_tokens: list[bytes]) -> np.ndarray:
    """For each new id, the id of the same token in the old vocabulary, or -1 if it is new."""
    old_index = {token: index + features.NUM_RESERVED for index, token in enumerate(old_tokens)}
    return np.array([*range(features.NUM_RESERVED),
                     *(old_index.get(token, -1) for token in new_tokens)], dtype=np.int64)


def _by_token(old: np.ndarray, fresh: np.ndarray, old_ids: np.ndarray, axis: int) -> np.ndarray:
    """`fresh` with the slices along `axis` of carried tokens replaced by their old ones."""
    value = np.array(fresh)
    carried = np.flatnonzero(old_ids >= 0)
    np.moveaxis(value, axis, 0)[carried] = np.moveaxis(old, axis, 0)[old_ids[carried]]
    return value


def _vocabulary_axes(model: keras.Model) -> dict[int, tuple[str, int]]:
    """The weights with one slice per token: id(weight) → (side, token axis)."""
    logits = model.get_layer("logits")
    axes = {id(model.get_layer("source_embedding").embeddings): ("source", 0),
            id(model.get_layer("target_embedding").embeddings): ("target", 0),
            id(logits.bias): ("target", 0)}
    if isinstance(logits, keras.layers.Dense):  # untied: a [units, vocabulary] kernel
        axes[id(logits.kernel)] = ("target", 1)
    return axes


def _weights_mismatch(model: keras.Model, state: State) -> str | None:
    """Why the base model's weights do not fit `model` apart from vocabulary sizes, or None.

    With equal model settings they fit unless the architecture's build itself changed since.
    """
    weights = warm_start_state.named_weights(model)
    if weights.keys() != state.weights.keys():
        return ("the base model's weights do not fit this model: only one of them has "
                + ", ".join(sorted(weights.keys() ^ state.weights.keys())))
    axes = _vocabulary_axes(model)
    for key, weight in weights.items():
        shape, base_shape = list(weight.shape), list(state.weights[key].shape)
        if id(weight) in axes and len(shape) == len(base_shape):
            token_axis = axes[id(weight)][1]
            shape[token_axis] = base_shape[token_axis]
        if shape != base_shape:
            return (f"the base model's weight {key} has shape {tuple(state.weights[key].shape)}, "
                    f"this model's {tuple(weight.shape)}")
    return None


def _carry_over(model: keras.Model, state: State, vocabularies: Vocabularies
                ) -> dict[str, TokenCounts]:
    """Sets the weights of `model` from `state`, which fits it, token by token."""
    old_ids = {side: _old_ids(getattr(state.vocabularies, side), getattr(vocabularies, side))
               for side in Vocabularies._fields}
    axes = _vocabulary_axes(model)
    for key, weight in warm_start_state.named_weights(model).items():
        value = state.weights[key]
        if id(weight) in axes:
            side, axis = axes[id(weight)]
            value = _by_token(value, np.asarray(weight), old_ids[side], axis)
        weight.assign(value)
    return {side: TokenCounts(carried=int(np.sum(ids[features.NUM_RESERVED:] >= 0)),
                              new=int(np.sum(ids[features.NUM_RESERVED:] < 0)))
            for side, ids in old_ids.items()}


def _cold(reason: str, base_model: str | None, vocabularies: Vocabularies) -> Start:
    return Start(COLD, reason, base_model, TokenCounts(0, len(vocabularies.source)),
                 TokenCounts(0, len(vocabularies.target)))


def start_model(model: keras.Model, config: ModelConfig, training: TrainingConfig,
                base_model: str | None, vocabularies: Vocabularies) -> Start:
    """Warm-starts `model` (the teacher-forcing model, freshly built with `config` for
    `vocabularies`) if it can, and says how it starts.

    `base_model` is the served SavedModel's directory (`base_model_dir`), or None while no
    model is in production.
    """
    if not training.warm_start:
        return _cold("training.warm_start is off", base_model, vocabularies)
    if base_model is None:
        return _cold("no model in production yet", base_model, vocabularies)
    state = warm_start_state.load(warm_start_state.exported_state_dir(base_model))
    if state is None:
        return _cold("the base model kept no warm-start state", base_model, vocabularies)
    mismatch = (_config_mismatch(state.model_config, config)
                or _weights_mismatch(model, state))
    if mismatch:
        return _cold(mismatch, base_model, vocabularies)
    counts = _carry_over(model, state, vocabularies)
    source, target = counts["source"], counts["target"]
    reason = (f"carried {source.carried:,} of {source.carried + source.new:,} source and "
              f"{target.carried:,} of {target.carried + target.new:,} target tokens "
              f"({source.new:,} and {target.new:,} new)")
    return Start(WARM, reason, base_model, source, target)


def training_inputs(train_files: list[str], eval_files: list[str], transform_graph: str,
                    config: ModelConfig, training: TrainingConfig) -> dict[str, Any]:
    """What a Trainer run's weights come from, as JSON: its examples, Transform graph and
    settings. Artifact URIs name the data: new spans or a new Transform run give new ones."""
    return json.loads(json.dumps({
        "train_files": list(train_files), "eval_files": list(eval_files),
        "transform_graph": transform_graph, "model": dataclasses.asdict(config),
        "training": dataclasses.asdict(training)}))


def reusable_state(base_model: str | None, inputs: dict[str, Any]
                   ) -> tuple[Start, State] | None:
    """The base model's state and how it starts the run, if the base model was trained from
    `inputs` (this run's `training_inputs`); otherwise None.

    A run after a pushed one gets that model as its base model, so its Trainer is not
    cached even when nothing else changed (a new beam width, say). Training it on the same
    data with the same settings would train the same model further; the run keeps its
    weights instead, and its summary is that of the run that trained them.
    """
    state = base_model and warm_start_state.load(warm_start_state.exported_state_dir(base_model))
    if not state or not state.training or state.training["inputs"] != inputs:
        return None
    source, target = (TokenCounts(carried=len(tokens), new=0) for tokens in state.vocabularies)
    reason = "it was trained on the same examples and Transform graph with the same settings"
    return Start(REUSED, reason, base_model, source, target), state


def base_model_dir(fn_args_base_model: str | None) -> str | None:
    """The Trainer's base model directory if it holds a model: the ProductionModel output
    has none while nothing is in production."""
    if fn_args_base_model and tf.io.gfile.exists(fn_args_base_model):
        return fn_args_base_model
    return None


def training_for(training: TrainingConfig, start: Start) -> TrainingConfig:
    """The training settings of this start: a warm start's own epochs and learning rate.

    The Trainer fits and schedules the learning rate with the result, so the cosine
    decays over the epochs actually planned.
    """
    if not start.warm:
        return training
    return dataclasses.replace(
        training,
        epochs=training.warm_start_epochs or training.epochs,
        learning_rate=training.warm_start_learning_rate or training.learning_rate)
