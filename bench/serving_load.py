"""The model server under load and faults, as markdown tables; exits 1 if a check fails.

    .venv/bin/python bench/serving_load.py --model-base-path pipeline_output/serving_model
    .venv/bin/python bench/serving_load.py --model-base-path pipeline_output/serving_model --clients 20 \\
        --duration 20 --swaps 1 2 --swap-seconds 1 --malformed 200 --requests 40   # a smoke run, about 2 min

One server (bench/serving_latency.py's ServerProcess: its own process, batching and the REST API on) serves a
temporary base path holding a copy of the given model's newest version; the given folder is never
written. A push copies the served version to a temporary name in the model folder and renames it to
the next number, so the server never sees half a version.

1. Load during a push: --clients threads, half calling gRPC Predict over a few shared channels, half
   REST predict each over its own connection (kept alive when the server allows), one sentence a call,
   for --duration seconds; a new version is pushed a third of the way in. No request may fail, and
   both versions must have answered each protocol: gRPC responses name their version, REST's do not,
   so those are taken from the server's request counter (its api label tells the protocols apart).
2. Memory over version swaps: a swap pushes a new version while --swap-clients threads call, waits
   until GetModelStatus reports the new version as the only one available, lets the clients call it
   for --swap-seconds more, then removes the old versions from disk. The server's VmRSS is read at
   each of the --swaps checkpoints; RSS after the last more than 10 % above RSS after the second (20
   and 2 by default) fails, which is how a version's memory that is never released shows.
3. Malformed requests: --malformed random gRPC calls (random bytes to the services' methods, mutated
   and plausible-but-wrong PredictRequests) and as many random HTTP requests (methods, paths, bodies,
   framing). Every gRPC call must end in a status other than UNKNOWN (an unhandled exception),
   UNAVAILABLE or DEADLINE_EXCEEDED (a dead or stuck server); every HTTP request must get a response,
   with a JSON {"error": ...} body unless it is a 200 or answers HEAD; the server must still be running
   and answer good requests at the end. HandleReloadConfigRequest is left out: a random config that
   parses is a legitimate order to serve something else.
4. Overhead, with bench/serving_latency.py's measurements while nothing else calls: gRPC p50 for one sentence
   over the in-process p50 (target: less than 10 % more), and throughput with batching at concurrency
   32 over one in-process call on a batch of 32 (target: at least 90 %).

Whether the client is the bottleneck: part 1 prints the CPU seconds of the client process, the
server, the machine's other processes and the idle ones over the run. Client and server share the
cores, so whatever the client uses the server could have had. On the 2-core development machine the
client used 8 % (20 clients) to 11 % (200 clients) of one core, about a tenth of the server's time,
while p50 latency grew from 0.23 s to 1.4 s: the requests wait in the server, not in the client.
"""
import argparse
import base64
import collections
import contextlib
import dataclasses
import http.client
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from enja.serving import contract  # noqa: E402
from enja.serving.metrics import REST_API_PREFIX  # noqa: E402
from enja.serving.server import METRICS_PATH, ServerOptions  # noqa: E402
from enja.serving.warmup import predict_request  # noqa: E402
from serving_latency import (  # noqa: E402
    SENTENCES,
    ServerProcess,
    grpc_latencies,
    in_process_latencies,
    newest_version,
    percentile,
    serving_signature,
    throughput,
)

GRPC_CHANNELS = 4  # shared by the gRPC client threads, each its own connection
TIMEOUT_S = 60.0  # per request
SWAP_TIMEOUT_S = 300.0  # for a pushed version to become the only one served
MAX_RSS_GROWTH = 0.10
MAX_LATENCY_OVERHEAD = 0.10
MIN_THROUGHPUT_RATIO = 0.90
BATCH = 32
FUZZ_THREADS = 8
ROUNDS = 5  # of part 4's measurements
SHOWN_ERRORS = 5
# A gRPC status no bad request should get: an unhandled exception, or a server that died or hangs.
BAD_GRPC_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
State = get_model_status_pb2.ModelVersionStatus.State


