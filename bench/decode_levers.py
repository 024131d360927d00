"""Serving-side cost of the model speed settings: one-sentence beam search, same weights.

    .venv/bin/python bench/decode_levers.py                       # the default LSTM
    .venv/bin/python bench/decode_levers.py --architecture transformer --requests 200

Builds the default preset's model (or the Transformer candidate) once plainly and once
per setting (model.project_inputs_once; model.fused_qkv), copies the plain
model's weights into each, and times the in-graph beam search the exported SavedModel
runs (`decoding.beam_search_decode`, width 8, GNMT length penalty 1.0, the default
DecodingConfig's length limits) on one 16-id sentence at a time, the variants taking
turns call by call. First compares every variant's decodes and scores with the plain
model's. Random weights
decode to the length limit, so every call runs the longest decode serving allows: an
upper bound of a real sentence's latency, the same for every variant. Prints p50 and p90
in milliseconds.
"""
import argparse
import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from enja.models.architectures import decoding, registry
from enja.models.config import DecodingConfig
from enja.pipeline import configs
from enja.preprocessing import features
from step_levers import TRANSFORMER

SOURCE_VOCAB, TARGET_VOCAB, SOURCE_LENGTH = 4109, 4906, 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="lstm", choices=["lstm", "transformer"])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--beam-width", type=int, default=8)
    args = parser.parse_args()
    settings = [] if args.architecture == "lstm" else TRANSFORMER
    base = configs.with_overrides(configs.PRESETS["default"], settings).model
    variants = ({"plain": {}, "project_inputs_once": {"project_inputs_once": True}}
                if args.architecture == "lstm" else {"plain": {}, "fused_qkv": {"fused_qkv": True}})
    decoding_config = DecodingConfig(beam_width=args.beam_width)
    keras.utils.set_random_seed(0)
    models = {}
    for name, changes in variants.items():
        model = registry.build(dataclasses.replace(base, **changes), SOURCE_VOCAB,
                                    TARGET_VOCAB)
        if models:
            model.trainer.set_weights(models["plain"].trainer.get_weights())
        models[name] = model

    def translator(model):
        @tf.function(input_signature=[tf.TensorSpec([None, SOURCE_LENGTH], tf.int64)])
        def translate(source_ids):
            limits = decoding.output_length_limits(
                source_ids, decoding_config.max_output_length, decoding_config.max_length_ratio,
                decoding_config.max_length_offset)
            return decoding.beam_search_decode(model, source_ids, args.beam_width, limits,
                                               decoding_config.length_penalty)
        return translate

    functions = {name: translator(model) for name, model in models.items()}
    rng = np.random.default_rng(0)
    sentences = []
    for _ in range(20):
        ids = np.zeros((1, SOURCE_LENGTH), np.int64)
        length = rng.integers(5, 13)
        ids[0, :length] = rng.integers(features.NUM_RESERVED, SOURCE_VOCAB, size=length)
        sentences.append(tf.constant(ids))
    # Traces and warms up, and compares each variant's decodes and scores with the plain
    # model's: random weights leave near-ties between hypotheses, which another order of
    # float additions may break the other way, so the ids may differ where the scores agree.
    same = dict.fromkeys(functions, 0)
    worst = dict.fromkeys(functions, 0.0)
    for sentence in sentences:
        outputs = {name: [t.numpy() for t in f(sentence)] for name, f in functions.items()}
        for name, (ids, scores) in outputs.items():
            same[name] += np.array_equal(ids, outputs["plain"][0])
            worst[name] = max(worst[name], float(np.max(np.abs(scores - outputs["plain"][1]))))
    for name in functions:
        print(f"{name}: {same[name]} of {len(sentences)} decodes identical to plain's, "
              f"largest score difference {worst[name]:.2e}")
    times = {name: [] for name in functions}
    for i in range(args.requests):
        for name, f in functions.items():
            start = time.perf_counter()
            f(sentences[i % len(sentences)])[0].numpy()
            times[name].append(1000 * (time.perf_counter() - start))
    print(f"{args.architecture}, beam width {args.beam_width}, {args.requests} one-sentence "
          f"calls each, interleaved")
    print("| variant | p50 ms | p90 ms |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {np.percentile(values, 50):.1f} | {np.percentile(values, 90):.1f} |")


if __name__ == "__main__":
    main()
