"""`enja serve --model_config_file`: TF Serving's model config, version policies, labels and reloads,
against a real server on real SavedModels, and the operators' helpers that rewrite the file."""
import contextlib
import dataclasses
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from enja.pipeline import cli
from enja.serving import model_config, versions, warmup
from enja.serving.model_config import ModelConfigError, ModelServerConfig
from enja.serving.server import ModelServer, ServerOptions
from support.serving import (
    AVAILABLE,
    END,
    LIMITS,
    MODEL,
    SENTENCES,
    Hammer,
    config_text,
    copy_version,
    eventually,
    message,
    model_entry,
    status_code,
    text_request,
    wait_for_status,
)

OPTIONS = ServerOptions(port=0, poll_interval_s=0.1, limits=LIMITS, max_load_retries=0)
POLL_S = 0.1  # --model_config_file_poll_wait_seconds in these tests
SPECIFIC_1_2 = "model_version_policy { specific { versions: 1 versions: 2 } }"


def set_policy(path: str, model_name: str, policy: model_config.VersionPolicy) -> ModelServerConfig:
    """Change the model's version policy in the file, as `enja rollback` does."""
    config = model_config.with_policy(model_config.read_model_config(path), model_name, policy, path)
    model_config.write_model_config(path, config)
    return config


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def versions_dir(standin_model_base, tmp_path) -> str:
    """<tmp>/base/enja/ holding versions 1, 2 and 3 of the stand-in model, each with warm-up requests."""
    model_dir = str(shutil.copytree(os.path.join(standin_model_base, MODEL), tmp_path / "base" / MODEL))
    warmup.write_warmup_requests(os.path.join(model_dir, "1"), SENTENCES, MODEL)
    for version in (2, 3):
        copy_version(model_dir, 1, version)
    return model_dir


@contextlib.contextmanager
def serving(server: ModelServer):
    """Start the server and yield its Prediction and Model service stubs; stop it afterwards."""
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
                   model_service_pb2_grpc.ModelServiceStub(channel))
    finally:
        server.stop()


def answered_by(predictions, **spec) -> int:
    """The version that answered a Predict call (response model_spec.version)."""
    return predictions.Predict(text_request(SENTENCES, **spec), timeout=30).model_spec.version.value


def status_request(name: str = MODEL, **spec) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    for field, value in spec.items():
        setattr(request.model_spec, field, value)
    return request


def available(models, name: str = MODEL) -> list[int]:
    statuses = models.GetModelStatus(status_request(name), timeout=10).model_version_status
    return [status.version for status in statuses if status.state == AVAILABLE]


# --- version policies ------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "served"), [
    ("", [3]),
    ("model_version_policy { latest { num_versions: 2 } }", [2, 3]),
    ("model_version_policy { specific { versions: 1 versions: 3 } }", [1, 3]),
    ("model_version_policy { all {} }", [1, 2, 3]),
], ids=["default-latest-1", "latest-2", "specific", "all"])
def test_version_policy_decides_the_served_versions(versions_dir, tmp_path, policy, served):
    # A relative base path is taken relative to the config file's folder, not the working directory.
    path = write(tmp_path / "models.config", config_text(model_entry(f"base/{MODEL}", policy)))
    with serving(ModelServer.from_model_config_file(path, OPTIONS)) as (predictions, models):
        assert available(models) == served
        assert answered_by(predictions) == max(served)
        for version in served:
            assert answered_by(predictions, version=version) == version


def test_rolling_back_and_forward_in_the_file_never_fails_a_request(versions_dir, tmp_path):
    """No call fails, and once the version rolled away from is unloaded, every call sent answers from
    the one rolled to (judged by when calls were sent, not answered, to hold on a loaded machine)."""
    path = str(tmp_path / "models.config")
    assert model_config.write_initial_model_config(path, MODEL, versions_dir)
    server = ModelServer.from_model_config_file(path, OPTIONS, poll_wait_s=POLL_S)
    with serving(server) as (predictions, models), Hammer(predictions, threads=4) as hammer:
        hammer.wait_for_version(3)
        for pin, unloaded, serving_now in ((lambda: set_policy(path, MODEL, model_config.pinned(1)), 3, 1),
                                           (lambda: set_policy(path, MODEL, model_config.LATEST), 1, 3)):
            pin()
            hammer.wait_for_version(serving_now)
            wait_for_status(models, unloaded, END)
            assert hammer.versions_for_calls_sent_after(time.monotonic()) == {serving_now}
            assert available(models) == [serving_now]
    assert hammer.failures == []