# --- the model folder and the server process -----------------------------------------------------

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
    with tempfile.TemporaryDirectory(prefix="serving_load-") as base:
        path = os.path.join(base, os.path.basename(os.path.normpath(model_dir)))
        shutil.copytree(os.path.join(model_dir, str(version)), os.path.join(path, str(version)))
        yield base, ModelFolder(path, version)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


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
        return CpuUse(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def available_versions(status_stub, model_name: str) -> list[int]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    response = status_stub.GetModelStatus(request, timeout=TIMEOUT_S)
    return sorted(status.version for status in response.model_version_status if status.state == State.AVAILABLE)


def wait_until_only(status_stub, model_name: str, version: int) -> float:
    """Seconds until GetModelStatus reports `version` as the only available one."""
    start = time.monotonic()
    while available_versions(status_stub, model_name) != [version]:
        if time.monotonic() - start > SWAP_TIMEOUT_S:
            raise TimeoutError(f"version {version} was not the only one served after {SWAP_TIMEOUT_S:g} s")
        time.sleep(0.1)
    return time.monotonic() - start


def served_requests(rest_address: str) -> collections.Counter:
    """The server's request counter by (api, version, status), read from its Prometheus page."""
    connection = http.client.HTTPConnection(*rest_address.rsplit(":", 1), timeout=TIMEOUT_S)
    connection.request("GET", METRICS_PATH)
    text = connection.getresponse().read().decode("utf-8")
    connection.close()
    counts = collections.Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "enja_serving_requests_total":
                counts[sample.labels["api"], sample.labels["version"], sample.labels["status"]] += sample.value
    return counts


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


def call_until(client: Client, first: int, stop: threading.Event) -> list[Outcome]:
    """One client's calls, back to back, until `stop` is set."""
    outcomes = []
    while not stop.is_set():
        outcomes.append(call_once(client, SENTENCES[(first + len(outcomes)) % len(SENTENCES)]))
    return outcomes


def run_clients(clients: list[Client], stop: threading.Event) -> list[Outcome]:
    """All clients calling at once until `stop` is set; every call's outcome."""
    with futures.ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(call_until, clients, range(len(clients)), [stop] * len(clients)))
    return [outcome for outcomes in results for outcome in outcomes]


