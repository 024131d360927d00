"""What the serving benches share; not a bench itself.

The server, two ways: `ServerProcess` (a ModelServer in a child process, started with ServerOptions)
and `EnjaServe` (`enja serve` in a child process, started with its flags, as a user would). A
temporary copy of a model's newest version to serve and to push new versions into (`ModelFolder`).
Load clients over gRPC and REST, each call's `Outcome`, and running clients while something else
happens. The server's status, request counts and other metrics. The in-process model and the
latency and throughput of single-sentence calls. The server's CPU time, RSS and threads from /proc.

bench/serving_latency.py, serving_push_load.py, serving_swap_memory.py, serving_fuzz.py,
serving_overhead.py and serving_faults.py import it (`python bench/NAME.py` puts bench/ on sys.path).
"""
import argparse
import collections
import contextlib
import dataclasses
import http.client
import json
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from enja.serving import contract
from enja.serving.metrics import REST_API_PREFIX
from enja.serving.predict_api import predict_request
from enja.serving.server import METRICS_PATH, ServerOptions

SENTENCES = [
    "i like cats .", "this is a pen .", "it is raining today .", "i read a book .",
    "she has a dog .", "where is the station ?", "thank you very much .", "he likes cats .",
]
GRPC_CHANNELS = 4  # shared by the gRPC client threads, each its own connection
TIMEOUT_S = 60.0  # per request
START_TIMEOUT_S = 300.0  # for a server to come up
SHOWN_ERRORS = 5
ENJA = os.path.join(os.path.dirname(sys.executable), "enja")  # this venv's console script
State = get_model_status_pb2.ModelVersionStatus.State


# --- figures --------------------------------------------------------------------------------------

