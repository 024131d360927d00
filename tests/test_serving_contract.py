"""The model contract and TF Serving's gRPC protocol, against a real server.

By default a local `enja.serving` server is started on a copy of the model
base path. With TF_SERVING_ADDRESS=host:port the protocol checks run against
that server instead (e.g. the tensorflow/serving container) and the checks
that need the local server (hot swap, broken versions, its own limits) skip.
"""
import argparse
import contextlib
import io
import os
import shutil
import socket
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from enja.pipeline.cli import arguments
from enja.serving import client, contract, errors, ops, warmup
from enja.serving import request as request_parsing
from enja.serving.batching_config import BatchOptions
from enja.serving.server import ModelServer, ServerOptions
from support.serving import (
    AVAILABLE,
    END,
    LIMITS,
    MODEL,
    SENTENCES,
    Hammer,
    copy_version,
    newest_version,
    options_request,
    served_version,
    status_code,
    text_request,
    wait_for_status,
)

# Which fixture provides the base path holding <model_name>/<version>/: switch to "pushed_model_base"
# (tests/conftest.py) to run the suite on the model the pipeline pushed.
MODEL_BASE_FIXTURE = "pushed_model_base"

REMOTE = os.environ.get("TF_SERVING_ADDRESS")
local_only = pytest.mark.skipif(bool(REMOTE), reason="needs the local server (TF_SERVING_ADDRESS is set)")


@pytest.fixture(scope="session")
def model_base(request) -> str:
    return request.getfixturevalue(MODEL_BASE_FIXTURE)


def start_local_server(model_base: str, tmp_path, **options) -> ModelServer:
    """A server on a private copy of the base path, so tests may add versions to it."""
    base = str(tmp_path / "base")
    shutil.copytree(model_base, base)
    version_dir = os.path.join(base, MODEL, str(newest_version(base)))
    warmup.write_warmup_requests(version_dir, SENTENCES, MODEL)
    server = ModelServer(base, MODEL, ServerOptions(port=0, limits=LIMITS, **options))
    server.start()
    return server