@contextlib.contextmanager
def load_clients(server: ServerProcess, channels: list[grpc.Channel], model_name: str,
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


def print_errors(outcomes: list[Outcome]) -> None:
    failed = failures(outcomes)
    if failed:
        print(f"\nfirst of {len(failed)} errors:\n")
        for outcome in failed[:SHOWN_ERRORS]:
            print(f"- {outcome.protocol}: {outcome.error[:500]}")


def check(passed: bool, claim: str) -> bool:
    print(f"{'PASS' if passed else 'FAIL'}: {claim}")
    return passed


# --- 1. load during a push ------------------------------------------------------------------------

def delayed_push(folder: ModelFolder, delay_s: float) -> float:
    """Push after `delay_s`; returns when (time.monotonic()) the new version was on disk."""
    time.sleep(delay_s)
    folder.push()
    return time.monotonic()


def rest_versions(before: collections.Counter, after: collections.Counter) -> set[int]:
    """The versions the server counted REST predictions answered by between two scrapes."""
    return {int(version) for (api, version, status), count in (after - before).items()
            if api == REST_API_PREFIX + "Predict" and status == "OK" and count > 0}


def protocol_row(protocol: str, outcomes: list[Outcome], seconds: float, versions: set[int]) -> str:
    latencies = [outcome.seconds for outcome in outcomes if outcome.error is None] or [float("nan")]
    shown = ", ".join(str(version) for version in sorted(versions))
    return (f"| {protocol} | {len(outcomes)} | {len(failures(outcomes))} | {percentile(latencies, 50) * 1e3:.0f} | "
            f"{percentile(latencies, 99) * 1e3:.0f} | {len(outcomes) / seconds:.1f} | {shown} |")


def load_during_push(server: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
                     args: argparse.Namespace) -> bool:
    old, stop = folder.version, threading.Event()
    before, cpu = served_requests(server.rest_api_address), CpuUse.now(server.pid)
    with load_clients(server, channels, args.model_name, args.clients) as clients, \
            futures.ThreadPoolExecutor(1) as pusher:
        start = time.monotonic()
        pushed = pusher.submit(delayed_push, folder, args.duration / 3)
        threading.Timer(args.duration, stop.set).start()
        outcomes = run_clients(clients, stop)
    seconds = time.monotonic() - start
    cpu = CpuUse.now(server.pid) - cpu
    grpc_outcomes = [outcome for outcome in outcomes if outcome.protocol == GrpcPredict.protocol]
    rest_outcomes = [outcome for outcome in outcomes if outcome.protocol == RestPredict.protocol]
    answered = {GrpcPredict.protocol: {o.version for o in grpc_outcomes if o.error is None},
                RestPredict.protocol: rest_versions(before, served_requests(server.rest_api_address))}
    first_new = min((o.finished for o in grpc_outcomes if o.version == folder.version), default=float("nan"))

    print(f"\n## 1. Load during a push\n\n{args.clients} clients ({(args.clients + 1) // 2} gRPC over "
          f"{len(channels)} channels, {args.clients // 2} REST) for {seconds:.0f} s; version {folder.version} "
          f"pushed at {pushed.result() - start:.0f} s (served: {old}), first answered (gRPC) "
          f"{first_new - pushed.result():.1f} s after the push\n")
    print("| protocol | requests | failed | p50 ms | p99 ms | requests/s | versions answered |\n"
          "|---|---|---|---|---|---|---|")
    for protocol, selected in ((GrpcPredict.protocol, grpc_outcomes), (RestPredict.protocol, rest_outcomes)):
        print(protocol_row(protocol, selected, seconds, answered[protocol]))
    print(protocol_row("all", outcomes, seconds, answered[GrpcPredict.protocol] | answered[RestPredict.protocol]))
    print(f"\n(REST versions from the server's request counter.) CPU seconds over the run, of "
          f"{os.cpu_count()} cores x {seconds:.0f} s: client {cpu.client:.1f} ({cpu.client / seconds:.0%} of one "
          f"core), server {cpu.server:.1f}, other processes {cpu.machine - cpu.client - cpu.server:.1f}, idle "
          f"{cpu.idle:.1f}; server RSS now {rss_mib(server.pid):.0f} MiB")
    print_errors(outcomes)
    print()
    return all([check(not failures(outcomes), f"no failed requests ({len(failures(outcomes))} of {len(outcomes)})"),
                *(check({old, folder.version} <= versions, f"versions {old} and {folder.version} both answered "
                        f"{protocol} requests") for protocol, versions in answered.items())])


# --- 2. memory over version swaps -----------------------------------------------------------------

def swap(folder: ModelFolder, status_stub, clients: list[Client],
         args: argparse.Namespace) -> tuple[float, list[Outcome]]:
    """Push while the clients call, wait until only the new version is served, let them call it, drop the
    old from disk; the wait's seconds and the calls' outcomes."""
    stop = threading.Event()
    with futures.ThreadPoolExecutor(1) as calling:
        calls = calling.submit(run_clients, clients, stop)
        try:
            waited = wait_until_only(status_stub, args.model_name, folder.push())
            time.sleep(args.swap_seconds)
        finally:
            stop.set()
        outcomes = calls.result()
    folder.remove_old()
    return waited, outcomes


def memory_over_swaps(server: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
                      args: argparse.Namespace) -> bool:
    status_stub = model_service_pb2_grpc.ModelServiceStub(channels[0])
    folder.remove_old()  # what part 1 left
    rss, outcomes, waits = {0: rss_mib(server.pid)}, [], []
    with load_clients(server, channels, args.model_name, args.swap_clients) as clients:
        for swaps in range(1, args.swaps[-1] + 1):
            waited, swap_outcomes = swap(folder, status_stub, clients, args)
            waits.append(waited)
            outcomes += swap_outcomes
            if swaps in args.swaps:
                rss[swaps] = rss_mib(server.pid)
    baseline, last = args.swaps[1], args.swaps[-1]
    print(f"\n## 2. Memory over version swaps\n\n{args.swap_clients} clients calling; {len(outcomes)} requests, "
          f"{len(failures(outcomes))} failed; a push took {min(waits):.1f}-{max(waits):.1f} s to be the only "
          f"version served\n")
    print(f"| swaps | server RSS MiB | vs after {baseline} |\n|---|---|---|")
    for swaps, mib in rss.items():
        print(f"| {swaps} | {mib:.0f} | {mib / rss[baseline] - 1:+.1%} |")
    print_errors(outcomes)
    print()
    growth = rss[last] / rss[baseline] - 1
    return all([check(not failures(outcomes), f"no failed requests during swaps ({len(failures(outcomes))})"),
                check(growth <= MAX_RSS_GROWTH, f"RSS after {last} swaps within {MAX_RSS_GROWTH:.0%} of after "
                      f"{baseline} ({rss[last]:.0f} vs {rss[baseline]:.0f} MiB, {growth:+.1%})")])


# --- 3. malformed requests ------------------------------------------------------------------------

Fault = Callable[[random.Random, str], predict_pb2.PredictRequest]


def _request(model_name: str, inputs: dict, signature: str = contract.SERVING_SIGNATURE) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for alias, tensor in inputs.items():
        request.inputs[alias].CopyFrom(tensor if isinstance(tensor, tensor_pb2.TensorProto)
                                       else tf.make_tensor_proto(tensor))
    return request


def _text(values) -> tensor_pb2.TensorProto:
    return tf.make_tensor_proto(values, dtype=tf.string)


def _odd_shape(rng: random.Random) -> tensor_pb2.TensorProto:
    """A string tensor whose shape disagrees with its values, or cannot be."""
    sizes = rng.choice([[3], [-1], [-5], [2**24], [2**40], [0, 2**40], [2**31, 2**31]])
    return tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[b"i like cats ."],
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in sizes]))