def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if len(samples) > 1 else samples[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def check(passed: bool, claim: str) -> bool:
    print(f"{'PASS' if passed else 'FAIL'}: {claim}")
    return passed


def argument_parser(doc: str, thread_flags: bool = False) -> argparse.ArgumentParser:
    """A bench's parser, its docstring as the description, with the model to serve and, if `thread_flags`,
    the server's TensorFlow thread pools (for server_process_on_copy)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True,
                        help="folder holding <model-name>/<version>/, e.g. an `enja run` output's "
                             "serving_model/ (read only: a copy of its newest version is served)")
    parser.add_argument("--model-name", default="enja")
    for name in ("intra", "inter") if thread_flags else ():
        parser.add_argument(f"--tensorflow_{name}_op_parallelism", type=int, default=0, metavar="N",
                            help="the server's, as `enja serve`'s flag (0: TensorFlow's choice)")
    return parser


# --- the model folder -----------------------------------------------------------------------------

def newest_version(model_dir: str) -> int:
    return max(int(name) for name in os.listdir(model_dir) if name.isdigit())


class ModelFolder:
    """The temporary folder of numbered versions the server polls; `version` is the newest pushed."""

    def __init__(self, path: str, version: int):
        self.path = path
        self.version = version

    def push(self) -> int:
        """Copy the newest version to the next number, atomically (a rename); return the new number."""
        new = self.version + 1
        staging = os.path.join(self.path, f".push-{new}")  # not a number, so the server ignores it
        shutil.copytree(os.path.join(self.path, str(self.version)), staging)
        os.rename(staging, os.path.join(self.path, str(new)))
        self.version = new
        return new

    def remove_old(self) -> None:
        for name in os.listdir(self.path):
            if name.isdigit() and int(name) != self.version:
                shutil.rmtree(os.path.join(self.path, name))


@contextlib.contextmanager
def model_folder_copy(model_dir: str) -> Iterator[tuple[str, ModelFolder]]:
    """A temporary base path holding a copy of the newest version in `model_dir`, and its model folder."""
    version = newest_version(model_dir)
    with tempfile.TemporaryDirectory(prefix="serving_bench-") as base:
        path = os.path.join(base, os.path.basename(os.path.normpath(model_dir)))
        shutil.copytree(os.path.join(model_dir, str(version)), os.path.join(path, str(version)))
        yield base, ModelFolder(path, version)


# --- the in-process model and single calls --------------------------------------------------------

def serving_signature(version_dir: str):
    """The serving signature loaded into this process, for the floor every server adds to."""
    import tensorflow as tf

    return tf.saved_model.load(version_dir).signatures[contract.SERVING_SIGNATURE]


def in_process_latencies(signature, requests: int, batch_size: int = 1) -> list[float]:
    """Seconds per call of `signature` on `batch_size` sentences."""
    import tensorflow as tf

    latencies = []
    for i in range(requests + 1):
        batch = [SENTENCES[(i + j) % len(SENTENCES)] for j in range(batch_size)]
        start = time.perf_counter()
        signature(**{contract.TEXT_INPUT: tf.constant(batch)})
        latencies.append(time.perf_counter() - start)
    return latencies[1:]  # the first call traces


def predict_requests(count: int, model_name: str) -> list:
    """`count` one-sentence Predict requests, the sentences in turn."""
    return [predict_request([SENTENCES[i % len(SENTENCES)]], model_name) for i in range(count)]


def grpc_latencies(stub, requests: list) -> list[float]:
    latencies = []
    for request in requests:
        start = time.perf_counter()
        stub.Predict(request, timeout=TIMEOUT_S)
        latencies.append(time.perf_counter() - start)
    return latencies


def throughput(stub, requests: list, concurrency: int) -> float:
    """Single-sentence requests from `concurrency` threads; sentences per second."""
    start = time.perf_counter()
    with futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda request: stub.Predict(request, timeout=TIMEOUT_S), requests))
    return len(requests) / (time.perf_counter() - start)


# --- the server -----------------------------------------------------------------------------------

def _run_server(base: str, model_name: str, options: ServerOptions, addresses, stop) -> None:
    """Child process: serve until `stop` is set."""
    from enja.serving.server import ModelServer

    server = ModelServer(base, model_name, options)
    server.start()
    addresses.put((server.address, server.rest_api_address))
    stop.wait()
    server.stop()


class ServerProcess:
    """A ModelServer in a child process (so that client threads do not share its interpreter lock), up while
    the block runs."""

    def __init__(self, base: str, model_name: str, options: ServerOptions):
        context = multiprocessing.get_context("spawn")
        self._addresses, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=_run_server, args=(base, model_name, options, self._addresses,
                                                                   self._stop))
        self.address: str | None = None
        self.rest_api_address: str | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.is_alive()

    def __enter__(self) -> "ServerProcess":
        """Returns once the server listens; raises if it died on the way, rather than waiting out
        the timeout."""
        self._process.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.address, self.rest_api_address = self._addresses.get(timeout=1)
                return self
            except queue.Empty as empty:
                if not self.alive() or time.monotonic() > deadline:
                    self._process.kill()  # a no-op if it died
                    self._process.join()
                    raise RuntimeError("the model server did not come up (exit code "
                                       f"{self._process.exitcode})") from empty

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join()


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class EnjaServe:
    """`enja serve` in a child process on free loopback ports, batching on, logging to `log_path`; it has
    ServerProcess's address, rest_api_address, pid and alive(), so the same clients take it. The block
    returns once both ports answer; leaving it ends the server with SIGTERM."""

    def __init__(self, model_dir: str, model_name: str, log_path: str, *flags: str):
        port, rest_port = free_ports(2)
        self.model_name = model_name
        self.address, self.rest_api_address = f"127.0.0.1:{port}", f"127.0.0.1:{rest_port}"
        self.command = [ENJA, "serve", f"--model_base_path={model_dir}", f"--model_name={model_name}",
                        f"--port={port}", f"--rest_api_port={rest_port}", "--enable_batching=true", *flags]
        self.log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def shown(self) -> str:
        """The command line, the temporary folder left out."""
        return " ".join(["enja", *self.command[1:]])

    def __enter__(self) -> "EnjaServe":
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel)
            while not self._ready(status):
                if not self.alive() or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("the model server did not come up (exit code "
                                       f"{self._process.returncode}); "
                                       f"its log ends:\n{self.log_tail()}")
                time.sleep(0.5)
        return self

    def _ready(self, status_stub) -> bool:
        try:
            if not available_versions(status_stub, self.model_name):
                return False
            connection = http.client.HTTPConnection(*self.rest_api_address.rsplit(":", 1), timeout=5)
            try:
                connection.request("GET", f"/v1/models/{self.model_name}")
                return connection.getresponse().status == 200
            finally:
                connection.close()
        except (grpc.RpcError, OSError, http.client.HTTPException):
            return False

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        return self._process.wait(timeout)

    def __exit__(self, *exc) -> None:
        if self.alive():
            self.terminate()
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return "".join(collections.deque(log, lines))


@contextlib.contextmanager
def grpc_channels(address: str, count: int = GRPC_CHANNELS) -> Iterator[list[grpc.Channel]]:
    """`count` channels, each its own connection (a subchannel pool apiece)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(grpc.insecure_channel(address, [("grpc.use_local_subchannel_pool", 1)]))
               for _ in range(count)]