# --- labels ----------------------------------------------------------------------------------

def test_requests_can_name_a_version_label(versions_dir):
    config = model_config.parse_model_config(
        config_text(model_entry(versions_dir, SPECIFIC_1_2, {"stable": 1, "canary": 2})))
    with serving(ModelServer.from_model_config(config, OPTIONS)) as (predictions, models):
        assert answered_by(predictions, version_label="stable") == 1
        assert answered_by(predictions, version_label="canary") == 2
        metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata.model_spec.name, metadata.model_spec.version_label = MODEL, "canary"
        assert predictions.GetModelMetadata(metadata, timeout=30).model_spec.version.value == 2
        statuses = models.GetModelStatus(status_request(version_label="stable"),
                                         timeout=10).model_version_status
        assert [(s.version, s.state) for s in statuses] == [(1, AVAILABLE)]

        metadata.model_spec.version_label = "nope"
        for call, request in ((predictions.Predict, text_request(SENTENCES, version_label="nope")),
                              (predictions.GetModelMetadata, metadata),
                              (models.GetModelStatus, status_request(version_label="nope"))):
            with pytest.raises(grpc.RpcError) as raised:
                call(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            assert "label: nope" in raised.value.details()


# --- HandleReloadConfigRequest ---------------------------------------------------------------

def test_reload_config_request_applies_a_config_and_rejects_a_bad_one(versions_dir, tmp_path):
    path = tmp_path / "models.config"
    write(path, config_text(model_entry(versions_dir)))
    file_text = path.read_text()
    with serving(ModelServer.from_model_config_file(str(path), OPTIONS)) as (predictions, models):
        assert answered_by(predictions) == 3
        good = message(config_text(model_entry(versions_dir,
                                               "model_version_policy { specific { versions: 2 } }",
                                               {"stable": 2})))
        response = models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=good),
                                                    timeout=60)
        assert response.HasField("status") and response.status.error_code == 0
        # Applied by the time the call returns: the new version loaded first, then the old one went.
        assert answered_by(predictions) == 2 and answered_by(predictions, version_label="stable") == 2
        assert available(models) == [2]

        bad_configs = {
            # latest 1 serves 3
            "label-not-served": config_text(model_entry(versions_dir, "", {"stable": 2})),
            "platform": config_text(model_entry(versions_dir, platform="pytorch")),
            "duplicate": config_text(model_entry(versions_dir), model_entry(versions_dir)),
            "empty": "",
        }
        for text in bad_configs.values():
            request = model_management_pb2.ReloadConfigRequest(config=message(text))
            assert status_code(models.HandleReloadConfigRequest, request) == grpc.StatusCode.INVALID_ARGUMENT
        assert answered_by(predictions) == 2 and answered_by(predictions, version_label="stable") == 2
        assert available(models) == [2]
    assert path.read_text() == file_text, "a reload over gRPC must not rewrite the config file"


def test_reload_adds_and_drops_models(versions_dir):
    one = model_config.parse_model_config(config_text(model_entry(versions_dir)))
    both = message(config_text(model_entry(versions_dir),
                               model_entry(versions_dir, "model_version_policy { specific { versions: 1 } }",
                                           name="enja_old")))
    with serving(ModelServer.from_model_config(one, OPTIONS)) as (predictions, models):
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=both), timeout=60)
        assert answered_by(predictions, name="enja_old") == 1 and answered_by(predictions) == 3
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=one), timeout=60)
        assert status_code(predictions.Predict, text_request(SENTENCES, name="enja_old")) \
            == grpc.StatusCode.NOT_FOUND
        assert answered_by(predictions) == 3


