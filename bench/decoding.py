"""Dev BLEU of one trained model under other decoding settings: re-exported, not retrained.

    .venv/bin/python bench/decoding.py bench_output/default \
        --length-penalty 0.6 1.0 1.4 --beam-width 4 8

Takes the newest Trainer model and Transform graph of a local pipeline run (e.g. a
`bench/quality.py` run directory), exports the trained weights once per length penalty as
ServingExport does (the other decoding settings as DecodingConfig's defaults, or `--set
decoding.…`), and scores dev.en/dev.ja with each beam width through the
`translate_with_options` signature. Prints a markdown table: what `--set decoding.…` would
give that model, without training it again.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from enja.components import serving_export
from enja.models.evaluation import saved_model_bleu
from enja.pipeline import configs, data
from enja.pipeline.cli import arguments
from enja.serving.config import ServingConfig
from pipeline_runs import latest_output

COLUMNS = ("length penalty", "beam width", "dev BLEU", "seed_bleu", "translation s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the output directory of a local pipeline run")
    parser.add_argument("--length-penalty", type=float, nargs="+", required=True)
    parser.add_argument("--beam-width", type=int, nargs="+", required=True)
    parser.add_argument("--data-root", default=None)
    arguments.add_settings_argument(parser)
    args = parser.parse_args()
    data_root = data.resolve_data_root(args.data_root)
    decoding = configs.with_overrides(configs.PipelineConfig(), args.settings).decoding
    trained_model = latest_output(args.run_dir, "Trainer", "model")
    transform_graph = latest_output(args.run_dir, "Transform", "transform_graph")
    dev_en, dev_ja = (os.path.join(data_root, name) for name in ("dev.en", "dev.ja"))
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for length_penalty in args.length_penalty:
        with tempfile.TemporaryDirectory() as export_dir:
            serving_export.export_model(
                trained_model, transform_graph, export_dir,
                dataclasses.replace(decoding, length_penalty=length_penalty), ServingConfig())
            for beam_width in args.beam_width:
                scores = saved_model_bleu.evaluate_saved_model(
                    os.path.join(export_dir, "Format-Serving"), dev_en, dev_ja,
                    beam_width=beam_width)
                print(f"| {length_penalty} | {beam_width} | {scores['bleu']:.2f} | "
                      f"{scores['seed_bleu']:.3f} | {scores['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
