"""The training time a warm start saves: warm and cold runs on the same data, epoch by epoch.

    .venv/bin/python bench/warm_start.py --continuous-dir continuous_output [--run 5] [--epochs 6]
        [--warm-learning-rate 0.002]

Reads a finished `enja continuous` scenario and replays its run N twice on the same
window of spans, each for the same number of epochs, in fresh output folders:
  warm  from the model that run N started from (the metadata is copied and rolled back
        to that model's version, so the ProductionModel hands it to the Trainer as it did), and
  cold  from scratch.
The Trainer logs greedy dev BLEU after every epoch (models/training/epoch_bleu.py) and the
training seconds so far, so the two curves can be compared at equal quality. Prints
both curves, the Evaluator's dev BLEU of each final model, and the saving at each
level the warm run reached: its training minutes to reach it against the cold run's
(`--existing` prints the same for replays already in --output-dir).
"""
from __future__ import annotations

import argparse
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from enja.models.training import training_summary
from enja.pipeline import configs, local_runner
from enja.pipeline.operations import history, rollback
from enja.serving import model_config
from pipeline_runs import latest_output


def minutes_to_reach(summary: dict, bleu: float) -> float | None:
    """Training minutes until the greedy dev BLEU first reached `bleu`, or None."""
    for seconds, value in zip(summary["epoch_train_seconds"], summary["val_bleu"], strict=True):
        if value >= bleu:
            return seconds / 60
    return None


def replay_warm(continuous: local_runner.OutputLayout, record: history.RunRecord,
                config: configs.PipelineConfig, output_dir: str) -> None:
    """Run `record` again from its base model, with the given config, in a copy of the metadata."""
    layout = local_runner.OutputLayout(output_dir, config)
    os.makedirs(os.path.dirname(layout.metadata_path))
    shutil.copyfile(continuous.metadata_path, layout.metadata_path)
    model_config.write_initial_model_config(
        layout.model_config_file, config.serving.model_name, layout.serving_model_dir)
    # The copy serves that base model, so its ProductionModel hands it to the Trainer.
    version = record.warm_start_from_version
    shutil.copytree(continuous.pushed_dir(version), layout.pushed_dir(version))
    rollback.rollback_to(layout.model_config_file, config.serving.model_name, layout.serving_model_dir,
                         version, rollback.RunsRecord(layout.metadata_connection(), config.pipeline_name))
    local_runner.run(data_root=os.path.join(continuous.output_dir, "incoming"),
                     output_dir=output_dir, config=config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--continuous-dir", required=True)
    parser.add_argument("--run", type=int, help="1-based run of the scenario (default: the last)")
    parser.add_argument("--preset", default="continuous", choices=sorted(configs.PRESETS))
    parser.add_argument("--epochs", type=int, help="epochs of both runs (default: the preset's)")
    parser.add_argument("--warm-learning-rate", type=float,
                        help="the warm run's peak learning rate (default: the preset's "
                             "training.warm_start_learning_rate; 0: the cold run's)")
    parser.add_argument("--output-dir", default="bench_output/warm_start")
    parser.add_argument("--existing", action="store_true",
                        help="read the replays already in --output-dir instead of running them")
    args = parser.parse_args()

    preset = configs.PRESETS[args.preset]
    continuous = local_runner.OutputLayout(args.continuous_dir, preset)
    records = history.history(continuous.metadata_connection())
    record = records[(args.run or len(records)) - 1]
    if record.start_mode != "warm":
        parser.error(f"run {args.run or len(records)} did not warm-start")
    epochs = args.epochs or preset.training.epochs
    window = configs.with_overrides(preset, [f"data.end_span={record.spans[-1]}",
                                             f"data.window_spans={len(record.spans)}"])
    replays = {"warm": os.path.join(args.output_dir, "warm"), "cold": os.path.join(args.output_dir, "cold")}
    if not args.existing:
        if os.path.exists(args.output_dir):
            parser.error(f"{args.output_dir} exists: remove it, or pass --existing to read it")
        warm_settings = [f"training.warm_start_epochs={epochs}"]
        if args.warm_learning_rate is not None:
            warm_settings.append(f"training.warm_start_learning_rate={args.warm_learning_rate}")
        replay_warm(continuous, record, configs.with_overrides(window, warm_settings), replays["warm"])
        local_runner.run(data_root=os.path.join(continuous.output_dir, "incoming"),
                         output_dir=replays["cold"],
                         config=configs.with_overrides(window, ["training.warm_start=false",
                                                                f"training.epochs={epochs}"]))
    runs = {name: history.latest_run(local_runner.OutputLayout(folder, preset).metadata_connection())
            for name, folder in replays.items()}
    summaries = {name: training_summary.read(latest_output(folder, "Trainer", "model_run", preset))
                 for name, folder in replays.items()}
    print(f"Spans {record.spans}, {epochs} epochs each; warm from version {record.warm_start_from_version}.")
    print("| start | epoch | training min | greedy dev BLEU | dev loss |")
    print("|---|---|---|---|---|")
    for name, summary in summaries.items():
        for epoch, (seconds, bleu, loss) in enumerate(zip(
                summary["epoch_train_seconds"], summary["val_bleu"], summary["val_loss"], strict=True),
                start=1):
            print(f"| {name} | {epoch} | {seconds / 60:.1f} | {bleu:.2f} | {loss:.3f} |")
    for name, run in runs.items():
        print(f"{name}: Evaluator dev BLEU {run.candidate_bleu:.2f} (beam), "
              f"{run.training_minutes:.1f} training min, {run.minutes:.1f} pipeline min")
    print("| greedy dev BLEU reached | warm: training min | cold: training min | saved min |")
    print("|---|---|---|---|")
    warm, cold = summaries["warm"], summaries["cold"]
    for bleu in sorted({*warm["val_bleu"], cold["val_bleu"][-1]}):
        warm_minutes, cold_minutes = minutes_to_reach(warm, bleu), minutes_to_reach(cold, bleu)
        saved = ("-" if None in (warm_minutes, cold_minutes) else f"{cold_minutes - warm_minutes:.1f}")
        print(f"| {bleu:.2f} | {_minutes(warm_minutes)} | {_minutes(cold_minutes)} | {saved} |")


def _minutes(minutes: float | None) -> str:
    return "not within its epochs" if minutes is None else f"{minutes:.1f}"


if __name__ == "__main__":
    main()
