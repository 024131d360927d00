"""Training candidates side by side: the Trainer's own run_fn on a finished run's transformed
examples, one candidate after another, with their dev loss, greedy dev BLEU and seconds by epoch.

    .venv/bin/python bench/train_candidates.py --run-dir RUN_DIR --out-dir CANDIDATES_DIR \\
        --candidate base= --candidate bf16=training.precision=mixed_bfloat16 \\
        --candidate b64=training.batch_size=64,training.learning_rate=0.0028

RUN_DIR is the output folder of an `enja run` (or `bench/quality.py`) whose Transform output the
candidates train on, with its preset's settings (--preset) and each candidate's overrides on top
(comma-separated GROUP.FIELD=VALUE). The pipeline's other steps are left out: every candidate
reads the same examples, so the comparison is of the training alone, and a candidate costs its
training time only. A candidate's folder keeps its training summary and TensorBoard logs.
"""
from __future__ import annotations

import argparse
import glob
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfx.components.trainer.fn_args_utils import FnArgs

from enja.models.training import trainer, training_summary
from enja.pipeline import configs
from enja.pipeline.cli import arguments
from pipeline_runs import latest_output
from train_speed import example_data_accessor


def candidate(text: str) -> tuple[str, list[str]]:
    """NAME=GROUP.FIELD=VALUE,… as (name, settings)."""
    name, _, settings = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=GROUP.FIELD=VALUE,…")
    return name, [setting for setting in settings.split(",") if setting]


def train(config: configs.PipelineConfig, run_dir: str, out_dir: str) -> dict:
    """Runs the Trainer's run_fn on the run's transformed examples; returns its summary."""
    examples = latest_output(run_dir, "Transform", "transformed_examples", config)
    model_run_dir = os.path.join(out_dir, "model_run")
    fn_args = FnArgs(
        train_files=glob.glob(os.path.join(examples, "Split-train", "*")),
        eval_files=glob.glob(os.path.join(examples, "Split-eval", "*")),
        transform_output=latest_output(run_dir, "Transform", "transform_graph", config),
        data_accessor=example_data_accessor(), serving_model_dir=os.path.join(out_dir, "model"),
        model_run_dir=model_run_dir, base_model=None, custom_config=config.trainer_config())
    trainer.run_fn(fn_args)
    return training_summary.read(model_run_dir)


def _cells(values: list[float], digits: int) -> str:
    return " ".join(f"{value:.{digits}f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished run's output folder")
    parser.add_argument("--out-dir", required=True, help="a new folder for the candidates' runs")
    parser.add_argument("--preset", default=configs.DEFAULT_PRESET, choices=sorted(configs.PRESETS))
    parser.add_argument("--candidate", type=candidate, action="append", required=True,
                        metavar="NAME=GROUP.FIELD=VALUE,…")
    arguments.add_settings_argument(parser)
    args = parser.parse_args()
    rows = []
    for name, settings in args.candidate:
        config = configs.with_overrides(configs.PRESETS[args.preset], [*args.settings, *settings])
        out_dir = os.path.join(args.out_dir, name)
        if os.path.exists(out_dir):
            parser.error(f"{out_dir} exists: choose another --out-dir or candidate name")
        started = time.perf_counter()
        summary = train(config, args.run_dir, out_dir)
        seconds = summary["epoch_train_seconds"]
        epoch_seconds = [after - before for before, after in zip([0.0, *seconds], seconds, strict=False)]
        rows.append([name, ",".join(settings) or "(preset)", _cells(summary["val_loss"], 3),
                     _cells(summary["val_bleu"], 1), _cells(epoch_seconds, 0),
                     f"{summary['tokens_per_second']:.0f}", f"{(time.perf_counter() - started) / 60:.1f}"])
        print(f"# {name}: dev loss {rows[-1][2]}", flush=True)
    columns = ("candidate", "settings", "dev loss by epoch", "greedy dev BLEU by epoch",
               "training s by epoch", "tokens/s", "minutes in all")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