def _with_spec(rng: random.Random, model_name: str) -> predict_pb2.PredictRequest:
    """A good request for a version, label or signature the server does not have."""
    request = predict_request(["i like cats ."], model_name)
    choice = rng.randrange(3)
    if choice == 0:
        request.model_spec.version.value = rng.choice([0, -1, 1, 2**63 - 1])
    elif choice == 1:
        request.model_spec.version_label = rng.choice(["", "stable", "x" * 1000])
    else:
        request.model_spec.signature_name = rng.choice(["nope", "translate_examples", "x" * 1000])
    return request


def _unknown_output(rng: random.Random, model_name: str) -> predict_pb2.PredictRequest:
    request = predict_request(["i like cats ."], model_name)
    request.output_filter.append(rng.choice(["nope", "", contract.ATTENTION_OUTPUT]))
    return request


def _beam_width(rng: random.Random, model_name: str) -> predict_pb2.PredictRequest:
    """Beam widths the contract refuses. (Huge ones it allows: 2**31 - 1 holds 8 GB for a minute.)"""
    beam_width = rng.choice([tf.make_tensor_proto(rng.choice([0, -1, -2**31]), dtype=tf.int32),
                             tf.make_tensor_proto([2, 3], dtype=tf.int32), tf.make_tensor_proto(4.0)])
    return _request(model_name, {contract.TEXT_INPUT: _text(["i like cats ."]), contract.BEAM_WIDTH_INPUT: beam_width},
                    contract.OPTIONS_SIGNATURE)