@pytest.mark.parametrize(("options", "beside_ok", "elsewhere_ok"), [
    ({}, True, False),  # by default, only beside the models the server started with
    ({"enable_reload_config": False}, False, False),
    ({"reload_config_roots": ("ELSEWHERE",)}, False, True),
])
def test_reloads_over_the_network_load_only_from_allowed_folders(versions_dir, tmp_path, options, beside_ok,
                                                                 elsewhere_ok):
    """A caller could otherwise make the server load and run any SavedModel it can read."""
    elsewhere = shutil.copytree(versions_dir, tmp_path / "elsewhere" / MODEL)
    if "reload_config_roots" in options:
        options = {"reload_config_roots": (str(elsewhere.parent),)}
    start = model_config.parse_model_config(config_text(model_entry(versions_dir)))
    with serving(ModelServer.from_model_config(start, dataclasses.replace(OPTIONS, **options))) as (
            predictions, models):
        serving_now = 3
        for base_path, version, ok in ((versions_dir, 2, beside_ok), (str(elsewhere), 1, elsewhere_ok)):
            request = model_management_pb2.ReloadConfigRequest(config=message(config_text(
                model_entry(base_path, f"model_version_policy {{ specific {{ versions: {version} }} }}"))))
            if ok:
                models.HandleReloadConfigRequest(request, timeout=60)
                serving_now = version
            else:
                assert status_code(models.HandleReloadConfigRequest,
                                   request) == grpc.StatusCode.PERMISSION_DENIED
            assert answered_by(predictions) == serving_now


# --- polling the file ------------------------------------------------------------------------

def test_a_file_that_cannot_be_applied_is_logged_and_the_old_config_stays(versions_dir, tmp_path, caplog):
    path = tmp_path / "models.config"
    write(path, config_text(model_entry(versions_dir)))
    server = ModelServer.from_model_config_file(str(path), OPTIONS, poll_wait_s=POLL_S)
    with serving(server) as (predictions, models):
        for text, problem in (("model_config_list { config { name: ", "not a ModelServerConfig"),
                              (config_text(model_entry(versions_dir, "", {"stable": 1})), "label 'stable'")):
            write(path, text)
            eventually(lambda problem=problem: any(problem in r.getMessage() and str(path) in r.getMessage()
                                                   for r in caplog.records),
                       what=f"a logged error about {problem}")
            assert answered_by(predictions) == 3 and available(models) == [3]
        write(path, config_text(model_entry(versions_dir,
                                            "model_version_policy { specific { versions: 2 } }")))
        eventually(lambda: answered_by(predictions) == 2, what="the fixed file adopted")


# --- start-up and the command line -----------------------------------------------------------

