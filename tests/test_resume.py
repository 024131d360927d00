"""A run killed during training, started again, completes on the finished components' outputs."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2

from enja.pipeline import configs, local_runner
from enja.pipeline.operations import lineage

SMOKE = configs.PRESETS["smoke"]
Execution = metadata_store_pb2.Execution


def _trainer_running(layout: local_runner.OutputLayout) -> bool:
    if not os.path.exists(layout.metadata_path):
        return False
    try:
        runs = lineage.Lineage(layout.metadata_connection()).runs()
    except errors.MetadataStoreError:  # the running pipeline holds the database for a moment
        return False
    trainer = runs[-1].nodes.get("Trainer") if runs else None
    return trainer is not None and trainer.execution.last_known_state == Execution.RUNNING


def _training_began(layout: local_runner.OutputLayout) -> bool:
    """Keras's TensorBoard callback has opened the first epoch's event file: fit is under way."""
    return bool(glob.glob(os.path.join(layout.pipeline_root, "Trainer", "model_run", "*", "train",
                                       "events.out.tfevents.*")))


def test_a_run_killed_in_training_completes_when_started_again(tmp_path):
    layout = local_runner.OutputLayout(str(tmp_path / "output"), SMOKE)
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "enja.pipeline.cli", "run", "--preset", "smoke",
         "--output-dir", layout.output_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not (_trainer_running(layout) and _training_began(layout)):  # into the first epoch
            assert pipeline.poll() is None, "the pipeline ended before training started"
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
    finally:
        os.killpg(pipeline.pid, signal.SIGKILL)
        pipeline.wait()
    [killed_run] = lineage.Lineage(layout.metadata_connection()).runs()
    killed_trainer = killed_run.nodes["Trainer"]
    assert killed_trainer.execution.last_known_state == Execution.RUNNING
    assert "Pusher" not in killed_run.nodes

    record = local_runner.run(preset="smoke", output_dir=layout.output_dir)

    assert record.pushed_version is not None and record.stopped_at is None
    runs = lineage.Lineage(layout.metadata_connection()).runs()
    assert runs[0].run_id == killed_run.run_id and len(runs) == 2
    resumed = runs[-1].nodes
    for finished in ("ParallelCorpusExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform"):
        assert resumed[finished].execution.last_known_state == Execution.CACHED, finished
        for key, artifacts in resumed[finished].outputs.items():
            assert ([a.id for a in artifacts]
                    == [a.id for a in killed_run.nodes[finished].outputs[key]]), (finished, key)
    # Training ran again into a new artifact; the killed run's half-written model folder is
    # still on disk, but was never published, so nothing could read it.
    killed_dir = os.path.join(layout.pipeline_root, "Trainer", "model", str(killed_trainer.execution.id))
    assert os.path.isdir(killed_dir) and killed_trainer.outputs == {}
    new_model = resumed["Trainer"].output("model")
    assert new_model.uri != killed_dir and new_model.state == metadata_store_pb2.Artifact.LIVE
    assert resumed["ServingExport"].input("trained_model").id == new_model.id
    exported = resumed["ServingExport"].output("model")
    for consumer in ("Evaluator", "InfraCheck", "Pusher"):
        assert resumed[consumer].input("model").id == exported.id, consumer
