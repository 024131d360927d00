"""Four runs of the compiled smoke spec, every task through a launcher as strict as open-source KFP.

    ENJA_DATA_ROOT=CORPUS_DIR .venv/bin/python bench/kubeflow_runs.py \
        [--output-dir bench_output/kubeflow_runs]

CORPUS_DIR is the small_parallel_enja corpus with its spans (`enja download-data --dest CORPUS_DIR`
makes one); the runs' pushed models end up in <output-dir>/serving_model/, which
bench/serving_faults.py and the other serving benches take as --model-base-path.

`enja kubeflow` compiles the smoke preset to YAML, reading a landing folder where spans
arrive and a model config file that our model server polls. Each run creates a run in
tests/support/kfp_launcher.py (the open-source backend's rules: container executors only, no
`preCacheCheck`, untyped inputs, converted metadata) and runs every task in DAG order,
each as a subprocess through exactly the spec's command (our container entrypoint):
  run 1  span 0: a cold start, pushed (version A), and the server answers with A;
  run 2  span 1: warm-starts from A and is compared against A; pushed (B) if blessed;
  run 3  span 2 with its two files swapped: stops at DataGate, and nothing after it runs;
  then   `enja rollback --to A` from the files alone (no local ML Metadata): the server
         answers with A again;
  run 4  span 3: ProductionModel hands A to the Trainer (warm start) and the Evaluator
         (its baseline).
Prints each run's tasks with their seconds, the run's total, and each check; exits 1 if a
check fails. The whole spec runs once in the test suite (tests/test_kubeflow_v2.py); these
later runs take minutes each.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from enja.components import names
from enja.models.training import training_summary
from enja.pipeline import cli, configs, pipeline
from enja.serving import model_config, warmup
from enja.serving.server import ModelServer, ServerOptions
from support import kfp_launcher
from support.corpus import BAD_SPANS, real_pairs, write_dev, write_span

SMOKE = configs.PRESETS["smoke"]
PAIRS = 300


@dataclasses.dataclass
class Run:
    launcher: kfp_launcher.Launcher
    failure: kfp_launcher.TaskFailedError | None = None


class Scenario:
    """The landing folder, the compiled spec, the serving folder and the server polling its config."""

    def __init__(self, output_dir: pathlib.Path):
        self.landing = output_dir / "incoming"
        self.pipeline_root = str(output_dir / "pipeline_root")
        self.serving_dir = str(output_dir / "serving_model" / SMOKE.serving.model_name)
        self.config_file = str(output_dir / "models.config")
        self.spec_file = str(output_dir / "pipeline.yaml")
        self.failures: list[str] = []
        self.landing.mkdir(parents=True)
        write_dev(self.landing, PAIRS)
        assert cli.main(["kubeflow", "--preset", "smoke", "--image", "enja-nmt:latest",
                         "--output", self.spec_file, "--pipeline-root", self.pipeline_root,
                         "--data-root", str(self.landing), "--serving-dir", self.serving_dir,
                         "--model-config-file", self.config_file,
                         "--state-dir", str(output_dir / "state"),
                         "--schema-file", pipeline.SCHEMA_FILE]) == 0
        self.spec = kfp_launcher.load_spec(self.spec_file)
        model_config.write_initial_model_config(self.config_file, SMOKE.serving.model_name,
                                                self.serving_dir)
        self.server = ModelServer.from_model_config_file(
            self.config_file, ServerOptions(port=0, poll_interval_s=0.2), poll_wait_s=0.2)

    def check(self, what: str, holds: bool, found: Any) -> None:
        print(f"  {'ok' if holds else 'FAILED'}: {what} ({found})", flush=True)
        if not holds:
            self.failures.append(what)

    def run(self, number: int, span: int, spoil: str | None = None) -> Run:
        pairs = real_pairs(span, PAIRS)
        write_span(self.landing, span, *(BAD_SPANS[spoil](*pairs) if spoil else pairs))
        run = Run(kfp_launcher.Launcher(self.spec, self.pipeline_root, run_id=f"run-{number}"))
        print(f"run {number}: span {span}{f' ({spoil})' if spoil else ''}", flush=True)
        start = time.monotonic()
        for task in run.launcher.task_order():
            task_start = time.monotonic()
            try:
                run.launcher.run(task)
            except kfp_launcher.TaskFailedError as failure:
                run.failure = failure
            print(f"  {task:<26} {'failed after ' if run.failure else ''}"
                  f"{time.monotonic() - task_start:5.1f} s", flush=True)
            if run.failure:
                break
        print(f"  run {number} took {time.monotonic() - start:.0f} s", flush=True)
        return run

    def answering_version(self, stub, timeout_s: float = 60.0) -> int:
        request = warmup.predict_request(["i like cats ."], SMOKE.serving.model_name)
        return stub.Predict(request, timeout=timeout_s, wait_for_ready=True).model_spec.version.value


def _metadata(run: Run, task: str, key: str) -> dict[str, Any]:
    recorded = run.launcher.recorded.get((task, key))
    return {} if recorded is None else dict(recorded.metadata.items())


def _start(run: Run) -> dict[str, Any]:
    return training_summary.read(run.launcher.recorded[("Trainer", "model_run")].uri)["start"]


def _pushed_version(run: Run) -> int | None:
    pushed = _metadata(run, "Pusher", "pushed_model")
    return int(pushed["pushed_version"]) if pushed.get("pushed") == 1 else None


def _evaluation(run: Run) -> tuple[dict[str, Any], dict[str, float]]:
    """The blessing's metadata and the overall dev BLEU of the candidate and the baseline."""
    evaluation = _metadata(run, names.EVALUATOR, names.EVALUATION)
    overall = {model: evaluation[key] for model, key in (("candidate", names.CANDIDATE_BLEU),
                                                         ("baseline", names.BASELINE_BLEU))
               if key in evaluation}
    return _metadata(run, names.EVALUATOR, names.BLESSING), overall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="bench_output/kubeflow_runs")
    args = parser.parse_args()
    output_dir = pathlib.Path(args.output_dir).resolve()
    shutil.rmtree(output_dir, ignore_errors=True)
    scenario = Scenario(output_dir)
    print(f"tasks in DAG order: {', '.join(kfp_launcher.Launcher(scenario.spec, '/').task_order())}")
    scenario.server.start()
    try:
        with grpc.insecure_channel(scenario.server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            _scenario(scenario, stub)
    finally:
        scenario.server.stop()
    print("all checks hold" if not scenario.failures else f"FAILED: {'; '.join(scenario.failures)}")
    return 1 if scenario.failures else 0


def _wait_for(scenario: Scenario, stub, version: int | None, timeout_s: float = 60.0) -> int | None:
    deadline = time.monotonic() + timeout_s
    answering = None
    while time.monotonic() < deadline:
        answering = scenario.answering_version(stub)
        if answering == version:
            break
        time.sleep(0.5)
    return answering


def _scenario(scenario: Scenario, stub) -> None:
    check = scenario.check
    first = scenario.run(1, 0)
    version_a = _pushed_version(first)
    check("run 1 completes", first.failure is None, first.failure)
    check("run 1 starts cold", _start(first)["mode"] == "cold", _start(first))
    check("run 1 pushes a version", version_a is not None, version_a)
    check("the server answers with it", _wait_for(scenario, stub, version_a) == version_a, version_a)

    second = scenario.run(2, 1)
    production = _metadata(second, "ProductionModel", "model")
    blessing, bleu = _evaluation(second)
    version_b = _pushed_version(second)
    check("run 2 completes", second.failure is None, second.failure)
    check("run 2's ProductionModel hands on version A",
          production.get("served_version") == version_a, production)
    check("run 2 warm-starts", _start(second)["mode"] == "warm", _start(second))
    check("run 2's Evaluator compares against it",
          blessing.get("baseline_model") == second.launcher.recorded[("ProductionModel", "model")].uri
          and "baseline" in bleu, f"blessed {blessing.get('blessed')}, dev BLEU {bleu}")
    check("run 2 pushes version B", version_b is not None and version_b != version_a, version_b)
    check("the server answers with B", _wait_for(scenario, stub, version_b) == version_b, version_b)

    third = scenario.run(3, 2, spoil="swapped")
    failure, order = third.failure, third.launcher.task_order()
    after_gate = order[order.index("DataGate") + 1:]
    check("run 3 stops at DataGate", failure is not None and failure.task_name == "DataGate",
          failure and failure.task_name)
    check("and says why", failure is not None and "train span 2: en_script" in str(failure),
          failure and next((line for line in str(failure).splitlines() if "span 2" in line), ""))
    check("nothing after the gate ran", not any(task in after_gate for task, _ in third.launcher.recorded),
          sorted({task for task, _ in third.launcher.recorded}))

    print(f"enja rollback --to {version_a} (files only)", flush=True)
    rolled_back = cli.main(["rollback", "--to", str(version_a), "--output-dir",
                            str(pathlib.Path(scenario.pipeline_root) / "no_local_runs"),
                            "--serving-dir", scenario.serving_dir,
                            "--model-config-file", scenario.config_file]) == 0
    check("the rollback succeeds and the server answers with A",
          rolled_back and _wait_for(scenario, stub, version_a) == version_a, version_a)

    fourth = scenario.run(4, 3)
    production = _metadata(fourth, "ProductionModel", "model")
    blessing, bleu = _evaluation(fourth)
    check("run 4 completes", fourth.failure is None, fourth.failure)
    check("run 4's ProductionModel hands on version A, not B",
          production.get("served_version") == version_a, production)
    check("run 4 warm-starts from it", _start(fourth)["mode"] == "warm", _start(fourth))
    check("run 4's Evaluator compares against it",
          blessing.get("baseline_model") == fourth.launcher.recorded[("ProductionModel", "model")].uri,
          f"blessed {blessing.get('blessed')}, dev BLEU {bleu}")
    check("the pinned server still answers with A", scenario.answering_version(stub) == version_a,
          f"pushed {_pushed_version(fourth)}")


if __name__ == "__main__":
    sys.exit(main())