@pytest.fixture(scope="module")
def local_server(model_base, tmp_path_factory):
    if REMOTE:
        yield None
        return
    server = start_local_server(model_base, tmp_path_factory.mktemp("server"), poll_interval_s=0.2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def address(local_server) -> str:
    return REMOTE or local_server.address


@pytest.fixture(scope="module")
def channel(address):
    with grpc.insecure_channel(address) as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_service(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


# --- the model itself -------------------------------------------------------------------------

def test_model_uses_only_core_tensorflow_ops(model_base):
    version_dir = os.path.join(model_base, MODEL, str(newest_version(model_base)))
    assert ops.graph_ops(version_dir)
    assert ops.non_core_ops(version_dir) == set()


def test_op_check_flags_custom_ops(model_base, tmp_path):
    """A graph needing a tensorflow-text op (faked by renaming a node's op) fails the check."""
    from tensorflow.core.protobuf import saved_model_pb2

    target = shutil.copytree(os.path.join(model_base, MODEL, str(newest_version(model_base))), tmp_path / "m")
    saved_model = saved_model_pb2.SavedModel.FromString((target / "saved_model.pb").read_bytes())
    function = saved_model.meta_graphs[0].graph_def.library.function[0]
    function.node_def.add(name="split", op="WhitespaceTokenizeWithOffsets")
    (target / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    assert ops.non_core_ops(str(target)) == {"WhitespaceTokenizeWithOffsets"}
    with pytest.raises(ValueError, match="WhitespaceTokenizeWithOffsets"):
        ops.check_core_ops(str(target))


def test_warmup_requests_are_prediction_logs(model_base, tmp_path):
    target = shutil.copytree(os.path.join(model_base, MODEL, str(newest_version(model_base))), tmp_path / "m")
    path = warmup.write_warmup_requests(str(target), SENTENCES, MODEL)
    assert path.endswith(os.path.join("assets.extra", "tf_serving_warmup_requests"))
    logs = list(warmup.read_warmup_requests(str(target)))
    assert [len(tf.make_ndarray(log.predict_log.request.inputs[contract.TEXT_INPUT])) for log in logs] == [1,
                                                                                                           3]
    assert {log.predict_log.request.model_spec.name for log in logs} == {MODEL}


# --- protocol ---------------------------------------------------------------------------------

def test_predict_translates_a_batch(predictions):
    response = predictions.Predict(text_request(SENTENCES), timeout=30)
    translations = tf.make_ndarray(response.outputs[contract.TRANSLATIONS_OUTPUT])
    scores = tf.make_ndarray(response.outputs[contract.SCORES_OUTPUT])
    assert translations.shape == (3,) and all(isinstance(t, bytes) for t in translations)
    assert scores.dtype == np.float32 and scores.shape == (3,) and np.isfinite(scores).all()
    assert response.model_spec.name == MODEL
    assert response.model_spec.signature_name == contract.SERVING_SIGNATURE
    assert response.model_spec.version.value > 0


def test_predict_is_per_sentence(predictions):
    """Each row is its own sentence's answer, whether the sentence comes alone, in a batch or at once
    with other callers' (which the server may batch together). The sentences are 1, 4 and 11 tokens
    long, so even the smoke model, whose answers follow the length, answers each differently: rows
    mixed up would show."""
    sentences = ["hello", "i like cats .", "he lived a hard life in the city for many years ."]

    def translations(response) -> list[bytes]:
        return list(tf.make_ndarray(response.outputs[contract.TRANSLATIONS_OUTPUT]))

    alone = [translations(predictions.Predict(text_request([s]), timeout=30))[0] for s in sentences]
    assert len(set(alone)) == len(sentences), alone
    at_once = [predictions.Predict.future(text_request(batch), timeout=30)
               for batch in (sentences, *([s] for s in reversed(sentences)))]
    assert [translations(future.result()) for future in at_once] == [alone, *([a] for a in reversed(alone))]


def test_output_filter(predictions):
    request = text_request(SENTENCES)
    request.output_filter.append(contract.SCORES_OUTPUT)
    assert set(predictions.Predict(request, timeout=30).outputs) == {contract.SCORES_OUTPUT}


def test_metadata_has_the_signature_defs(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = predictions.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def[contract.SERVING_SIGNATURE]
    assert serving.method_name == "tensorflow/serving/predict"
    text = serving.inputs[contract.TEXT_INPUT]
    assert text.dtype == tf.string.as_datatype_enum and [d.size for d in text.tensor_shape.dim] == [-1]
    assert serving.outputs[contract.TRANSLATIONS_OUTPUT].dtype == tf.string.as_datatype_enum
    assert serving.outputs[contract.SCORES_OUTPUT].dtype == tf.float32.as_datatype_enum
    assert response.model_spec.name == MODEL and response.model_spec.version.value > 0


def test_model_status(model_service):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = model_service.GetModelStatus(request, timeout=30)
    assert any(s.state == AVAILABLE for s in response.model_version_status)


def test_request_can_name_a_version(predictions, model_service):
    version = served_version(model_service)
    response = predictions.Predict(text_request(SENTENCES, version=version), timeout=30)
    assert response.model_spec.version.value == version
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(text_request(SENTENCES, version=version + 1000), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert MODEL in raised.value.details() and "/" not in raised.value.details()  # no server paths


def test_unknown_model_is_not_found(predictions, model_service):
    assert status_code(predictions.Predict, text_request(SENTENCES, name="nope")) == grpc.StatusCode.NOT_FOUND
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "nope"
    assert status_code(predictions.GetModelMetadata, metadata) == grpc.StatusCode.NOT_FOUND
    model_status = get_model_status_pb2.GetModelStatusRequest()
    model_status.model_spec.name = "nope"
    assert status_code(model_service.GetModelStatus, model_status) == grpc.StatusCode.NOT_FOUND


def _renamed_input(request):
    request.inputs["sentences"].CopyFrom(request.inputs.pop(contract.TEXT_INPUT))


def _float_input(request):
    request.inputs[contract.TEXT_INPUT].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))


def _matrix_input(request):
    request.inputs[contract.TEXT_INPUT].CopyFrom(tf.make_tensor_proto([["a", "b"]], dtype=tf.string))


def _unknown_output(request):
    request.output_filter.append("attention")


@pytest.mark.parametrize("spoil", [_renamed_input, _float_input, _matrix_input, _unknown_output])
def test_malformed_predict_is_invalid_argument(predictions, spoil):
    request = text_request(SENTENCES)
    spoil(request)
    assert status_code(predictions.Predict, request) == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_signature_is_failed_precondition(predictions):
    request = text_request(SENTENCES, signature_name="nope")
    assert status_code(predictions.Predict, request) == grpc.StatusCode.FAILED_PRECONDITION


def test_metadata_needs_a_known_field(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    assert status_code(predictions.GetModelMetadata, request) == grpc.StatusCode.INVALID_ARGUMENT


def test_classify_is_unimplemented(predictions):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    # TF Serving refuses Classify on a model without a classification signature in its own words.
    expected = {grpc.StatusCode.UNIMPLEMENTED}
    if REMOTE:
        expected |= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
    assert status_code(predictions.Classify, request) in expected


def test_server_survives_bad_requests(predictions):
    for spoil in (_renamed_input, _float_input, _matrix_input):
        request = text_request(SENTENCES)
        spoil(request)
        with pytest.raises(grpc.RpcError):
            predictions.Predict(request, timeout=30)
    assert len(predictions.Predict(text_request(SENTENCES), timeout=30).outputs) == 2


# --- the local server's own guards and behaviour -----------------------------------------------

@local_only
@pytest.mark.parametrize("sentences", [[], ["x" * (LIMITS.max_chars + 1)],
                                       ["hello"] * (LIMITS.max_batch_size + 1)],
                         ids=["empty", "too-long", "too-many"])
def test_oversized_or_empty_is_invalid_argument(predictions, sentences):
    assert status_code(predictions.Predict, text_request(sentences)) == grpc.StatusCode.INVALID_ARGUMENT


@local_only
def test_message_size_is_limited(predictions):
    huge = text_request(["x" * (5 * 1024 * 1024)])
    assert status_code(predictions.Predict, huge) == grpc.StatusCode.RESOURCE_EXHAUSTED


def declared_text(sizes: list[int], values: list[bytes]) -> tensor_pb2.TensorProto:
    """A string tensor declaring `sizes` whatever `values` it carries."""
    return tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=values,
                                  tensor_shape={"dim": [{"size": size} for size in sizes]})


@local_only
@pytest.mark.parametrize(("sizes", "values"), [
    ([2**28], [b"hello"]), ([2**40], [b"hello"]), ([0, 2**40], [b"hello"]), ([-1], [b"hello"]),
    ([3], [b"hello", b"thanks"]), ([3], [])], ids=["2**28", "2**40", "0x2**40", "negative", "short", "none"])
def test_a_declared_shape_the_values_do_not_fill_is_refused_before_it_is_built(predictions, sizes, values,
                                                                              monkeypatch):
    """Built, 2**28 strings take gigabytes and seconds: the server (in this process) must refuse the
    request without ever making an array of the input (one that tried would fail here, unbuilt)."""
    built = []

    def never_build(alias, proto):
        built.append(alias)
        raise ValueError("the test's stand-in for building the array")

    monkeypatch.setattr(request_parsing, "_to_array", never_build)
    request = text_request(SENTENCES)
    request.inputs[contract.TEXT_INPUT].CopyFrom(declared_text(sizes, values))
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(request, timeout=30)
    assert built == [], "the shape was built before it was checked"
    assert (raised.value.code(), f"'{contract.TEXT_INPUT}'" in raised.value.details()) \
        == (grpc.StatusCode.INVALID_ARGUMENT, True), raised.value.details()


@local_only
def test_one_value_fills_the_declared_shape(predictions):
    """As make_tensor_proto("hello", shape=[3]) sends it, and TF Serving takes it."""
    request = text_request(SENTENCES)
    request.inputs[contract.TEXT_INPUT].CopyFrom(declared_text([3], [b"hello"]))
    translations = tf.make_ndarray(predictions.Predict(request,
                                                       timeout=30).outputs[contract.TRANSLATIONS_OUTPUT])
    assert len(translations) == 3 and len(set(translations.tolist())) == 1


@local_only
def test_beam_width_is_limited(predictions):
    assert predictions.Predict(options_request(SENTENCES[:1], LIMITS.max_beam_width), timeout=60).outputs
    for beam_width in (LIMITS.max_beam_width + 1, 2**31 - 1):
        with pytest.raises(grpc.RpcError) as raised:
            predictions.Predict(options_request(SENTENCES[:1], beam_width), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"max_beam_width={LIMITS.max_beam_width}" in raised.value.details()


@local_only
def test_a_long_model_name_is_not_found_in_a_short_message(predictions):
    """Quoted whole, a 10 kB name is over gRPC's 8 KiB soft limit on metadata, and clients drop some
    answers."""
    with pytest.raises(grpc.RpcError) as raised:
        predictions.Predict(text_request(SENTENCES, name="x" * 10_000), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(raised.value.details()) <= errors.MAX_MESSAGE_CHARS
    assert raised.value.details().startswith("Servable not found") and raised.value.details().endswith("...")


@local_only
def test_server_answers_what_the_saved_model_answers(predictions, local_server):
    version = local_server.versions.get()
    loaded = tf.saved_model.load(version.path).signatures[contract.SERVING_SIGNATURE]
    expected = loaded(text=tf.constant(SENTENCES))
    response = predictions.Predict(text_request(SENTENCES), timeout=30)
    for key in (contract.TRANSLATIONS_OUTPUT, contract.SCORES_OUTPUT):
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[key]), expected[key].numpy())


@contextlib.contextmanager
def _hammered_server(model_base: str, tmp_path, threads: int = 8, **options):
    """A local server on a private base path under Predict calls: (server, ModelService stub,
    Hammer, the version served at the start)."""
    server = start_local_server(model_base, tmp_path, **options)
    try:
        with grpc.insecure_channel(server.address) as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel)
            old = served_version(status)
            with Hammer(prediction_service_pb2_grpc.PredictionServiceStub(channel), threads) as hammer:
                hammer.wait_for_version(old)
                yield server, status, hammer, old
    finally:
        server.stop()


@local_only
def test_hot_swap_and_broken_versions_under_load(model_base, tmp_path):
    with _hammered_server(model_base, tmp_path, poll_interval_s=0.1, max_load_retries=0) as (
            server, status, hammer, old):
        model_dir = server.versions.model_dir
        copy_version(model_dir, old, old + 1)
        hammer.wait_for_version(old + 1)
        assert wait_for_status(status, old, END).status.error_code == 0

        broken = os.path.join(model_dir, str(old + 2))
        os.makedirs(broken)
        with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")
        assert wait_for_status(status, old + 2, END).status.error_message

        bad_warmup = copy_version(model_dir, old, old + 3)
        request = text_request(SENTENCES)
        _renamed_input(request)
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.CopyFrom(request)
        with tf.io.TFRecordWriter(os.path.join(bad_warmup, warmup.WARMUP_FILE)) as writer:
            writer.write(log.SerializeToString())
        assert "do not match" in wait_for_status(status, old + 3, END).status.error_message
        # Judged by when calls were sent, not answered: on a loaded machine the last answers to come
        # back may be to calls sent before the swap.
        assert hammer.versions_for_calls_sent_after(time.monotonic()) == {old + 1}
    assert hammer.failures == []
    assert not {old + 2, old + 3} & set(hammer.versions), "a broken version answered"


def _copy_slowly(source: str, destination: str, seconds: float, graph_last: bool) -> None:
    """Copies a version file by file over `seconds` straight into the numbered folder. TFX's
    Pusher copies saved_model.pb last (`graph_last`); another writer may copy it first."""
    files = sorted((os.path.relpath(os.path.join(folder, name), source)
                    for folder, _, names in os.walk(source) for name in names),
                   key=lambda path: ((path == "saved_model.pb") == graph_last, path))
    for path in files:
        time.sleep(seconds / len(files))
        os.makedirs(os.path.dirname(os.path.join(destination, path)), exist_ok=True)
        shutil.copyfile(os.path.join(source, path), os.path.join(destination, path))


@local_only
def test_a_push_copied_the_way_tfx_copies_is_served_without_a_failed_load(model_base, tmp_path):
    """saved_model.pb lands last: until then the version is not tried, so it serves at the next poll
    rather than after a retry interval (60 s here, TF Serving's default)."""
    with _hammered_server(model_base, tmp_path, threads=2, poll_interval_s=0.1, max_load_retries=5,
                          load_retry_interval_s=60.0) as (server, _, hammer, old):
        model_dir = server.versions.model_dir
        _copy_slowly(os.path.join(model_dir, str(old)), os.path.join(model_dir, str(old + 1)), 3,
                     graph_last=True)
        hammer.wait_for_version(old + 1, timeout=30)
        assert server.versions.statuses()[old + 1].failures == 0
    assert hammer.failures == []


@local_only
def test_a_push_copied_over_10_s_graph_first_is_served_once_complete(model_base, tmp_path):
    """Loads fail while the copy goes on and are retried TF Serving's way, 5 retries at 2.5 s."""
    with _hammered_server(model_base, tmp_path, threads=2, poll_interval_s=0.1, max_load_retries=5,
                          load_retry_interval_s=2.5) as (server, _, hammer, old):
        model_dir = server.versions.model_dir
        _copy_slowly(os.path.join(model_dir, str(old)), os.path.join(model_dir, str(old + 1)), 10,
                     graph_last=False)
        hammer.wait_for_version(old + 1, timeout=30)
        assert server.versions.statuses()[old + 1].failures >= 1  # it was tried before it was whole
    assert hammer.failures == []


@local_only
def test_shutdown_lets_in_flight_requests_finish(model_base, tmp_path, batched_calls):
    """A request waiting in a slow batch still gets its answer when the server stops."""
    slow = BatchOptions(max_batch_size=64, batch_timeout_s=1.0)
    server = start_local_server(model_base, tmp_path, batching=slow)
    with grpc.insecure_channel(server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(text_request(SENTENCES), timeout=30)  # connected
        future = stub.Predict.future(text_request(SENTENCES), timeout=30)
        batched_calls.wait_for(2)  # the second waits in its batch
        assert not future.done()
        server.stop()
        assert len(future.result().outputs) == 2
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(text_request(SENTENCES), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


# --- the client -------------------------------------------------------------------------------

def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_args(server: str, *text: str, wait: float = 0.0) -> argparse.Namespace:
    return arguments.build_parser().parse_args(
        ["translate", "--server", server, "--model-name", MODEL, "--wait", str(wait), *text])


def test_translate_function(address):
    translations = client.translate(SENTENCES, server=address)
    assert len(translations) == 3 and all(isinstance(t, str) for t in translations)
    assert translations == client.translate(SENTENCES, server=address)


def test_cli_translates_args(address, capsys):
    assert client.main(cli_args(address, *SENTENCES)) == 0
    assert capsys.readouterr().out.splitlines() == client.translate(SENTENCES, server=address)


def test_cli_translates_stdin_in_batches(address, capsys, monkeypatch):
    lines = SENTENCES * 30  # several requests of client.BATCH_SIZE
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    assert client.main(cli_args(address)) == 0
    assert capsys.readouterr().out.splitlines() == client.translate(SENTENCES, server=address) * 30


def test_cli_reports_an_unreachable_server(capsys):
    assert client.main(cli_args(f"127.0.0.1:{unused_port()}", "hello")) != 0
    assert "cannot reach" in capsys.readouterr().err


def test_cli_gives_up_waiting_for_a_server_that_never_comes(capsys):
    assert client.main(cli_args(f"127.0.0.1:{unused_port()}", "hello", wait=0.5)) != 0
    assert "no model server came up" in capsys.readouterr().err


def test_cli_reports_error_statuses(address, capsys):
    args = cli_args(address, "hello")
    args.model_name = "nope"
    assert client.main(args) != 0
    assert "NOT_FOUND" in capsys.readouterr().err
