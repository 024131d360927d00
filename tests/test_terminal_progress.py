"""What long work shows while it runs: a line rewritten in place on a terminal, a line every few
minutes in a log, the time left; and `enja run` in a real terminal: progress and no library noise."""
from __future__ import annotations

import io
import logging
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest
import tensorflow as tf
from absl import logging as absl_logging

from enja.models.training.progress import EpochProgress, ProgressLine, duration
from enja.pipeline import progress

CPP_LOG_LINE = re.compile(r"^\S+ \S+: [IWEF] (tensorflow|external)/", re.MULTILINE)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_durations_read_as_a_person_reads_them():
    assert [duration(s) for s in (0.4, 42, 185, 3730)] == ["0 s", "42 s", "3:05", "1:02:10"]


def test_a_terminal_line_is_rewritten_in_place_a_few_times_a_second():
    clock, screen = Clock(), Terminal()
    line = ProgressLine(screen, clock=clock)
    line.update("step 1")
    clock.now = 0.1
    line.update("step 2")  # too soon after the last redraw: skipped
    clock.now = 0.5
    line.update("step 3")
    line.done("done")
    assert screen.getvalue() == "\r\x1b[Kstep 1\r\x1b[Kstep 3\r\x1b[Kdone\n"


def test_a_log_gets_a_line_every_interval_and_every_end():
    clock, log = Clock(), io.StringIO()
    line = ProgressLine(log, log_interval_s=120, clock=clock)
    for second in range(0, 300, 10):
        clock.now = second
        line.update(f"at {second} s")
    line.done("finished")
    assert log.getvalue().splitlines() == ["at 0 s", "at 120 s", "at 240 s", "finished"]


def test_training_shows_its_step_and_the_time_left_from_its_pace():
    """Two epochs of 4 steps: the first step builds the graph and is left out of the pace; the
    second epoch is estimated from the first's whole time, validation included."""
    clock, log = Clock(), io.StringIO()
    shown = EpochProgress(epochs=2, steps_per_epoch=4, line=ProgressLine(log, log_interval_s=0, clock=clock),
                          clock=clock)
    shown.on_epoch_begin(0)
    for step, at in enumerate((30, 40, 50, 60)):  # 30 s for the first step, then 10 s a step
        clock.now = at
        shown.on_train_batch_end(step, {"loss": 5.0 - step})
    clock.now = 70  # validation
    shown.on_epoch_end(0, {"loss": 2.0, "val_loss": 2.5, "val_bleu": 12.34})
    shown.on_epoch_begin(1)
    clock.now = 85
    shown.on_train_batch_end(0, {"loss": 1.9})
    lines = log.getvalue().splitlines()
    assert lines[0] == "training: epoch 1/2, step 1/4, loss 5.000"
    # After step 2: 10 s a step, 2 steps left in the epoch, then a 4-step epoch.
    assert lines[1] == "training: epoch 1/2, step 2/4, loss 4.000 · epoch 20 s left, training about 1:00 left"
    assert lines[4] == ("training: epoch 1/2 took 1:10: loss 2.000, dev loss 2.500, dev BLEU 12.3"
                        " · about 1:10 left")
    # The second epoch's pace: 15 s for its first step, 3 more to go.
    assert lines[5] == "training: epoch 2/2, step 1/4, loss 1.900 · epoch 45 s left, training about 45 s left"


def _component(message: str, node_id: str) -> None:
    """What TFX's local runner logs around each component, through absl."""
    absl_logging.info(message, node_id)


def test_the_run_shows_each_step_and_the_time_left_from_the_last_run(tmp_path):
    """Steps are followed through TFX's absl records, also after TensorFlow saves a SavedModel
    (which saves and restores absl's verbosity); the estimates are the last run's times."""
    log = io.StringIO()
    estimates = {"A": 10.0, "Trainer": 100.0, "C": 5.0}
    with progress.reporting(["A", "Trainer", "C"], estimates, ProgressLine(log, log_interval_s=0)):
        _component("Component %s is running.", "A")
        tf.saved_model.save(tf.Module(), str(tmp_path / "saved"))
        _component("Component %s is finished.", "A")
        _component("Component %s is running.", "Trainer")
        _component("Component %s is finished.", "Trainer")
    lines = [re.sub(r"took \d+ s", "took N s", line) for line in log.getvalue().splitlines()]
    assert lines[0] == "[ 1/3] A (last time 10 s)"
    assert lines[1] == "[ 1/3] A took N s · the run about 1:45 left"
    assert lines[2] == "[ 2/3] Trainer (last time 1:40)"
    assert lines[3] == "[ 2/3] Trainer took N s · the run about 5 s left"
    assert logging.getLogger("absl").propagate  # as it was


@pytest.fixture
def absl_at_its_default() -> Iterator[None]:
    """absl's logger at its own default level, WARNING, whatever earlier tests in the process
    left it at (a TFX run leaves it at INFO)."""
    saved = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    yield
    absl_logging.set_verbosity(saved)


def test_warnings_still_reach_the_terminal_while_the_run_is_followed(caplog, absl_at_its_default):
    """absl's INFO is taken for the progress alone: what the root logger's handlers (here
    pytest's) got before, they get still, and no more."""
    with progress.reporting(["A"], {}, ProgressLine(io.StringIO())):
        absl_logging.warning("a real warning")
        absl_logging.info("an info line")
    assert [record.getMessage() for record in caplog.records] == ["a real warning"]


def _run_in_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Runs a command on a pseudo-terminal, as a user's shell would, and returns what it showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    shown = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 600)
        if not ready:
            process.kill()
            raise AssertionError("the command went quiet for 10 minutes")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=60), shown.decode("utf-8", errors="replace")


@pytest.mark.skipif(not os.environ.get("ENJA_DATA_ROOT"), reason="needs the corpus: set ENJA_DATA_ROOT")
def test_enja_run_in_a_terminal_shows_progress_and_no_library_noise(tmp_path):
    env = {name: value for name, value in os.environ.items()
           if name not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    code, shown = _run_in_terminal(
        [sys.executable, "-m", "enja.pipeline.cli", "run", "--preset", "smoke", "--set", "training.epochs=3",
         "--output-dir", str(tmp_path / "run")], env)
    assert code == 0, shown
    lines = [line.rsplit("\x1b[K", 1)[-1] for line in shown.replace("\r\n", "\n").split("\n")]
    assert "[ 7/11] Trainer" in lines, shown
    assert any(re.fullmatch(r"\[ 6/11\] Transform took \d+ s", line) for line in lines), shown
    assert any(re.fullmatch(r"training: epoch 3/3 took \d+ s: loss [\d.]+, dev loss [\d.]+, dev BLEU [\d.]+",
                            line) for line in lines), shown
    # The running step's line and training's, rewritten in place.
    assert re.search(r"\r\x1b\[K\[ 6/11\] Transform \d+ s\r", shown), shown
    assert "\r\x1b[Ktraining: epoch 1/3, step 1/" in shown, shown
    assert lines[-2].startswith("Pushed version "), shown
    assert not CPP_LOG_LINE.search(shown), shown
    for noise in ("WARNING:absl:", "UserWarning", "Traceback", "Exception ignored"):
        assert noise not in shown, shown
