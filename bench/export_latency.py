"""One-sentence latency of exported SavedModels side by side, loaded the way TF Serving
and Python load them.

    .venv/bin/python bench/export_latency.py OLD_DIR [OTHER_DIR ...] [--requests 300]
    .venv/bin/python bench/export_latency.py OLD_DIR \\
        --reexport MODEL_URI TRANSFORM_GRAPH_URI [--reexport-dir DIR] [--reexport-set GROUP.FIELD=VALUE]

`--reexport` first exports a Model artifact (a Trainer's or a ServingExport's) again with
the current models/export/translator.py, as ServingExport does (models/export/reexport.py): its weights
from its warm-start state, its vocabularies from the Transform graph it was trained on,
the default DecodingConfig. An export change is then measured on the same trained
weights as the model it replaces (e.g. OLD_DIR the version the Pusher pushed from that
artifact). `--reexport-set` changes a decoding setting (e.g. `decoding.beam_width=8`, that
of the preset the run had) or a model setting that keeps the weights (e.g.
`model.project_inputs_once=false`: the same weights in Keras's own LSTM layer).

All models must translate the first --sentences dev sentences ($ENJA_DATA_ROOT/dev.en)
the same, with both loaders (with --trained-apart, models trained separately, whose
translations differ, are timed on those sentences without that check); then each model
answers --requests one-sentence calls, cycling through those sentences, through
serving/loader.LoadedModel.run (the TF1 session, as TF Serving runs it) and through
`tf.saved_model.load`, after warm-up. Models and loaders take turns call by call, as this
machine's speed drifts within minutes. Prints p50 and p90 in milliseconds per model and
loader, and the median of the per-call difference from the first model with the same loader
and sentence: on a busy machine it shows a difference far below the spread of the latencies
themselves.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from enja.models.config import DecodingConfig
from enja.models.export import reexport
from enja.models.training import warm_start_state
from enja.pipeline import configs, data
from enja.serving import contract
from enja.serving.config import ServingConfig
from enja.serving.loader import LoadedModel

# One sentence in, its translation and score out.
Translate = Callable[[str], tuple[bytes, float]]


def with_settings(state: warm_start_state.State, settings: list[str]
                  ) -> tuple[warm_start_state.State, DecodingConfig]:
    """`state` with "model.field=value" settings applied to the model config it is built by,
    and the DecodingConfig with the "decoding.field=value" ones."""
    if any(not setting.startswith(("model.", "decoding.")) for setting in settings):
        raise SystemExit(f"--reexport-set takes model and decoding settings only, not {settings}")
    trained = configs.replace(configs.PipelineConfig(), model=state.model_config)
    changed = configs.with_overrides(trained, settings)
    return state._replace(model_config=dataclasses.asdict(changed.model)), changed.decoding


def export_again(model_uri: str, transform_graph: str, export_dir: str,
                 settings: list[str]) -> str:
    """Exports the weights of a Model artifact again, with the current export code."""
    output = tft.TFTransformOutput(transform_graph)
    state, decoding = with_settings(
        reexport.load(os.path.join(model_uri, warm_start_state.STATE_DIR)), settings)
    model = reexport.rebuild(state, output)
    reexport.export_serving_model(model, output, decoding, ServingConfig(), export_dir)
    return export_dir


def tf1_translate(export_dir: str) -> Translate:
    loaded = LoadedModel(export_dir, version=0)

    def translate(sentence: str) -> tuple[bytes, float]:
        outputs = loaded.run(contract.SERVING_SIGNATURE,
                             {contract.TEXT_INPUT: np.array([sentence.encode()], dtype=object)},
                             (contract.TRANSLATIONS_OUTPUT, contract.SCORES_OUTPUT))
        return outputs[contract.TRANSLATIONS_OUTPUT][0], float(outputs[contract.SCORES_OUTPUT][0])
    return translate


def tf2_translate(export_dir: str) -> Translate:
    signature = tf.saved_model.load(export_dir).signatures[contract.SERVING_SIGNATURE]

    def translate(sentence: str) -> tuple[bytes, float]:
        outputs = signature(**{contract.TEXT_INPUT: tf.constant([sentence])})
        return (outputs[contract.TRANSLATIONS_OUTPUT].numpy()[0],
                float(outputs[contract.SCORES_OUTPUT].numpy()[0]))
    return translate


LOADERS = {"TF1 session": tf1_translate, "tf.saved_model.load": tf2_translate}


def check_same_translations(translators: dict[tuple[int, str], Translate],
                            sentences: list[str]) -> None:
    """Raises unless every translator gives the first one's translation of every sentence."""
    (first_name, first), *others = translators.items()
    for sentence in sentences:
        expected, expected_score = first(sentence)
        for name, translate in others:
            translation, score = translate(sentence)
            if translation != expected or not np.isclose(score, expected_score, rtol=1e-5):
                raise AssertionError(f"{name} translates {sentence!r} as {translation.decode()!r} "
                                     f"({score}), {first_name} as {expected.decode()!r} "
                                     f"({expected_score})")


