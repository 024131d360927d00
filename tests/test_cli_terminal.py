"""What `enja` shows an operator: no library start-up noise (unless --verbose), one line for a
mistake, and the incident commands answering without loading TensorFlow."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from ml_metadata import metadata_store

from enja.pipeline import cli, configs
from enja.pipeline.cli import terminal
from enja.pipeline.layout import OutputLayout
from enja.serving import model_config

MODEL = "enja"
# A line of TensorFlow's (or XLA's) C++ logging: "2024-01-01 00:00:00.000000: E external/local_xla/…".
CPP_LOG_LINE = re.compile(r"^\S+ \S+: [IWEF] (tensorflow|external)/", re.MULTILINE)


def enja(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`enja ARGS` in a new process, with none of the quieting variables set by the caller."""
    env = {name: value for name, value in os.environ.items() if name not in terminal.QUIET_ENVIRONMENT}
    return subprocess.run([sys.executable, *python_flags, "-m", "enja.pipeline.cli", *args],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def sentences(path, *lines: str) -> str:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


def test_tensorflow_start_up_lines_show_only_with_verbose(tmp_path):
    """`enja evaluate` imports TensorFlow before it finds no model: the start-up lines (the CUDA
    factories, oneDNN, CPU features) come with --verbose only, and the error line either way."""
    model = str(tmp_path / "no_model")
    files = ["--src", sentences(tmp_path / "src.en", "hello ."),
             "--ref", sentences(tmp_path / "ref.ja", "やあ 。")]
    error = f"enja evaluate: SavedModel file does not exist at: {model}/"

    quiet = enja("evaluate", "--model", model, *files)
    assert quiet.returncode == 2
    assert quiet.stderr.startswith(error) and len(quiet.stderr.splitlines()) == 1, quiet.stderr

    verbose = enja("--verbose", "evaluate", "--model", model, *files)
    assert verbose.returncode == 2
    assert CPP_LOG_LINE.search(verbose.stderr), verbose.stderr
    assert verbose.stderr.splitlines()[-1].startswith(error)


@pytest.fixture
def pushed(tmp_path) -> dict[str, str]:
    """Two pushed versions and the model config file that serves the newest."""
    versions_dir = tmp_path / "serving_model" / MODEL
    for version in (1, 2):
        (versions_dir / str(version)).mkdir(parents=True)
    config_file = str(tmp_path / "models.config")
    model_config.write_initial_model_config(config_file, MODEL, str(versions_dir))
    return {"versions_dir": str(versions_dir), "config_file": config_file}


def empty_store(output_dir: str) -> str:
    """An output folder whose ML Metadata store exists and holds no run yet."""
    metadata_store.MetadataStore(OutputLayout(output_dir, configs.PRESETS[configs.DEFAULT_PRESET])
                                 .metadata_connection())
    return output_dir


def imported(stderr: str, module: str) -> bool:
    """Whether `python -X importtime` reported importing `module`."""
    return re.search(rf"\|\s+{re.escape(module)}$", stderr, re.MULTILINE) is not None


@pytest.mark.parametrize(("command", "unloaded"), [
    ("rollback", ("tensorflow", "tfx")),
    ("history", ("tensorflow", "tfx")),
])
def test_operator_commands_answer_without_loading_tensorflow(command, unloaded, pushed, tmp_path):
    args = {
        "rollback": ["rollback", "--output-dir", str(tmp_path / "runs_elsewhere"), "--to", "1",
                     "--serving-dir", pushed["versions_dir"], "--model-config-file", pushed["config_file"]],
        "history": ["history", "--output-dir", empty_store(str(tmp_path / "output"))],
    }[command]
    result = enja(*args, python_flags=("-X", "importtime"))
    messages = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert (result.returncode, messages) == (0, [])
    assert not [module for module in unloaded if imported(result.stderr, module)]
    if command == "rollback":
        assert model_config.read_model_config(pushed["config_file"]).model_config_list.config[0] \
            .model_version_policy.specific.versions == [1]


def test_translate_answers_without_loading_tensorflow(standin_model_base):
    """`enja translate` needs only TF Serving's protos, which it loads without TensorFlow."""
    from enja.serving.server import ModelServer, ServerOptions

    server = ModelServer(standin_model_base, MODEL, ServerOptions(port=0))
    server.start()
    try:
        result = enja("translate", "--server", server.address, "hello", "thank you",
                      python_flags=("-X", "importtime"))
    finally:
        server.stop()
    assert (result.returncode, result.stdout) == (0, "こんにちは\nありがとう\n"), result.stderr[-2000:]
    assert not [module for module in ("tensorflow", "tensorflow.python", "tfx")
                if imported(result.stderr, module)]


MISTAKES = {
    "evaluate, a missing source file": (
        ["evaluate", "--model", "{tmp}/model", "--src", "{tmp}/missing.en", "--ref", "{tmp}/ref.ja"],
        "enja evaluate: cannot read {tmp}/missing.en: No such file or directory"),
    "evaluate, no SavedModel": (
        ["evaluate", "--model", "{tmp}/model", "--src", "{tmp}/src.en", "--ref", "{tmp}/ref.ja"],
        "enja evaluate: SavedModel file does not exist at: {tmp}/model/"),
    "evaluate, files of different lengths": (
        ["evaluate", "--model", "{tmp}/model", "--src", "{tmp}/src.en", "--ref", "{tmp}/src.en.twice"],
        "enja evaluate: Source and reference files differ in length"),
    "evaluate, a beam of 0": (
        ["evaluate", "--model", "{tmp}/model", "--src", "{tmp}/src.en", "--ref", "{tmp}/ref.ja",
         "--beam", "0"],
        "enja evaluate: error: argument --beam: 0 is not at least 1"),
    "attention, no SavedModel": (
        ["attention", "--model", "{tmp}/model", "--out", "{tmp}/a.png", "hello ."],
        "enja attention: SavedModel file does not exist at: {tmp}/model/"),
    "attention, a missing folder for the plot": (
        ["attention", "--model", "{tmp}/model", "--out", "{tmp}/nowhere/a.png", "hello ."],
        "enja attention: no folder {tmp}/nowhere to write {tmp}/nowhere/a.png in"),
    "report, a missing folder for the page": (
        ["report", "--output-dir", "{tmp}/output", "--out", "{tmp}/nowhere/report.html"],
        "enja report: no folder {tmp}/nowhere to write {tmp}/nowhere/report.html in"),
    "download-data, a destination under a file": (
        ["download-data", "--dest", "{tmp}/src.en/corpus"],
        "enja download-data: [Errno 20] Not a directory: '{tmp}/src.en/corpus'"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_is_one_line_and_a_failure(mistake, tmp_path, capsys):
    """One line that names what is wrong, a non-zero exit, no traceback (argparse's own
    mistakes come after its usage line, as usual)."""
    args, expected = MISTAKES[mistake]
    tmp = str(tmp_path)
    sentences(tmp_path / "src.en", "hello .")
    sentences(tmp_path / "src.en.twice", "hello .", "hello .")
    sentences(tmp_path / "ref.ja", "やあ 。")
    empty_store(f"{tmp}/output")
    try:
        code = cli.main([arg.format(tmp=tmp) for arg in args])
    except SystemExit as exit_:  # argparse's
        code = exit_.code
    lines = capsys.readouterr().err.splitlines()
    assert code != 0
    assert lines and lines[-1].startswith(expected.format(tmp=tmp)), lines
    assert all(line.startswith(("usage: ", " ")) for line in lines[:-1]), lines