PLAUSIBLE_FAULTS: dict[str, Fault] = {
    "wrong dtype": lambda rng, name: _request(name, {contract.TEXT_INPUT: rng.choice(
        [np.array([1.5], np.float32), np.array([3], np.int32), np.array([True]), np.array([7], np.int64)])}),
    "wrong rank": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(rng.choice(
        ["i like cats .", [["i like cats ."]], [["a", "b", "c"], ["d", "e", "f"]]]))}),
    "odd shape": lambda rng, name: _request(name, {contract.TEXT_INPUT: _odd_shape(rng)}),
    "empty batch": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(np.array([], dtype=object))}),
    "too many rows": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(["i like cats ."] * rng.choice(
        [257, 5000]))}),
    "long string": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(["cats " * rng.choice(
        [201, 20_000, 800_000, 1_000_000])])}),  # 1 kB over the limit, to over gRPC's 4 MB
    "not UTF-8": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text([rng.randbytes(rng.randint(1, 50))])}),
    "wrong input name": lambda rng, name: _request(name, {rng.choice(["", "txt", "examples", "TEXT"]):
                                                          _text(["hi ."])}),
    "extra input": lambda rng, name: _request(name, {contract.TEXT_INPUT: _text(["hi ."]), "extra": _text(["x"])}),
    "no inputs": lambda rng, name: _request(name, {}),
    "unknown model": lambda rng, name: predict_request(["hi ."], rng.choice(["", "nope", name.upper(), "x" * 10_000])),
    "unknown version, label or signature": _with_spec,
    "unknown output": _unknown_output,
    "beam width": _beam_width,
    "bad tensor content": lambda rng, name: _request(name, {contract.TEXT_INPUT: tensor_pb2.TensorProto(
        dtype=tf.string.as_datatype_enum, tensor_content=rng.randbytes(64),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]))}),
}
GRPC_METHODS = tuple(f"/tensorflow.serving.{method}" for method in (
    "PredictionService/Predict", "PredictionService/GetModelMetadata", "PredictionService/Classify",
    "ModelService/GetModelStatus", "PredictionService/NoSuchMethod"))


def mutated(rng: random.Random, message: bytes) -> bytes:
    """A few random byte edits of a serialized message."""
    data = bytearray(message)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(data) + 1)
        edit = rng.randrange(3)
        if edit == 0 and position < len(data):
            data[position] = rng.randrange(256)
        elif edit == 1:
            data.insert(position, rng.randrange(256))
        else:
            del data[position:position + rng.randint(1, 4)]
    return bytes(data)


def random_grpc_call(rng: random.Random, model_name: str) -> tuple[str, str, bytes]:
    """(kind, method, serialized request) of one malformed call."""
    kind = rng.choice(["random bytes", "mutated request", *PLAUSIBLE_FAULTS])
    if kind == "random bytes":
        method = rng.choice(GRPC_METHODS)
        return f"random bytes to {method.rsplit('/', 1)[1]}", method, rng.randbytes(rng.choice([0, 1, 16, 300, 5000]))
    if kind == "mutated request":
        good = predict_request(rng.sample(SENTENCES, 2), model_name).SerializeToString()
        return kind, GRPC_METHODS[0], mutated(rng, good)
    return kind, GRPC_METHODS[0], PLAUSIBLE_FAULTS[kind](rng, model_name).SerializeToString()


@dataclasses.dataclass(frozen=True)
class Answer:
    answer: str  # e.g. "gRPC NOT_FOUND", "HTTP 404", "no HTTP response (TimeoutError)"
    problem: str | None = None  # how the answer breaks the contract; None if it does not
    detail: str = ""  # the error message or the body


def grpc_answer(channel: grpc.Channel, method: str, request: bytes) -> Answer:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)  # bytes both ways
    try:
        call(request, timeout=TIMEOUT_S)
    except grpc.RpcError as error:
        problem = "a dead, stuck or failing server's status" if error.code() in BAD_GRPC_CODES else None
        return Answer(f"gRPC {error.code().name}", problem, error.details() or "")
    except Exception as error:
        return Answer(f"no gRPC status ({type(error).__name__})", "no status", describe(error))
    return Answer("gRPC OK")


@dataclasses.dataclass(frozen=True)
class HttpCall:
    kind: str  # the method and what the path and framing are, for the answer table
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def _random_path(rng: random.Random, model_name: str) -> tuple[str, str]:
    """(what the path is, the path)."""
    junk = urllib.parse.quote(rng.randbytes(rng.choice([1, 20, 300])), safe="")
    model = f"/v1/models/{model_name}"
    paths = {
        "predict": f"{model}:predict", "status": model, "metadata": f"{model}/metadata",
        "a version's predict": f"{model}/versions/{rng.choice([0, 1, 10**30])}:predict",
        "junk version": f"{model}/versions/{junk}:predict", "junk label": f"{model}/labels/{junk}:predict",
        "junk model": f"/v1/models/{junk}:predict",
        "other verb": f"{model}:{rng.choice(['classify', 'regress', junk])}",
        "junk under /v1": f"/v1/{junk}", "junk": f"/{junk}", "metrics": METRICS_PATH,
        "long path": "/v1/models/" + "x" * rng.choice([1000, 70_000]), "predict?junk": f"{model}:predict?{junk}",
    }
    label = rng.choice(sorted(paths))
    return label, paths[label]


