"""Talking to a model server in tests: the served name, sentences and limits, requests, versions on
disk, waiting for a condition, model config text, and clients calling throughout a change."""
from __future__ import annotations

import os
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from enja.serving import contract, warmup
from enja.serving.config import RequestLimits, ServingConfig
from enja.serving.model_config import ModelServerConfig

MODEL = ServingConfig.model_name
# Sentences every served model takes; conftest's stand-in model knows exactly these.
SENTENCES = ["hello", "thank you", "good morning"]
STANDIN_TRANSLATIONS = {"hello": "こんにちは", "thank you": "ありがとう", "good morning": "おはよう"}
# Below the server's defaults, so that the tests of the limits send small requests.
LIMITS = RequestLimits(max_batch_size=64, max_chars=200)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


# --- requests -------------------------------------------------------------------------------

def text_request(sentences, **spec) -> predict_pb2.PredictRequest:
    """A Predict request of `sentences` to MODEL; `spec` sets model_spec fields (version: a number)."""
    request = warmup.predict_request(sentences, MODEL)
    for field, value in spec.items():
        if field == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, field, value)
    return request


def options_request(sentences, beam_width: int) -> predict_pb2.PredictRequest:
    """A Predict request to the `translate_with_options` signature at `beam_width`."""
    request = text_request(sentences, signature_name=contract.OPTIONS_SIGNATURE)
    request.inputs[contract.BEAM_WIDTH_INPUT].CopyFrom(tf.make_tensor_proto(beam_width, dtype=tf.int32))
    return request


def status_code(call, request) -> grpc.StatusCode:
    """The status a gRPC call that must fail ends with (and it must say what is wrong)."""
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    assert raised.value.details(), "errors must say what is wrong"
    return raised.value.code()


# --- versions -------------------------------------------------------------------------------

def newest_version(base: str) -> int:
    """The highest version number under <base>/<MODEL>/."""
    return max(int(name) for name in os.listdir(os.path.join(base, MODEL)) if name.isdigit())


def copy_version(model_dir: str, version: int, new_version: int) -> str:
    """Copy a version the way a careful pusher does: to a temporary name, then rename."""
    staging = os.path.join(model_dir, f".tmp-{new_version}")
    shutil.copytree(os.path.join(model_dir, str(version)), staging)
    os.rename(staging, os.path.join(model_dir, str(new_version)))
    return os.path.join(model_dir, str(new_version))


def served_version(model_service) -> int:
    """The highest AVAILABLE version of MODEL, asked over ModelService."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = model_service.GetModelStatus(request, timeout=10)
    return max(s.version for s in response.model_version_status if s.state == AVAILABLE)


def wait_for_status(model_service, version: int, state, timeout: float = 60.0):
    """Polls GetModelStatus until `version` is in `state`; returns its status."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = version
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = model_service.GetModelStatus(request, timeout=10).model_version_status[0]
            if status.state == state:
                return status
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: not discovered yet
                raise
        time.sleep(0.05)
    raise AssertionError(f"version {version} never reached state {state}")


# --- waiting --------------------------------------------------------------------------------

def eventually(predicate, timeout: float = 30.0, what: str = "condition"):
    """Polls `predicate` until it returns something true, and returns that: a test waits on the
    condition it needs, never a fixed time, so it holds on a loaded machine and is quick on an idle one."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.02)
    return result


class BatchedCalls:
    """Counts the calls that have reached a batcher of a server in this process (conftest's
    `batched_calls` fixture wraps Batcher.run): a test that must stop a server with calls in flight
    waits for them to be there rather than sleeping and hoping."""

    def __init__(self):
        self.count = 0
        self._arrived = threading.Condition()

    def arrived(self) -> None:
        with self._arrived:
            self.count += 1
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Returns once `count` calls in all have reached a batcher."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: self.count >= count, timeout), \
                f"{self.count} of {count} calls reached the batcher within {timeout} s"


# --- model config files ---------------------------------------------------------------------

def model_entry(base_path: str, policy: str = "", labels: dict[str, int] | None = None, name: str = MODEL,
                platform: str = "tensorflow") -> str:
    """One `config { ... }` of a model_config_list, in protobuf text format."""
    label_text = " ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
    return (f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "{platform}" '
            f'{policy} {label_text} }}')


def config_text(*entries: str) -> str:
    """A ModelServerConfig's text holding `entries` (model_entry's)."""
    return "model_config_list {\n  " + "\n  ".join(entries) + "\n}\n"


def message(text: str) -> ModelServerConfig:
    """A config message as a client would send it: parsed, not checked."""
    return text_format.Parse(text, ModelServerConfig())


# --- clients under load ---------------------------------------------------------------------

class Hammer:
    """Client threads sending Predict calls until stopped, recording answers and failures."""

    def __init__(self, stub, threads: int = 8):
        self.stub, self.failures = stub, []
        # (time.monotonic() a call was sent, version that answered)
        self.answers: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(threads)]

    def _loop(self):
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = self.stub.Predict(text_request(SENTENCES), timeout=30)
                self.answers.append((sent, response.model_spec.version.value))
            except grpc.RpcError as error:
                self.failures.append(f"{error.code()}: {error.details()}")

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def versions(self) -> list[int]:
        """The versions that answered, in the order the answers came."""
        return [version for _, version in self.answers]

    def wait_for_version(self, version: int, timeout: float = 60.0) -> None:
        """Waits until `version` has answered a call sent in the last `timeout` seconds."""
        start = time.monotonic()
        eventually(lambda: any(sent >= start and answered == version for sent, answered in self.answers),
                   timeout, f"version {version} served")

    def versions_for_calls_sent_after(self, moment: float, calls: int = 20,
                                      timeout: float = 60.0) -> set[int]:
        """The versions that answered calls sent after `moment` (a time.monotonic() value), once `calls` of
        them have: what serves new calls. The last answers to come back may, on a loaded machine, be to
        calls sent long before."""
        return set(eventually(
            lambda: len(versions := [v for sent, v in self.answers if sent > moment]) >= calls and versions,
            timeout, f"{calls} calls sent after the moment answered"))