@pytest.mark.parametrize(("make_text", "problem"), [
    (lambda base: 'model_config_list { config { name: "enja" base_pth: "x" } }', "not a ModelServerConfig"),
    (lambda base: config_text(model_entry(base, platform="pytorch")),
     "model_platform 'pytorch' is not supported"),
    (lambda base: config_text(model_entry(base), model_entry(base)), "model 'enja' is listed more than once"),
    (lambda base: config_text(model_entry(base, "", {"stable": 1})),
     "version label 'stable' points at version 1, which its model_version_policy does not serve"),
], ids=["unparsable", "platform", "duplicate", "label"])
def test_a_bad_config_file_stops_enja_serve_at_start_up(versions_dir, tmp_path, capsys, make_text, problem):
    path = write(tmp_path / "models.config", make_text(versions_dir))
    assert cli.main(["serve", "--model_config_file", path, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"enja serve: {path}: ") and problem in err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize("args", [[], ["--model-base-path", "a", "--model_config_file", "b"]], ids=["none",
                                                                                                    "both"])
def test_enja_serve_needs_exactly_one_model_source(args, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["serve", *args])
    assert raised.value.code == 2
    assert "--model_config_file" in capsys.readouterr().err


def test_enja_serve_follows_a_config_file(versions_dir, tmp_path):
    """End to end: a relative base path, the poll flag, a rollback in the file, SIGTERM."""
    path = write(tmp_path / "models.config", config_text(model_entry(f"base/{MODEL}")))
    command = [sys.executable, "-m", "enja.pipeline.cli", "serve", "--model_config_file", path,
               "--model_config_file_poll_wait_seconds", str(POLL_S), "--port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd="/") as process:
        try:
            address = next(match.group(1) for line in process.stderr
                           if (match := re.search(r"serving .* on (\S+:\d+)", line)))
            with grpc.insecure_channel(address) as channel:
                predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                assert answered_by(predictions) == 3
                set_policy(path, MODEL, model_config.pinned(2))
                eventually(lambda: answered_by(predictions) == 2, what="the pinned version served")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()


# --- the operators' helpers ------------------------------------------------------------------

def two_models(tmp_path) -> str:
    return write(tmp_path / "models.config", config_text(
        model_entry(f"base/{MODEL}", "", {"stable": 2}),
        model_entry("/models/other", "model_version_policy { all {} }", {"a": 1, "b": 5}, name="other")))


def test_pin_and_follow_latest_change_only_that_policy(tmp_path):
    path = two_models(tmp_path)
    os.chmod(path, 0o640)
    before = model_config.read_model_config(path)

    pinned = set_policy(path, MODEL, model_config.pinned(2))
    expected = ModelServerConfig()
    expected.CopyFrom(before)
    expected.model_config_list.config[0].model_version_policy.specific.versions.append(2)
    assert pinned == expected == model_config.read_model_config(path)

    set_policy(path, MODEL, model_config.LATEST)
    expected.model_config_list.config[0].model_version_policy.latest.num_versions = 1
    assert model_config.read_model_config(path) == expected
    assert os.listdir(tmp_path) == ["models.config"], "no temporary file may be left behind"
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_pin_is_refused_when_it_would_strand_a_label_or_names_no_model(tmp_path):
    path = two_models(tmp_path)
    text = pathlib.Path(path).read_text(encoding="utf-8")
    with pytest.raises(ModelConfigError, match=r"label 'stable' points at version 2"):
        set_policy(path, MODEL, model_config.pinned(3))
    with pytest.raises(ModelConfigError, match=r"no model 'nope'"):
        set_policy(path, "nope", model_config.pinned(1))
    assert pathlib.Path(path).read_text(encoding="utf-8") == text


def test_a_polling_reader_never_sees_half_a_rewrite(tmp_path):
    path = two_models(tmp_path)
    problems, done = [], threading.Event()

    def read_continuously():
        while not done.is_set():
            try:
                model_config.read_model_config(path)
            except ModelConfigError as error:
                problems.append(str(error))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(50):
            set_policy(path, MODEL, model_config.pinned(2))
            set_policy(path, MODEL, model_config.LATEST)
    finally:
        done.set()
        reader.join()
    assert problems == []


def test_initial_config_for_a_local_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "models.config")
    assert model_config.write_initial_model_config(path, MODEL, "serving_model/enja")
    (model,) = model_config.read_model_config(path).model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (MODEL,
                                                                   str(tmp_path / "serving_model/enja"),
                                                                  "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1
    set_policy(path, MODEL, model_config.pinned(1))
    assert not model_config.write_initial_model_config(path, MODEL, "elsewhere"), \
        "an operator's pin must survive"
    [model] = model_config.read_model_config(path).model_config_list.config
    assert model.model_version_policy.HasField("specific")


def test_only_ascii_digit_folders_are_versions(tmp_path):
    """`"²".isdigit()` is true, yet int("²") fails: such a folder once made every poll raise."""
    for name in ("1", "10", "²", "٣", "v2", ".tmp-11", "007"):
        (tmp_path / name).mkdir()
    assert versions.versions_on_disk(str(tmp_path)) == [1, 7, 10]
