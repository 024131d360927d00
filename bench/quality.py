"""Dev-set quality and training cost of each preset, trained through the real pipeline.

    .venv/bin/python bench/quality.py --presets quick default
    .venv/bin/python bench/quality.py --presets default --existing --output-dir runs
    .venv/bin/python bench/quality.py --presets quick --set model.bidirectional=false \
        --output-dir runs/one-way

Each preset runs the whole local pipeline into <output-dir>/<preset> (a directory that
must not exist yet: a cached run would time nothing) — or, with --existing, reuses
that run. The trained model is scored on dev.en/dev.ja with greedy decoding and with
the preset's beam width, whether or not the Evaluator blessed it. Prints a markdown
table; times are this machine's, read from ML Metadata and the Trainer's summary.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from enja.models.evaluation import saved_model_bleu
from enja.models.training import training_summary
from enja.pipeline import configs, data, local_runner
from enja.pipeline.cli import arguments
from enja.pipeline.operations import history
from pipeline_runs import latest_output, pipeline_seconds

COLUMNS = ("preset", "pipeline min", "training min", "epochs (kept)", "tokens/s",
           "greedy BLEU", "greedy seed_bleu", "beam BLEU", "beam seed_bleu", "pushed")


def measure(label: str, config: configs.PipelineConfig, run_dir: str,
            data_root: str) -> list[str]:
    pushed = history.latest_run(
        local_runner.OutputLayout(run_dir, config).metadata_connection()).pushed_version
    summary = training_summary.read(latest_output(run_dir, "Trainer", "model_run", config))
    model_dir = os.path.join(latest_output(run_dir, "ServingExport", "model", config), "Format-Serving")
    dev_en, dev_ja = (os.path.join(data_root, name) for name in ("dev.en", "dev.ja"))
    greedy = saved_model_bleu.evaluate_saved_model(model_dir, dev_en, dev_ja, beam_width=1)
    beam = saved_model_bleu.evaluate_saved_model(model_dir, dev_en, dev_ja,
                                           beam_width=config.decoding.beam_width)
    return [
        label,
        f"{pipeline_seconds(run_dir, config) / 60:.1f}",
        f"{summary['train_seconds'] / 60:.1f}",
        f"{summary['epochs_run']} ({summary['kept_epoch']})",
        f"{summary['tokens_per_second']:.0f}",
        f"{greedy['bleu']:.1f}", f"{greedy['seed_bleu']:.3f}",
        f"{beam['bleu']:.1f} (width {config.decoding.beam_width})", f"{beam['seed_bleu']:.3f}",
        "yes" if pushed is not None else "no",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(configs.PRESETS),
                        default=[name for name in configs.PRESETS if name != "smoke"])
    parser.add_argument("--output-dir", default="bench_output")
    parser.add_argument("--data-root", default=None)
    arguments.add_settings_argument(parser)
    parser.add_argument("--existing", action="store_true",
                        help="score runs already in <output-dir>/<preset> instead of training")
    args = parser.parse_args()
    data_root = data.resolve_data_root(args.data_root)
    rows = []
    for preset in args.presets:
        config = configs.with_overrides(configs.PRESETS[preset], args.settings)
        label = " ".join([preset, *args.settings])
        run_dir = os.path.join(args.output_dir, preset)
        if not args.existing:
            if os.path.exists(run_dir):
                parser.error(f"{run_dir} exists: remove it, or pass --existing to score it")
            local_runner.run(data_root=data_root, output_dir=run_dir, config=config)
        rows.append(measure(label, config, run_dir, data_root))
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