def _random_document(rng: random.Random) -> object:
    """A JSON document near a predict request's: wrong types, sizes and formats."""
    sentence = rng.choice(SENTENCES)
    instances = rng.choice([
        [], 5, sentence, [sentence], [[sentence]], [{contract.TEXT_INPUT: sentence}], [{"txt": sentence}],
        [{contract.TEXT_INPUT: sentence, "extra": 1}], [1, 2], [None], [True], [1e308], [{"b64": "!!!"}],
        [{"b64": base64.b64encode(rng.randbytes(30)).decode()}], [sentence] * rng.choice([256, 257]),
        ["cats " * 200_000], [sentence, {contract.TEXT_INPUT: sentence}], [{contract.TEXT_INPUT: [sentence]}]])
    return rng.choice([
        {"instances": instances}, {"inputs": instances}, {"instances": [sentence], "inputs": [sentence]},
        {"signature_name": rng.choice([5, None, "nope", contract.ATTENTION_SIGNATURE, contract.OPTIONS_SIGNATURE]),
         "instances": instances},
        {"signature_name": contract.OPTIONS_SIGNATURE,
         "inputs": {contract.TEXT_INPUT: [sentence], contract.BEAM_WIDTH_INPUT: rng.choice([0, -1, 2**40, 4, "4"])}},
        [], 5, None, "instances"])