@contextlib.contextmanager
def server_process_on_copy(args: argparse.Namespace) -> Iterator[tuple[ServerProcess, ModelFolder,
                                                                        list[grpc.Channel]]]:
    """A ServerProcess (batching and the REST API on, the thread flags of argument_parser) on a temporary
    copy of the model's newest version, that copy's folder, and GRPC_CHANNELS channels to it."""
    options = ServerOptions(port=0, rest_api_port=0, intra_op_threads=args.tensorflow_intra_op_parallelism,
                            inter_op_threads=args.tensorflow_inter_op_parallelism)
    with model_folder_copy(os.path.join(args.model_base_path, args.model_name)) as (base, folder), \
            ServerProcess(base, args.model_name,
                          options) as server, grpc_channels(server.address) as channels:
        print(f"server pid {server.pid} on {server.address} (REST {server.rest_api_address}), serving a "
              f"copy of version {folder.version}; {os.cpu_count()} CPUs; RSS {rss_mib(server.pid):.0f} MiB")
        yield server, folder, channels


Measurement = Callable[[ServerProcess, ModelFolder, list[grpc.Channel], argparse.Namespace], bool]


def check_on_copy(args: argparse.Namespace, measure: Measurement) -> int:
    """Runs a bench's `measure` (True if its checks passed) on server_process_on_copy; the exit code: 0 if
    they passed, else 1."""
    with server_process_on_copy(args) as (server, folder, channels):
        passed = measure(server, folder, channels, args)
    print(f"\n{'all checks passed' if passed else 'SOME CHECKS FAILED'}")
    return 0 if passed else 1


@contextlib.contextmanager
def enja_serve_on_copy(args: argparse.Namespace, *flags: str) -> Iterator[tuple[EnjaServe, ModelFolder]]:
    """`enja serve` with `flags` on a temporary copy of the model's newest version, and that copy's folder."""
    with model_folder_copy(os.path.join(args.model_base_path, args.model_name)) as (base, folder), \
            EnjaServe(folder.path, args.model_name, os.path.join(base, "server.log"), *flags) as server:
        print(f"server pid {server.pid}: {server.shown()}\n")
        yield server, folder


# --- the server's status and metrics --------------------------------------------------------------

def available_versions(status_stub, model_name: str) -> list[int]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    response = status_stub.GetModelStatus(request, timeout=TIMEOUT_S)
    return sorted(status.version for status in response.model_version_status
                  if status.state == State.AVAILABLE)


def metric_samples(rest_address: str) -> list:
    """Every sample on the server's Prometheus page."""
    connection = http.client.HTTPConnection(*rest_address.rsplit(":", 1), timeout=TIMEOUT_S)
    try:
        connection.request("GET", METRICS_PATH)
        text = connection.getresponse().read().decode("utf-8")
    finally:
        connection.close()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def served_requests(rest_address: str) -> collections.Counter:
    """The server's request counter by (api, version, status), read from its Prometheus page."""
    counts = collections.Counter()
    for sample in metric_samples(rest_address):
        if sample.name == "enja_serving_requests_total":
            counts[sample.labels["api"], sample.labels["version"], sample.labels["status"]] += sample.value
    return counts


def rest_versions(before: collections.Counter, after: collections.Counter) -> set[int]:
    """The versions the server counted REST predictions answered by between two scrapes (REST responses do not
    name their version; the counter's api label tells the protocols apart)."""
    return {int(version) for (api, version, status), count in (after - before).items()
            if api == REST_API_PREFIX + "Predict" and status == "OK" and count > 0}


# --- /proc readings -------------------------------------------------------------------------------

def _status_field(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def rss_mib(pid: int) -> float:
    return _status_field(pid, "VmRSS") / 1024


def server_threads(pid: int) -> int:
    return _status_field(pid, "Threads")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class CpuUse:
    """CPU seconds of this (the client) process, of the server, of the whole machine, and its idle ones."""
    client: float
    server: float
    machine: float
    idle: float

    @classmethod
    def now(cls, server_pid: int) -> "CpuUse":
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:9]]  # user ... steal, all cores
        idle = ticks[3] + ticks[4]  # idle, iowait
        hz = os.sysconf("SC_CLK_TCK")
        return cls(time.process_time(), cpu_seconds(server_pid), (sum(ticks) - idle) / hz, idle / hz)

    def __sub__(self, other: "CpuUse") -> "CpuUse":
        return CpuUse(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other),
                                                strict=True)))


