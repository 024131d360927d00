"""`enja serve` takes tensorflow_model_server's command line, with the same meanings and defaults."""
import concurrent.futures
import dataclasses
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis.model_service_pb2_grpc import ModelServiceStub

from enja.pipeline import cli
from enja.pipeline.cli import arguments
from enja.serving import batching_config, client, contract, flags
from enja.serving.batching_config import BatchOptions
from enja.serving.config import RequestLimits
from enja.serving.server import ListenError, ModelServer, ServerOptions
from support.deploy import DEPLOY
from support.serving import MODEL, SENTENCES, STANDIN_TRANSLATIONS, eventually


def parse(*argv: str):
    return arguments.build_parser().parse_args(["serve", *argv])


def options(*argv: str) -> ServerOptions:
    return flags.server_options(parse("--model_base_path", "m", *argv))


def test_defaults_are_tf_servings():
    """Every default stated, so a wrong one cannot hide behind ServerOptions' own: TF Serving's value for
    each flag it has (tensorflow_model_server's main.cc), then what the server runs with."""
    args = parse("--model_base_path", "m")
    tf_serving = {"port": 8500, "rest_api_port": 0, "rest_api_timeout_in_ms": 30_000,
                  # TF Serving's default is four threads a core, which 0 means here
                  "rest_api_num_threads": 0,
                  "enable_batching": False, "batching_parameters_file": None,
                  "file_system_poll_wait_seconds": 1, "max_num_load_retries": 5,
                  "load_retry_interval_micros": 60_000_000, "enable_model_warmup": True,
                  "tensorflow_intra_op_parallelism": 0, "tensorflow_inter_op_parallelism": 0,
                  "model_config_file_poll_wait_seconds": 0}
    assert {flag: getattr(args, flag) for flag in tf_serving} == tf_serving
    assert args.model_name == "enja"  # TF Serving's is "default"
    assert dataclasses.asdict(flags.server_options(args)) == {
        "host": "127.0.0.1", "port": 8500, "rest_api_port": None, "poll_interval_s": 1, "num_versions": 1,
        "max_load_retries": 5, "load_retry_interval_s": 60, "enable_model_warmup": True,
        "intra_op_threads": 0, "inter_op_threads": 0, "batching": None,
        "limits": {"max_batch_size": 256, "max_chars": 1000, "max_beam_width": 16},
        "max_message_bytes": 4 * 1024 * 1024, "max_workers": 64, "max_concurrent_rpcs": 256,
        "rest_api_timeout_s": 30, "rest_api_num_threads": 0, "rest_api_max_connections": 4096,
        "enable_reload_config": True, "reload_config_roots": (), "grace_s": 10}


def test_tf_serving_spellings_set_what_they_say(tmp_path):
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\n")
    given = options("--port=9000", "--rest_api_port=9001", "--enable_batching=true",
                    f"--batching_parameters_file={parameters}", "--file_system_poll_wait_seconds=30",
                    "--max_num_load_retries=2", "--load_retry_interval_micros=2500000",
                    "--enable_model_warmup=false", "--rest_api_num_threads=3", "--rest_api_max_connections=9",
                    "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=3")
    assert (given.port, given.rest_api_port, given.poll_interval_s, given.max_load_retries,
            given.load_retry_interval_s) == (9000, 9001, 30, 2, 2.5)
    assert given.batching == BatchOptions(max_batch_size=8, batch_timeout_s=0.0005)
    assert given.enable_model_warmup is False
    assert (given.rest_api_num_threads, given.rest_api_max_connections) == (3, 9)
    assert (given.intra_op_threads, given.inter_op_threads) == (1, 3)
    args = parse("--model_base_path=/models/x", "--model_name=x")
    assert (args.model_base_path, args.model_name) == ("/models/x", "x")
    assert parse("--model_config_file=c", "--model_config_file_poll_wait_seconds=60").model_config_file == "c"


@pytest.mark.parametrize(("argv", "enabled"), [
    ([], False), (["--enable_batching"], True), (["--enable_batching=true"], True),
    (["--enable_batching=false"], False), (["--enable-batching"], True), (["--no-enable-batching"], False)])
def test_enable_batching_takes_tf_servings_values_and_the_old_spellings(argv, enabled):
    assert (options(*argv).batching is not None) is enabled


def test_the_old_spellings_still_work():
    old = options("--model-name", "x", "--file-system-poll-wait-seconds", "3", "--max-sentence-chars", "9",
                  "--max-request-sentences", "4", "--enable-batching")
    new = options("--model_name", "x", "--file_system_poll_wait_seconds", "3", "--max_sentence_chars", "9",
                  "--max_request_sentences", "4", "--enable_batching")
    assert old == new and old.limits.max_chars == 9 and old.limits.max_batch_size == 4
    assert parse("--model-base-path", "m").model_base_path == "m"


@pytest.mark.parametrize("flag", ["--max_beam_width", "--max-beam-width"])
def test_max_beam_width_sets_the_servers_limit(flag):
    assert options().limits.max_beam_width == RequestLimits.max_beam_width
    assert options(flag, "4").limits == RequestLimits(max_beam_width=4)