def _random_body(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return b""
    if choice == 1:
        return rng.randbytes(rng.choice([1, 100, 10_000]))
    if choice == 2:
        return rng.choice([b"{", b'{"instances": [', b"{'instances': []}", b'{"instances": ["\\ud800"]}', b"NaN"])
    if choice == 3:
        depth = rng.choice([100, 100_000])
        return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    return json.dumps(_random_document(rng)).encode("utf-8")


def random_http_call(rng: random.Random, model_name: str) -> HttpCall:
    method = rng.choice(["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO"])
    body = _random_body(rng)
    headers = rng.choice([{"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {},
                          {"Content-Length": rng.choice(["abc", "-1", " 5", "1e3"])},
                          {"Transfer-Encoding": "chunked"}])
    label, path = _random_path(rng, model_name)
    framing = "".join(f" with {name}: {value!r}" for name, value in headers.items() if name != "Content-Type")
    return HttpCall(f"{method} {label}{framing}", method, path, body, headers)


def http_answer(rest_address: str, call: HttpCall) -> Answer:
    connection = http.client.HTTPConnection(*rest_address.rsplit(":", 1), timeout=TIMEOUT_S)
    try:
        connection.putrequest(call.method, call.path, skip_accept_encoding=True)
        for name, value in call.headers.items():
            connection.putheader(name, value)
        if "Content-Length" not in call.headers:
            connection.putheader("Content-Length", str(len(call.body)))
        connection.endheaders(call.body)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        return Answer(f"no HTTP response ({type(error).__name__})", "no response", describe(error))
    finally:
        connection.close()
    answer = f"HTTP {response.status}"
    if response.status == 200 or call.method == "HEAD":
        return Answer(answer, detail=repr(body[:200]))
    try:
        document = json.loads(body)
    except ValueError:
        return Answer(answer, "body not JSON", repr(body[:200]))
    if not isinstance(document, dict) or not isinstance(document.get("error"), str):
        return Answer(answer, "JSON body without an 'error' string", repr(body[:200]))
    return Answer(answer, detail=document["error"])


Case = Callable[[int], tuple[str, Callable[[], Answer]]]  # a case's number -> its kind and how to send it


def fuzz(case: Case, count: int) -> list[tuple[int, str, Answer]]:
    """Send `count` malformed calls, a few at a time: (number, kind, answer) of each."""
    def send(index: int) -> tuple[int, str, Answer]:
        kind, call = case(index)
        return index, kind, call()

    with futures.ThreadPoolExecutor(FUZZ_THREADS) as pool:
        return list(pool.map(send, range(count)))


def print_answers(protocol: str, results: list[tuple[int, str, Answer]]) -> None:
    """A table of the answers by count, with the kinds of call that got each most."""
    kinds = collections.defaultdict(collections.Counter)
    for _, kind, answer in results:
        kinds[answer.answer][kind] += 1
    print(f"| {protocol} answer | count | most from |\n|---|---|---|")
    for answer, counts in sorted(kinds.items(), key=lambda item: -sum(item[1].values())):
        print(f"| {answer} | {sum(counts.values())} | {'; '.join(kind for kind, _ in counts.most_common(3))} |")
    print()


def problems(results: list[tuple[int, str, Answer]]) -> list[str]:
    """The answers that break the contract, a line for each kind of answer with its count and first case."""
    cases = collections.defaultdict(list)
    for index, kind, answer in results:
        if answer.problem:
            cases[answer.answer, answer.problem].append(f"case {index}, {kind}: {answer.detail[:200]}")
    return [f"{len(found)} x {answer}, {problem}; first: {found[0]}" for (answer, problem), found in cases.items()]


def good_requests(server: ServerProcess, channels: list[grpc.Channel], model_name: str) -> dict[str, str | None]:
    """One good predict by each protocol: the error of each, None if it succeeded."""
    with load_clients(server, channels, model_name, 2) as clients:
        outcomes = [call_once(client) for client in clients]
    return {outcome.protocol: outcome.error for outcome in outcomes}


def malformed_requests(server: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
                       args: argparse.Namespace) -> bool:
    def grpc_case(index: int) -> tuple[str, Callable[[], Answer]]:
        kind, method, request = random_grpc_call(random.Random(f"{args.seed}-grpc-{index}"), args.model_name)
        return kind, lambda: grpc_answer(channels[index % len(channels)], method, request)

    def http_case(index: int) -> tuple[str, Callable[[], Answer]]:
        call = random_http_call(random.Random(f"{args.seed}-http-{index}"), args.model_name)
        return call.kind, lambda: http_answer(server.rest_api_address, call)

    start = time.monotonic()
    grpc_results, http_results = fuzz(grpc_case, args.malformed), fuzz(http_case, args.malformed)
    seconds = time.monotonic() - start
    alive = server.alive()
    good = good_requests(server, channels, args.model_name) if alive else {}
    print(f"\n## 3. Malformed requests\n\n{args.malformed} gRPC and {args.malformed} HTTP calls (seed {args.seed}) in "
          f"{seconds:.0f} s, {FUZZ_THREADS} at a time; server RSS after: "
          f"{rss_mib(server.pid) if alive else float('nan'):.0f} MiB\n")
    print_answers("gRPC", grpc_results)
    print_answers("HTTP", http_results)
    grpc_problems, http_problems = problems(grpc_results), problems(http_results)
    for problem in grpc_problems + http_problems:
        print(f"- {problem}")
    print()
    return all([check(not grpc_problems, "every gRPC call got a status, none of "
                      f"{', '.join(code.name for code in BAD_GRPC_CODES)}"),
                check(not http_problems, "every HTTP call got a response, with a JSON error unless 200 or HEAD"),
                check(alive and good and not any(good.values()),
                      f"the server is still up and answers gRPC and REST predict ({good or 'it died'})")])


# --- 4. overhead over the in-process model --------------------------------------------------------

def overhead(server: ServerProcess, folder: ModelFolder, channels: list[grpc.Channel],
             args: argparse.Namespace) -> bool:
    signature = serving_signature(os.path.join(folder.path, str(folder.version)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channels[0])
    requests = [predict_request([SENTENCES[i % len(SENTENCES)]], args.model_name) for i in range(args.requests)]
    grpc_latencies(stub, requests[:10])  # warm up
    per_round = max(args.requests // ROUNDS, 2)
    floor, served, batches, rates = [], [], [], []
    for _ in range(ROUNDS):  # alternating, so that a change in the machine's load hits both sides alike
        floor += in_process_latencies(signature, per_round)
        served += grpc_latencies(stub, requests[:per_round])
        batches += in_process_latencies(signature, max(per_round // BATCH, 1), BATCH)
        rates.append(throughput(stub, requests, BATCH))
    floor, served = percentile(floor, 50), percentile(served, 50)
    batch_rate, rate = BATCH / percentile(batches, 50), statistics.median(rates)
    print(f"\n## 4. Overhead over the in-process model\n\n{ROUNDS} alternating rounds of {per_round} single "
          f"calls each way, {len(batches) // ROUNDS} in-process batch(es) of {BATCH} and {args.requests} requests "
          f"at concurrency {BATCH}; nothing else calls the server\n")
    print("| measurement | value |\n|---|---|")
    print(f"| in-process call, 1 sentence, p50 | {floor * 1e3:.1f} ms |")
    print(f"| gRPC Predict, 1 sentence, batching on, p50 | {served * 1e3:.1f} ms |")
    print(f"| in-process call on a batch of {BATCH}, p50 | {BATCH / batch_rate * 1e3:.0f} ms "
          f"({batch_rate:.0f} sentences/s) |")
    print(f"| gRPC throughput, concurrency {BATCH}, batching on | {rate:.0f} sentences/s |\n")
    return all([check(served / floor - 1 < MAX_LATENCY_OVERHEAD, f"gRPC p50 overhead {served / floor - 1:+.1%} "
                      f"over the in-process p50 (target < {MAX_LATENCY_OVERHEAD:.0%})"),
                check(rate / batch_rate >= MIN_THROUGHPUT_RATIO, f"throughput at concurrency {BATCH} is "
                      f"{rate / batch_rate:.0%} of one in-process batch of {BATCH} "
                      f"(target >= {MIN_THROUGHPUT_RATIO:.0%})")])


PARTS = {"load": load_during_push, "memory": memory_over_swaps, "malformed": malformed_requests,
         "overhead": overhead}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", required=True, help="folder holding <model-name>/<version>/ (read only)")
    parser.add_argument("--model-name", default="enja")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--clients", type=int, default=200, help="part 1's concurrent clients, half of them REST")
    parser.add_argument("--duration", type=float, default=60, help="part 1's seconds of load")
    parser.add_argument("--swaps", type=int, nargs="+", default=[1, 2, 5, 20],
                        help="part 2's checkpoints; the last is held to the second's RSS")
    parser.add_argument("--swap-clients", type=int, default=32)
    parser.add_argument("--swap-seconds", type=float, default=5, help="calls to each new version once it serves")
    parser.add_argument("--malformed", type=int, default=2000, help="part 3's gRPC calls, and as many HTTP ones")
    parser.add_argument("--seed", type=int, default=0, help="for part 3's random calls")
    parser.add_argument("--requests", type=int, default=200, help="part 4's requests per measurement")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, metavar="N",
                        help="the server's, as `enja serve`'s flag (0: TensorFlow's choice)")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0, metavar="N",
                        help="the server's, as `enja serve`'s flag (0: TensorFlow's choice)")
    args = parser.parse_args()
    if "memory" in args.parts and len(set(args.swaps)) < 2:
        parser.error("--swaps needs at least two checkpoints")
    args.swaps = sorted(set(args.swaps))

    options = ServerOptions(port=0, rest_api_port=0, intra_op_threads=args.tensorflow_intra_op_parallelism,
                            inter_op_threads=args.tensorflow_inter_op_parallelism)
    with model_folder_copy(os.path.join(args.model_base_path, args.model_name)) as (base, folder), \
            ServerProcess(base, args.model_name, options) as server, contextlib.ExitStack() as stack:
        # A subchannel pool per channel, so that each is its own connection.
        channels = [stack.enter_context(grpc.insecure_channel(server.address, [("grpc.use_local_subchannel_pool", 1)]))
                    for _ in range(GRPC_CHANNELS)]
        print(f"server pid {server.pid} on {server.address} (REST {server.rest_api_address}), serving a copy of "
              f"version {folder.version}; {os.cpu_count()} CPUs; RSS {rss_mib(server.pid):.0f} MiB")
        passed = [run(server, folder, channels, args) for part, run in PARTS.items() if part in args.parts]
    print(f"\n{'all checks passed' if all(passed) else 'SOME CHECKS FAILED'}")
    return 0 if all(passed) else 1


if __name__ == "__main__":
    raise SystemExit(main())