# --- load clients ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Outcome:
    protocol: str
    seconds: float
    finished: float  # time.monotonic() when the answer came
    version: int | None  # the version that answered, if the protocol says
    error: str | None  # None for a success


class GrpcPredict:
    """Predict on one sentence through a (shared) channel; the response names the version that answered."""
    protocol = "gRPC"

    def __init__(self, channel: grpc.Channel, model_name: str):
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._model_name = model_name

    def __call__(self, sentence: str) -> int:
        response = self._stub.Predict(predict_request([sentence], self._model_name), timeout=TIMEOUT_S)
        if not response.outputs[contract.TRANSLATIONS_OUTPUT].string_val:
            raise ValueError(f"no translations in {response}")
        return response.model_spec.version.value


class RestPredict:
    """REST predict on one sentence over this client's own connection, reopened when the server closes it."""
    protocol = "REST"

    def __init__(self, rest_address: str, model_name: str):
        self._connection = http.client.HTTPConnection(*rest_address.rsplit(":", 1), timeout=TIMEOUT_S)
        self._path = f"/v1/models/{model_name}:predict"

    def __call__(self, sentence: str) -> None:
        try:
            self._connection.request("POST", self._path, json.dumps({"instances": [sentence]}),
                                     {"Content-Type": "application/json"})
            response = self._connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()  # the next call starts a new connection
            raise
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {body[:300]!r}")
        if not json.loads(body)["predictions"][0][contract.TRANSLATIONS_OUTPUT]:
            raise ValueError(f"no translation in {body[:300]!r}")

    def close(self) -> None:
        self._connection.close()


Client = GrpcPredict | RestPredict


def describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def call_once(client: Client, sentence: str = SENTENCES[0]) -> Outcome:
    start = time.perf_counter()
    try:
        version, error = client(sentence), None
    except Exception as failure:  # every failure is counted, whatever raised it
        version, error = None, describe(failure)
    return Outcome(client.protocol, time.perf_counter() - start, time.monotonic(), version, error)


def call_until(client: Client, first: int, stop: threading.Event,
               refusing: threading.Event | None = None) -> list[Outcome]:
    """One client's calls, back to back, until `stop` is set, or its first error once `refusing` is."""
    outcomes = []
    while not stop.is_set():
        outcomes.append(call_once(client, SENTENCES[(first + len(outcomes)) % len(SENTENCES)]))
        if refusing is not None and outcomes[-1].error is not None and refusing.is_set():
            break
    return outcomes


def run_clients(clients: list[Client], stop: threading.Event) -> list[Outcome]:
    """All clients calling at once until `stop` is set; every call's outcome."""
    with futures.ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(call_until, clients, range(len(clients)), [stop] * len(clients)))
    return [outcome for outcomes in results for outcome in outcomes]


@contextlib.contextmanager
def calling(clients: list[Client]) -> Iterator[list[Outcome]]:
    """All clients calling at once while the block runs; the list it yields holds every call's outcome once
    the block has ended."""
    stop, outcomes = threading.Event(), []
    with futures.ThreadPoolExecutor(1) as pool:
        calls = pool.submit(run_clients, clients, stop)
        try:
            yield outcomes
        finally:
            stop.set()
            outcomes += calls.result()


def call_for(clients: list[Client], seconds: float) -> tuple[list[Outcome], float]:
    """All clients calling at once for `seconds`: their outcomes, and the seconds until the last answered."""
    start = time.monotonic()
    with calling(clients) as outcomes:
        time.sleep(seconds)
    return outcomes, time.monotonic() - start


@contextlib.contextmanager
def load_clients(server: ServerProcess | EnjaServe, channels: list[grpc.Channel], model_name: str,
                 count: int) -> Iterator[list[Client]]:
    """`count` clients, alternately gRPC (over the shared channels) and REST (a connection each)."""
    clients = [GrpcPredict(channels[i // 2 % len(channels)], model_name) if i % 2 == 0
               else RestPredict(server.rest_api_address, model_name) for i in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            if isinstance(client, RestPredict):
                client.close()


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome.error is not None]


def success_latencies(outcomes: list[Outcome]) -> list[float]:
    """Seconds of the successful calls ([nan] if none was)."""
    return [outcome.seconds for outcome in outcomes if outcome.error is None] or [float("nan")]


def print_errors(outcomes: list[Outcome]) -> None:
    failed = failures(outcomes)
    if failed:
        print(f"\nfirst of {len(failed)} errors:\n")
        for outcome in failed[:SHOWN_ERRORS]:
            print(f"- {outcome.protocol}: {outcome.error[:500]}")