def test_a_bad_boolean_names_the_flag(capsys):
    with pytest.raises(SystemExit) as raised:
        parse("--model_base_path", "m", "--enable_batching=maybe")
    assert raised.value.code == 2
    assert "--enable_batching" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--port", "--rest_api_port"])
def test_a_port_out_of_range_names_the_flag(capsys, flag):
    """gRPC would take 99999999 as 0 and listen on a port of its choosing without a word."""
    with pytest.raises(SystemExit) as raised:
        parse("--model_base_path", "m", f"{flag}=99999999")
    assert raised.value.code == 2
    assert f"{flag}: 99999999 is not a port" in capsys.readouterr().err


def test_help_gives_each_flag_and_its_default(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]
    for flag, default in [("--port", "8500"), ("--rest_api_port", "0"), ("--model_name", "enja"),
                          ("--enable_batching", "False"), ("--file_system_poll_wait_seconds", "1"),
                          ("--model_config_file_poll_wait_seconds", "0"), ("--max_num_load_retries", "5"),
                          ("--load_retry_interval_micros", "60000000"),
                          ("--enable_model_warmup", "True"), ("--tensorflow_intra_op_parallelism", "0"),
                          ("--tensorflow_inter_op_parallelism", "0"), ("--max_beam_width", "16"),
                          ("--max_concurrent_rpcs", "256"), ("--rest_api_timeout_in_ms", "30000")]:
        entry = re.search(r"\(default: ([^)]*)\)", text[text.index(f"{flag} "):])  # the flag's own entry
        assert entry and entry.group(1) == default, flag
    for flag in ("--model_base_path", "--model_config_file", "--batching_parameters_file"):
        assert flag in text


def test_model_base_path_is_the_versions_folder(tmp_path):
    versions = tmp_path / "serving_model" / MODEL
    (versions / "7").mkdir(parents=True)
    assert flags.versions_folder(str(versions), MODEL) == str(versions)
    empty = tmp_path / "awaiting_the_first_push"
    empty.mkdir()
    assert flags.versions_folder(str(empty), MODEL) == str(empty)  # TF Serving waits there too
    # What the old `--model-base-path` meant: the folder above the model's.
    assert flags.versions_folder(str(tmp_path / "serving_model"), MODEL) == str(versions)


