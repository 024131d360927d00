"""A trained model rebuilt from its warm-start state and exported for serving.

The Trainer keeps only the trained weights (models/training/warm_start_state.py); the serving
SavedModel is built from them afterwards, by the ServingExport component and by
bench/export_latency.py. So decoding settings change without training again, and the
same weights can be exported with newer export code.
"""
from __future__ import annotations

import dataclasses

import tensorflow_transform as tft

from enja.models.architectures import registry
from enja.models.architectures.seq2seq import EncoderDecoder
from enja.models.config import DecodingConfig, ModelConfig
from enja.models.export import translator
from enja.models.training import warm_start_state
from enja.models.training.warm_start_state import State, Vocabularies
from enja.preprocessing import transform
from enja.serving import warmup
from enja.serving.config import ServingConfig


def load(state_dir: str) -> State:
    """The state in `state_dir`; raises when there is none (or only part of one)."""
    state = warm_start_state.load(state_dir)
    if state is None:
        raise FileNotFoundError(f"no warm-start state in {state_dir} (no {warm_start_state.MANIFEST}): "
                                "the Trainer writes it last, so its run did not finish")
    return state


def model_config(state: State) -> ModelConfig:
    """The ModelConfig the state was trained with; raises if it has settings ModelConfig lacks."""
    unknown = state.model_config.keys() - {field.name for field in dataclasses.fields(ModelConfig)}
    if unknown:
        raise ValueError(f"the saved model config has settings ModelConfig no longer has: "
                         f"{', '.join(sorted(unknown))}; export it with the code that trained it")
    return ModelConfig(**state.model_config)


def rebuild(state: State, tf_transform_output: tft.TFTransformOutput) -> EncoderDecoder:
    """The trained model of `state`, built for the Transform output it was trained on.

    Built in the current Keras dtype policy; weights are float32 whatever precision
    trained them. Raises, naming what differs, unless the vocabularies are the state's
    and every weight fits by key and shape.
    """
    if Vocabularies.of(tf_transform_output) != state.vocabularies:
        raise ValueError("the Transform graph's vocabularies are not the ones the model was "
                         "trained with: export it with the Trainer's own transform_graph")
    model = registry.build(model_config(state),
                                *transform.vocabulary_sizes(tf_transform_output))
    weights = warm_start_state.named_weights(model.trainer)
    if weights.keys() != state.weights.keys():
        raise ValueError("the saved weights do not fit the model their config builds: only one "
                         f"of them has {', '.join(sorted(weights.keys() ^ state.weights.keys()))}")
    for key, weight in weights.items():
        if tuple(weight.shape) != state.weights[key].shape:
            raise ValueError(f"the saved weight {key} has shape {state.weights[key].shape}, the "
                             f"model its config builds {tuple(weight.shape)}")
        weight.assign(state.weights[key])
    return model


def export_serving_model(model: EncoderDecoder, tf_transform_output: tft.TFTransformOutput,
                         decoding: DecodingConfig, serving: ServingConfig, export_dir: str) -> None:
    """The SavedModel TF Serving loads, with its warm-up requests, into `export_dir`."""
    translator.save(translator.Translator(model, tf_transform_output, decoding), export_dir)
    warmup.write_warmup_requests(export_dir, serving.warmup_sentences, serving.model_name)