def latencies(translators: dict[tuple[int, str], Translate], sentences: list[str],
              requests: int, warmup: int) -> dict[tuple[int, str], np.ndarray]:
    """Seconds per one-sentence call of each translator, taking turns call by call."""
    seconds: dict[tuple[int, str], list[float]] = {name: [] for name in translators}
    for i in range(warmup + requests):
        sentence = sentences[i % len(sentences)]
        for name, translate in translators.items():
            start = time.perf_counter()
            translate(sentence)
            if i >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return {name: np.array(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dirs", nargs="+", help="SavedModel directories to compare")
    parser.add_argument("--reexport", nargs=2, metavar=("MODEL_URI", "TRANSFORM_GRAPH_URI"),
                        help="also compare a Model artifact's weights exported with the current code")
    parser.add_argument("--reexport-dir", help="where to write the re-export (default: a temp dir)")
    parser.add_argument("--reexport-set", action="append", default=[], metavar="GROUP.FIELD=VALUE",
                        help="a model or decoding setting of the re-export; repeatable")
    parser.add_argument("--requests", type=int, default=300, help="timed calls per model and loader")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    parser.add_argument("--sentences", type=int, default=100,
                        help="dev sentences the calls cycle through, which must translate the same")
    parser.add_argument("--trained-apart", action="store_true",
                        help="the models have different weights: skip the agreement check")
    args = parser.parse_args()

    export_dirs = list(args.export_dirs)
    if args.reexport:
        export_dirs.append(export_again(*args.reexport, args.reexport_dir
                                        or os.path.join(tempfile.mkdtemp(), "reexport"),
                                        args.reexport_set))
    with open(os.path.join(data.resolve_data_root(None), "dev.en"), encoding="utf-8") as dev:
        sentences = [line.strip() for line in dev][:args.sentences]
    translators = {(index, loader): load(export_dir)
                   for index, export_dir in enumerate(export_dirs)
                   for loader, load in LOADERS.items()}
    if not args.trained_apart:
        check_same_translations(translators, sentences)
    seconds = latencies(translators, sentences, args.requests, args.warmup)

    for index, export_dir in enumerate(export_dirs):
        print(f"model {index}: {export_dir}")
    agreement = "were not compared" if args.trained_apart else "translate the same in all"
    print(f"\n{len(sentences)} dev sentences {agreement}; {args.requests} "
          f"one-sentence calls each after {args.warmup} to warm up, {os.cpu_count()} CPUs\n")
    print("| model | loader | p50 ms | p90 ms | per-call difference from model 0, p50 ms |\n"
          "|---|---|---|---|---|")
    for (index, loader), values in seconds.items():
        p50, p90 = np.percentile(values, [50, 90]) * 1e3
        difference = np.median(values - seconds[0, loader]) * 1e3
        print(f"| {index} | {loader} | {p50:.1f} | {p90:.1f} | {difference:+.2f} |")


if __name__ == "__main__":
    main()