def test_enja_serve_answers_on_tf_servings_command_line_and_stops_on_sigterm(standin_model_base, tmp_path):
    """End to end, as a TF Serving user starts it: the versions' folder, then SIGTERM."""
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    command = [sys.executable, "-m", "enja.pipeline.cli", "serve", f"--model_base_path={base}/{MODEL}",
               f"--model_name={MODEL}", "--port=0", "--enable_batching=true"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            address = next(match.group(1) for line in process.stderr
                           if (match := re.search(r"serving .* on (\S+:\d+)", line)))
            assert client.translate(SENTENCES, server=address) == [STANDIN_TRANSLATIONS[s] for s in SENTENCES]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
            assert "shutting down" in process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()


def grpc_outcomes_until_closed(address: str) -> list[str]:
    """A GetModelStatus call every 50 ms until the port is closed: "OK", "refused" (the server's UNAVAILABLE
    saying it is shutting down), "closed" (the port's, or CANCELLED as it closes), or any other status by
    name. Not Predict, which waits for its batch (a second here): an answer that late could miss the
    refusing phase."""
    outcomes = []
    with grpc.insecure_channel(address) as channel:
        stub = ModelServiceStub(channel)
        while not outcomes or outcomes[-1] != "closed":
            try:
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = MODEL
                stub.GetModelStatus(request, timeout=10)
                outcomes.append("OK")
            except grpc.RpcError as error:
                refused = error.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in error.details()
                # A call gRPC takes in as it stops is CANCELLED: the port closing, seen a moment early.
                closed = error.code() in (grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.CANCELLED) and not refused
                outcomes.append("refused" if refused else "closed" if closed else error.code().name)
            time.sleep(0.05)
    return outcomes


def refuses_connections(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return True
    return False


def test_stopping_lets_calls_in_flight_on_both_ports_finish_and_refuses_new_ones(standin_model_base,
                                                                                  batched_calls):
    """What SIGTERM starts: each call waits a second in the batcher, so it is in flight when the stop begins.
    New REST connections are refused at once; gRPC serves new calls a moment longer (those gRPC has received
    but not yet handed over would be cancelled when it stops), then refuses them, then closes its port."""
    options = ServerOptions(port=0, rest_api_port=0, batching=BatchOptions(batch_timeout_s=1.0), grace_s=10)
    server = ModelServer(standin_model_base, MODEL, options)
    server.start()
    rest_url = f"http://{server.rest_api_address}/v1/models/{MODEL}:predict"
    body = json.dumps({"instances": SENTENCES[:1]}).encode()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(client.translate, SENTENCES[:1], server=server.address) for _ in range(3)]
        calls += [pool.submit(lambda: [row[contract.TRANSLATIONS_OUTPUT] for row in
                                       json.load(urllib.request.urlopen(rest_url, body, 30))["predictions"]])
                  for _ in range(3)]
        batched_calls.wait_for(6)  # each waits for its batch
        stopping = pool.submit(server.stop)
        eventually(lambda: refuses_connections(server.rest_api_address), what="REST refusing connections")
        probing = pool.submit(grpc_outcomes_until_closed, server.address)  # the stop has begun
        assert [call.result() for call in calls] == [[STANDIN_TRANSLATIONS[SENTENCES[0]]]] * 6
        stopping.result()
        outcomes = probing.result()
    phases = [phase for i, phase in enumerate(outcomes) if i == 0 or outcomes[i - 1] != phase]
    assert phases == ["OK", "refused", "closed"], " ".join(phases)


# The kernel may hand a process-directed SIGTERM to any thread that does not block it (TF's and
# gRPC's do not); this one sends it to a thread of its own once the server serves.
SIGTERM_ON_ANOTHER_THREAD = """
import logging, signal, sys, threading
from enja.serving import server

logging.basicConfig(level=logging.INFO)

served = threading.Event()
start = server.ModelServer.start
server.ModelServer.start = lambda self: (start(self), served.set())[0]
threading.Thread(target=lambda: served.wait() and signal.pthread_kill(threading.get_ident(), signal.SIGTERM),
                 daemon=True).start()
server.serve(server.ServerOptions(port=0, batching=None), sys.argv[1], sys.argv[2])
"""


def test_enja_serve_stops_when_sigterm_reaches_a_thread_other_than_the_main_one(standin_model_base):
    command = [sys.executable, "-c", SIGTERM_ON_ANOTHER_THREAD, f"{standin_model_base}/{MODEL}", MODEL]
    finished = subprocess.run(command, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "shutting down (SIGTERM)" in finished.stderr


def test_the_deploy_recipes_command_lines_start_enja_serve(compose, k8s):
    """tensorflow_model_server's arguments in serving/deploy/, verbatim but for the mounted config folder."""
    deployment = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for recipe in (compose["command"], deployment["args"]):
        args = parse(*(arg.replace("=/config/", f"={DEPLOY}/") for arg in recipe))
        given = flags.server_options(args)
        assert args.model_config_file == f"{DEPLOY}/models.config"
        assert (given.port, given.rest_api_port, given.poll_interval_s) == (8500, 8501, 30)
        assert given.batching == batching_config.batch_options(str(DEPLOY / "batching_parameters.txt"))


@pytest.mark.parametrize("protocol", ["gRPC", "REST"])
def test_a_port_in_use_is_an_error_naming_it(tmp_path, capsys, protocol):
    """gRPC's default SO_REUSEPORT would let a second server share the port and half the calls."""
    holder = ModelServer(str(tmp_path), MODEL, ServerOptions(port=0, rest_api_port=0))
    try:
        port = holder.port if protocol == "gRPC" else int(holder.rest_api_address.rsplit(":", 1)[1])
        taken = ["--port", str(port)] if protocol == "gRPC" else ["--port", "0", "--rest_api_port", str(port)]
        with pytest.raises(ListenError):  # first without the CLI, which would serve until signalled
            ModelServer(str(tmp_path), MODEL, flags.server_options(parse("--model_base_path", "m", *taken)))
        assert cli.main(["serve", "--model_base_path", str(tmp_path), *taken]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"enja serve: cannot listen for {protocol} on 127.0.0.1:{port}: ")
        assert error.count("\n") == 1
    finally:
        holder.stop()


@pytest.mark.parametrize(("parameters", "says"), [
    ("num_batch_threads { value: 0 }", "num_batch_threads is 0; it must be at least 1"),
    ("max_batch_size { value: -1 }", "max_batch_size is -1; it must be at least 1"),
    ("max_batch_sise { value: 8 }", "max_batch_sise"),
])
def test_bad_batching_parameters_stop_the_server_naming_file_and_field(tmp_path, capsys, parameters, says):
    """A thread count of 0 used to start a server whose batched requests waited for ever."""
    path = tmp_path / "batching.txt"
    path.write_text(parameters + "\n")
    with pytest.raises(batching_config.BatchingParametersError):  # first without the CLI, which would serve
        batching_config.batch_options(str(path))
    assert cli.main(["serve", "--model_base_path", str(tmp_path), "--port", "0", "--enable_batching",
                     f"--batching_parameters_file={path}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"enja serve: {path}: ") and says in error and error.count("\n") == 1


def test_reload_flags_set_what_they_say():
    assert (options().enable_reload_config, options().reload_config_roots) == (True, ())
    assert options("--rest_api_timeout_in_ms=1500").rest_api_timeout_s == 1.5
    given = options("--enable_reload_config=false", "--reload_config_roots=/models,gs://bucket/models")
    assert (given.enable_reload_config, given.reload_config_roots) == (False, ("/models",
                                                                               "gs://bucket/models"))
