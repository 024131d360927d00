"""run_fn on two workers under MultiWorkerMirroredStrategy, against run_fn on one device.

Each worker is this file run as a script by the venv's Python, with a TF_CONFIG that names
both workers on 127.0.0.1: a real FnArgs, Transform's real output on support.corpus's tiny
pairs, the Trainer's real code from strategy to saved state. In TFX every worker gets the same
output paths; here the second worker gets paths of its own, so that anything it wrote
there would show, and a temporary folder of its own, which must be empty at the end.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from enja.models.config import ModelConfig, TrainingConfig
from enja.models.export import reexport
from enja.models.training import trainer, training_summary, warm_start_state
from support.corpus import TINY_PAIRS, tfrecord_data_accessor, write_transformed

WORKERS = 2
# 5 global batches of 8 examples, 4 on each worker's replica.
TRAIN_COPIES = 5
TRAINING = TrainingConfig(batch_size=8, epochs=2, learning_rate=1e-2)
CUSTOM_CONFIG = {
    "model": dataclasses.asdict(ModelConfig(embedding_dim=16, units=32)),
    "training": dataclasses.asdict(TRAINING),
}
# Seconds the workers may take, both together.
WORKER_TIMEOUT_S = 600


def _run_fn(fields: dict) -> None:
    """The Trainer's run_fn with FnArgs of `fields` (JSON-able) and the accessor."""
    trainer.run_fn(FnArgs(data_accessor=tfrecord_data_accessor(), **fields))


def _fn_args_fields(transform_output_dir: str, train: str, dev: str, outputs: pathlib.Path) -> dict:
    return {"train_files": [train], "eval_files": [dev], "transform_output": transform_output_dir,
            "serving_model_dir": str(outputs / "model" / "Format-Serving"),
            "model_run_dir": str(outputs / "model_run"), "base_model": None,
            "custom_config": CUSTOM_CONFIG}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _start_worker(index: int, cluster: list[str], fields: dict, temp_dir: pathlib.Path,
                  log: pathlib.Path) -> subprocess.Popen:
    temp_dir.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(temp_dir), "TF_CONFIG": json.dumps(
        {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})}
    with open(log, "wb") as out:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, __file__, json.dumps(fields)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _wait(workers: list[subprocess.Popen], logs: list[pathlib.Path]) -> None:
    """Waits for every worker to succeed; fails with the logs of those that did not."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while any(worker.poll() is None for worker in workers) and time.monotonic() < deadline:
        if any(worker.returncode not in (None, 0) for worker in workers):
            break  # the others would wait for its collectives until they time out
        time.sleep(0.5)
    failures = [f"worker {index} (exit code {worker.returncode}; None: still running):\n"
                + log.read_text()[-5000:]
                for index, (worker, log) in enumerate(zip(workers, logs, strict=True))
                if worker.returncode != 0]
    assert not failures, "\n".join(failures)


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.fixture(scope="module")
def transformed_pairs(transform_output_dir, tmp_path_factory) -> tuple[str, str]:
    """Training and dev TFRecords: TINY_PAIRS TRAIN_COPIES times over, and once."""
    folder = tmp_path_factory.mktemp("transformed")
    return (write_transformed(transform_output_dir, TINY_PAIRS * TRAIN_COPIES,
                               str(folder / "train.gz")),
            write_transformed(transform_output_dir, TINY_PAIRS, str(folder / "dev.gz")))


def test_two_workers_train_as_one_device_and_only_the_chief_writes(
        transform_output_dir, transformed_pairs, tmp_path):
    train, dev = transformed_pairs
    chief_out, other_out, single_out = (tmp_path / name for name in ("chief", "other", "single"))
    cluster = [f"127.0.0.1:{port}" for port in _free_ports(WORKERS)]
    logs = [tmp_path / f"worker{index}.log" for index in range(WORKERS)]
    temp_dirs = [tmp_path / f"tmp{index}" for index in range(WORKERS)]
    workers = [_start_worker(index, cluster,
                             _fn_args_fields(transform_output_dir, train, dev, out),
                             temp_dirs[index], logs[index])
               for index, out in enumerate((chief_out, other_out))]

    try:
        # The same run on one device, here, while the workers start.
        _run_fn(_fn_args_fields(transform_output_dir, train, dev, single_out))
        _wait(workers, logs)
    finally:
        _stop(workers)

    chief = training_summary.read(str(chief_out / "model_run"))
    single = training_summary.read(str(single_out / "model_run"))
    assert chief["epochs_run"] == single["epochs_run"] == TRAINING.epochs
    # Each global batch is the one device's batch split between the workers, so the first
    # epoch's loss agrees but for float rounding and the dropout masks each replica draws
    # (0.2% apart here; a loss left as each replica's own mean logs twice as much).
    assert chief["loss"][0] == pytest.approx(single["loss"][0], rel=0.01)

    # The chief's state rebuilds the model it trained, as ServingExport rebuilds it.
    state = reexport.load(warm_start_state.state_dir(str(chief_out / "model" / "Format-Serving")))
    reexport.rebuild(state, tft.TFTransformOutput(transform_output_dir))
    assert state.model_config == CUSTOM_CONFIG["model"]

    assert not other_out.exists()
    assert list(temp_dirs[1].iterdir()) == []


if __name__ == "__main__":  # a worker of the test above
    _run_fn(json.loads(sys.argv[1]))
