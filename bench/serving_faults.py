"""The model server under hostile and unlucky conditions (issue #22), as markdown tables; exits 1
if a target is missed.

    .venv/bin/python bench/serving_faults.py --model-base-path SERVING_DIR
    .venv/bin/python bench/serving_faults.py --model-base-path SERVING_DIR --trickle 100 --phase-seconds 10 \\
        --burst 50 --sigterm-clients 20 --push-clients 6 --push-seconds 8   # a smoke run, about 2 min

SERVING_DIR is the folder holding <model-name>/<version>/: an `enja run` output's serving_model/
(pipeline_output/serving_model after `make run`). Each scenario starts its own server, as a user would:
`enja serve` (this venv's; serving_harness.EnjaServe) in a child process, with batching on
(--enable_batching=true, TF Serving's default parameters, as serving/deploy's recipes ask), on free
loopback ports, serving a temporary copy of the given model's newest version; the given folder is never
written. The bench talks to it over the network only (gRPC, HTTP, raw sockets) and reads its thread count
from /proc. The figures in the docs come from whichever model the run used, named in the first line the
bench prints.

1. Slow clients. --real-clients REST clients (a kept-alive connection each, one sentence a predict) call
   for --phase-seconds without anything else, then as long again while --trickle more connections to the
   REST port each send a request line and then one header byte every --trickle-interval seconds (from
   asyncio in this process, their bytes spread over the interval; one the server closes is opened again,
   so that as many trickle throughout). Target: the real clients' p99 with the trickle at most 1.5x the
   p99 without, and none of their requests failing; the server's threads bounded: the peak with the
   trickle fewer than one thread per ten trickling connections above the peak without. Printed too: the
   thread count at the end of each phase, and how many trickling connections the server closed (after
   how long, and how many it answered first).
2. Deadlines under overload. The p50 of --probes single-sentence beam-1 gRPC calls (translate_with_options,
   beam_width 1), then --burst gRPC Predicts at --beam-width (16) with a --deadline (1 s) deadline, all
   issued at once over a few shared channels. Counted: the calls answered OK in time, the others by
   status, and the server's enja_serving_requests_total for api=Predict by status (its Prometheus page
   before and after, less the probes'). Wasted share = (server-counted OK - client-received OK) /
   server-counted OK: decodes finished for callers that had already gone. Target: under 5 %. After the
   burst's last answer, groups of --probe-group beam-1 calls run back to back until a group's p50 is
   within 1.5x the p50 before. Target: within 5 s of the burst's end.
3. SIGTERM under load. --sigterm-clients gRPC clients (over a few shared channels) and as many REST
   clients (a connection each) call continuously; after --sigterm-after seconds the server gets SIGTERM.
   A request sent before the signal that ends in an error failed in flight; one sent after it that ends
   in an error was refused (a closed port, UNAVAILABLE); a client stops at its first error after the
   signal. Target: 0 failed in flight, each protocol. Printed too: the requests in flight at the signal,
   and the server's exit code and seconds from the signal to its exit.
4. Slow push. While --push-clients clients (half gRPC, half REST) call, the next version is copied file by
   file, straight into its numbered folder as TFX's Pusher does, over --push-seconds (the variables last,
   so no partial copy loads). The server runs with --load_retry_interval_micros from --load-retry-seconds
   (default a quarter of --push-seconds; TF Serving's 60 s would serve the version up to a minute after the
   copy ends) and TF Serving's 5 retries, which must span the copy. Target: the new version AVAILABLE
   (GetModelStatus) only once the copy is complete, and answering; 0 failed requests during it.
5. The earlier figures (200 clients across a push, memory over 20 swaps, malformed-request fuzz, overhead
   over the in-process model) are bench/serving_push_load.py's, serving_swap_memory.py's, serving_fuzz.py's
   and serving_overhead.py's: the bench prints the commands to run them.
"""
import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import traceback
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from enja.serving import contract
from enja.serving.predict_api import predict_request
from serving_harness import (
    GRPC_CHANNELS,
    SENTENCES,
    TIMEOUT_S,
    GrpcPredict,
    ModelFolder,
    Outcome,
    RestPredict,
    argument_parser,
    available_versions,
    call_for,
    call_until,
    calling,
    enja_serve_on_copy,
    failures,
    grpc_channels,
    load_clients,
    metric_samples,
    ms,
    percentile,
    print_errors,
    rest_versions,
    served_requests,
    server_threads,
    success_latencies,
)

MAX_P99_RATIO = 1.5
WARM_UP_S = 5.0  # of the real clients, before the phases
THREADS_PER_TRICKLE = 0.1  # the most server threads one trickling connection may add
CONNECT_AT_ONCE = 64  # trickling connections being opened at a time
CONNECT_TIMEOUT_S = 10.0
MAX_WASTED_SHARE = 0.05
MAX_RECOVERY_P50_RATIO = 1.5
MAX_RECOVERY_S = 5.0
RECOVERY_GIVE_UP_S = 60.0
QUIET_S = 2.0  # the server's request counts unchanged this long: nothing of the burst is left running
SIGTERM_GIVE_UP_S = 60.0  # after the signal, on top of the server's exit
LOAD_RETRIES = 5  # TF Serving's --max_num_load_retries, which the slow push keeps
SERVED_AFTER_PUSH_S = 10.0  # clients go on calling this long once the pushed version serves
REFUSED_GRPC = (grpc.StatusCode.UNAVAILABLE,)


# --- the report -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Row:
    measurement: str
    value: str
    target: str = ""
    met: bool | None = None  # None: a figure with no target


def print_rows(rows: list[Row]) -> None:
    print("| measurement | value | target | |\n|---|---|---|---|")
    for row in rows:
        verdict = "" if row.met is None else "met" if row.met else "**missed**"
        print(f"| {row.measurement} | {row.value} | {row.target} | {verdict} |")
    print()


def latency_summary(outcomes: list[Outcome], seconds: float) -> tuple[float, str]:
    """The p99 of the successful calls, and a line of their figures."""
    latencies = success_latencies(outcomes)
    p99 = percentile(latencies, 99)
    return p99, (f"p50 {ms(percentile(latencies, 50))}, p99 {ms(p99)}; {len(outcomes)} requests "
                 f"({len(outcomes) / seconds:.1f}/s), {len(failures(outcomes))} failed")


class ThreadPeak:
    """The most threads the server had while the block ran, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self._pid, self._stop = pid, threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError, StopIteration):
                self.peak = max(self.peak, server_threads(self._pid))
            if self._stop.wait(0.2):
                return

    def __enter__(self) -> "ThreadPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- 1. slow clients ------------------------------------------------------------------------------

class Trickle:
    """`count` connections to an HTTP port, each sending a request line at once and then one header byte
    every `interval_s`, from an asyncio loop on a thread of its own; one the server closes is opened again
    (no sooner than `interval_s` after it was opened), so that `count` trickle throughout. The block
    starts once every first connection has been tried; `closed_after` has the lifetime of each connection
    the server closed, `answered` counts those it sent bytes to first."""

    def __init__(self, address: str, count: int, interval_s: float, path: str):
        self._host, port = address.rsplit(":", 1)
        self._port, self._count, self._interval_s = int(port), count, interval_s
        self._head = f"POST {path} HTTP/1.1\r\nHost: {address}\r\n".encode("ascii")
        self.opened, self.open, self.answered = 0, 0, 0
        self.failed: collections.Counter = collections.Counter()  # could not connect, by error
        self.closed_after: list[float] = []
        self._tried = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="trickle", daemon=True)

    def __enter__(self) -> "Trickle":
        self._thread.start()
        while not self._tried.wait(1):
            if not self._thread.is_alive():
                raise RuntimeError("the trickle's event loop ended before it had connected")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        connecting = asyncio.Semaphore(CONNECT_AT_ONCE)
        first = await asyncio.gather(*(self._connect(connecting) for _ in range(self._count)))
        self._tried.set()
        tasks = [asyncio.create_task(self._keep_trickling(connection, connecting))
                 for connection in first if connection]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connect(self, connecting: asyncio.Semaphore):
        async with connecting:
            try:
                connection = await asyncio.wait_for(asyncio.open_connection(self._host, self._port),
                                                    CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as error:
                self.failed[type(error).__name__] += 1
                return None
        self.opened += 1
        return connection

    async def _keep_trickling(self, connection, connecting: asyncio.Semaphore) -> None:
        # The stop is checked as well as the cancellation: Python 3.10's wait_for (in _connect) can swallow
        # a cancellation that arrives as its connection completes, and the loop would trickle on for ever.
        while connection and not self._stop.is_set():
            opened = time.monotonic()
            await self._trickle(*connection)
            lived = time.monotonic() - opened
            self.closed_after.append(lived)
            # a server that closes at once is not hammered
            await asyncio.sleep(max(self._interval_s - lived, 0))
            connection = await self._connect(connecting)
        if connection:
            connection[1].close()

    async def _trickle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Returns once the server closed the connection."""
        self.open += 1
        ended = asyncio.create_task(self._until_closed(reader))
        try:
            writer.write(self._head)
            delay = random.uniform(0, self._interval_s)  # spread the connections' bytes over the interval
            for byte in itertools.cycle(b"X-Trickle: 1\r\n"):
                done, _ = await asyncio.wait({ended}, timeout=delay)
                if done:
                    return
                writer.write(bytes([byte]))
                await writer.drain()
                delay = self._interval_s
        except (OSError, ConnectionError):  # a write to a connection the server closed
            return
        finally:
            self.open -= 1
            ended.cancel()
            writer.close()

    async def _until_closed(self, reader: asyncio.StreamReader) -> None:
        answered = False
        with contextlib.suppress(OSError, ConnectionError):
            while await reader.read(1 << 16):
                if not answered:
                    answered = True
                    self.answered += 1


def slow_clients(args: argparse.Namespace) -> list[Row]:
    print(f"## 1. Slow clients\n\n{args.real_clients} REST clients for {args.phase_seconds:g} s "
          f"without, then with {args.trickle} connections trickling a header byte every "
          f"{args.trickle_interval:g} s\n")
    with enja_serve_on_copy(args) as (server, _):
        clients = [RestPredict(server.rest_api_address, args.model_name) for _ in range(args.real_clients)]
        try:
            call_for(clients, min(WARM_UP_S, args.phase_seconds))  # connect, reach a steady state
            with ThreadPeak(server.pid) as quiet_peak:
                quiet, quiet_s = call_for(clients, args.phase_seconds)
            quiet_threads = server_threads(server.pid)
            path = f"/v1/models/{args.model_name}:predict"
            with Trickle(server.rest_api_address, args.trickle, args.trickle_interval, path) as trickle, \
                    ThreadPeak(server.pid) as trickle_peak:
                opened_threads = server_threads(server.pid)
                trickled, trickled_s = call_for(clients, args.phase_seconds)
                trickle_threads, still_open = server_threads(server.pid), trickle.open
                closed_after = sorted(trickle.closed_after)
                answered, opened = trickle.answered, trickle.opened
        finally:
            for client in clients:
                client.close()
    quiet_p99, quiet_line = latency_summary(quiet, quiet_s)
    trickle_p99, trickle_line = latency_summary(trickled, trickled_s)
    ratio = trickle_p99 / quiet_p99
    growth = trickle_peak.peak - quiet_peak.peak
    limit = THREADS_PER_TRICKLE * args.trickle
    refused = ", ".join(f"{count} {error}" for error, count in trickle.failed.items()) or "none"
    closed_when = (f" after {closed_after[0]:.1f}-{closed_after[-1]:.1f} s (median "
                   f"{percentile(closed_after, 50):.1f} s), answering {answered} of them first"
                   if closed_after else "")
    print_errors(quiet + trickled)
    return [
        Row("real clients, no trickle", quiet_line),
        Row("real clients, with the trickle", trickle_line),
        Row("p99 with the trickle / without", f"{ratio:.2f}x ({ms(trickle_p99)} / {ms(quiet_p99)})",
            f"<= {MAX_P99_RATIO:g}x", ratio <= MAX_P99_RATIO),
        Row("real requests failed with the trickle", str(len(failures(trickled))), "0",
            not failures(trickled)),
        Row("server threads at the end of each phase", f"{quiet_threads} without, {trickle_threads} with "
            f"({opened_threads} once the trickle had connected)"),
        Row("server threads, peak with the trickle - peak without", f"{growth:+d} ({trickle_peak.peak} vs "
            f"{quiet_peak.peak})", f"< +{limit:g} (a tenth of a thread a connection)", growth < limit),
        Row("trickling connections",
            f"{opened} opened ({args.trickle} at first, then again as the server closed "
            f"them; could not connect: {refused}); the server closed {len(closed_after)} during the phase"
            f"{closed_when}; {still_open} open at its end"),
    ]


# --- 2. deadlines under overload ------------------------------------------------------------------

def beam_request(sentence: str, model_name: str, beam_width: int):
    """A translate_with_options Predict for one sentence."""
    request = predict_request([sentence], model_name)
    request.model_spec.signature_name = contract.OPTIONS_SIGNATURE
    request.inputs[contract.BEAM_WIDTH_INPUT].CopyFrom(tf.make_tensor_proto(beam_width, dtype=tf.int32))
    return request


def probe_latencies(stub, model_name: str, count: int) -> list[float]:
    """Seconds of `count` single-sentence beam-1 calls, back to back."""
    latencies = []
    for i in range(count):
        request = beam_request(SENTENCES[i % len(SENTENCES)], model_name, 1)
        start = time.perf_counter()
        stub.Predict(request, timeout=TIMEOUT_S)
        latencies.append(time.perf_counter() - start)
    return latencies


def predict_counts(rest_address: str) -> collections.Counter:
    """The server's gRPC Predict count by status."""
    counts = collections.Counter()
    for (api, _, status), count in served_requests(rest_address).items():
        if api == "Predict":
            counts[status] += count
    return counts


def burst(channels: list[grpc.Channel], model_name: str, count: int, beam_width: int,
          deadline_s: float) -> tuple[collections.Counter, float]:
    """`count` Predicts issued at once, each with a deadline: the count by status, and when
    (time.monotonic()) the last was answered."""
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(channel) for channel in channels]
    requests = [beam_request(SENTENCES[i % len(SENTENCES)], model_name, beam_width) for i in range(count)]
    answered, lock = [], threading.Lock()

    def done(_) -> None:
        with lock:
            answered.append(time.monotonic())

    calls = []
    for i, request in enumerate(requests):
        calls.append(stubs[i % len(stubs)].Predict.future(request, timeout=deadline_s))
        calls[-1].add_done_callback(done)
    statuses = collections.Counter(call.code().name for call in calls)  # code() waits for the call to end
    while len(answered) < count:  # the last callbacks may run just after code() returns
        time.sleep(0.01)
    return statuses, max(answered)


def until_quiet(rest_address: str, give_up_s: float = 120.0) -> collections.Counter:
    """The Predict counts once they have not changed for QUIET_S."""
    counts, since, start = predict_counts(rest_address), time.monotonic(), time.monotonic()
    while time.monotonic() - since < QUIET_S and time.monotonic() - start < give_up_s:
        time.sleep(0.5)
        now = predict_counts(rest_address)
        if now != counts:
            counts, since = now, time.monotonic()
    return counts


def deadlines(args: argparse.Namespace) -> list[Row]:
    print(f"## 2. Deadlines under overload\n\n{args.burst} gRPC Predicts at beam {args.beam_width}, "
          f"{args.deadline:g} s deadline each, issued at once over {GRPC_CHANNELS} channels\n")
    with enja_serve_on_copy(args) as (server, _), grpc_channels(server.address) as channels:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channels[0])
        probe_latencies(stub, args.model_name, 5)  # warm up the signature
        before_p50 = percentile(probe_latencies(stub, args.model_name, args.probes), 50)
        counted_before = predict_counts(server.rest_api_address)
        start = time.monotonic()
        statuses, ended = burst(channels, args.model_name, args.burst, args.beam_width, args.deadline)
        probes, groups = 0, []  # (seconds after the burst's end, the group's p50)
        while not groups or (groups[-1][1] > MAX_RECOVERY_P50_RATIO * before_p50
                             and groups[-1][0] < RECOVERY_GIVE_UP_S):
            group = probe_latencies(stub, args.model_name, args.probe_group)
            probes += len(group)
            groups.append((time.monotonic() - ended, percentile(group, 50)))
        counted = until_quiet(server.rest_api_address)
        counted.subtract(counted_before)
        counted["OK"] -= probes  # the recovery probes, all answered OK (they raise otherwise)
        threads = server_threads(server.pid)
    counted = +counted  # drop zeros
    client_ok, server_ok = statuses["OK"], counted["OK"]
    wasted = (server_ok - client_ok) / server_ok if server_ok else 0.0
    recovered = groups[-1][0] if groups[-1][1] <= MAX_RECOVERY_P50_RATIO * before_p50 else float("inf")
    shown = ", ".join(f"{seconds:.1f} s: {ms(p50)}" for seconds, p50 in groups[:8])
    return [
        Row("beam-1 p50 before the burst", f"{ms(before_p50)} ({args.probes} calls)"),
        Row("burst: client calls by status", ", ".join(f"{status} {n}" for status,
                                                       n in statuses.most_common()) +
            f"; the last answered {ended - start:.2f} s after the first was sent"),
        Row("burst: the server's Predict count by status", ", ".join(f"{status} {n:.0f}" for status, n in
                                                                      counted.most_common()) or "none"),
        Row("wasted share: (server OK - client OK) / server OK",
            f"{wasted:.1%} ({server_ok:.0f} - {client_ok}) / "
            f"{server_ok:.0f}", f"< {MAX_WASTED_SHARE:.0%}", wasted < MAX_WASTED_SHARE),
        Row("beam-1 p50 after the burst's end (groups of "
            f"{args.probe_group})", shown + (" ..." if len(groups) > 8 else "")),
        Row(f"back within {MAX_RECOVERY_P50_RATIO:g}x of the p50 before",
            f"{recovered:.1f} s after the burst's end",
            f"<= {MAX_RECOVERY_S:g} s", recovered <= MAX_RECOVERY_S),
        Row("server threads after", str(threads)),
    ]


# --- 3. SIGTERM under load ------------------------------------------------------------------------

def error_kinds(outcomes: list[Outcome]) -> str:
    kinds = collections.Counter(outcome.error.split(":", 1)[0] for outcome in outcomes)
    return ", ".join(f"{count} {kind}" for kind, count in kinds.most_common(3))


def sent_before(outcomes: list[Outcome], signalled_at: float) -> str:
    """How long before `signalled_at` the calls were sent, as a range."""
    sent = sorted(signalled_at - (outcome.finished - outcome.seconds) for outcome in outcomes)
    return f"{ms(sent[0])}-{ms(sent[-1])}"


def sigterm(args: argparse.Namespace) -> list[Row]:
    print(f"## 3. SIGTERM under load\n\n{args.sigterm_clients} gRPC and {args.sigterm_clients} REST "
          f"clients calling; SIGTERM after {args.sigterm_after:g} s\n")
    stop, signalled = threading.Event(), threading.Event()
    with enja_serve_on_copy(args) as (server, _), grpc_channels(server.address) as channels, \
            load_clients(server, channels, args.model_name, 2 * args.sigterm_clients) as clients, \
            futures.ThreadPoolExecutor(len(clients)) as pool:
        calls = [pool.submit(call_until, client, i, stop, signalled) for i, client in enumerate(clients)]
        time.sleep(args.sigterm_after)
        signalled_at = time.monotonic()
        server.terminate()
        signalled.set()
        try:
            code = server.wait(SIGTERM_GIVE_UP_S)
        except subprocess.TimeoutExpired:
            code = None
        exited = time.monotonic() - signalled_at
        # Every client stops at its first error once the ports are closed; a bound in case one never errs.
        futures.wait(calls, timeout=SIGTERM_GIVE_UP_S)
        stop.set()
        outcomes = [outcome for call in calls for outcome in call.result()]
        log = server.log_tail(5)
    rows = []
    for protocol in (GrpcPredict.protocol, RestPredict.protocol):
        mine = [outcome for outcome in outcomes if outcome.protocol == protocol]
        before = [outcome for outcome in mine if outcome.finished - outcome.seconds < signalled_at]
        after = [outcome for outcome in mine if outcome.finished - outcome.seconds >= signalled_at]
        in_flight = [outcome for outcome in before if outcome.finished >= signalled_at]
        failed, refused = failures(before), failures(after)
        rows += [
            Row(f"{protocol}: sent before the signal", f"{len(before) - len(failed)} completed OK, of them "
                f"{len(in_flight) - len(failures(in_flight))} in flight at the signal"),
            Row(f"{protocol}: failed in flight",
                f"{len(failed)}" + (f" ({error_kinds(failed)}; sent "
                                    f"{sent_before(failed, signalled_at)} before the signal)"
                                    if failed else ""), "0", not failed),
            Row(f"{protocol}: sent after the signal",
                f"{len(after) - len(refused)} OK, {len(refused)} refused" +
                (f" ({error_kinds(refused)})" if refused else "")),
        ]
    print_errors([outcome for outcome in outcomes if outcome.error and
                  outcome.finished - outcome.seconds < signalled_at])
    if code is None:
        print(f"the server had not exited {SIGTERM_GIVE_UP_S:g} s after SIGTERM; its log ends:\n\n{log}")
    exit_ = (f"code {code}, {exited:.1f} s after SIGTERM" if code is not None
             else f"still running after {SIGTERM_GIVE_UP_S:g} s")
    return [*rows, Row("server exit", exit_)]


# --- 4. slow push ---------------------------------------------------------------------------------

def slow_push(folder: ModelFolder, seconds: float) -> tuple[int, float]:
    """Copy the newest version to the next number file by file, straight into the numbered folder, spread over
    `seconds` (sorted, so the variables come last); the new version, and when (time.monotonic()) it was
    whole."""
    source, new = os.path.join(folder.path, str(folder.version)), folder.version + 1
    target = os.path.join(folder.path, str(new))
    files = sorted(os.path.relpath(os.path.join(root, name), source)
                   for root, _, names in os.walk(source) for name in names)
    for i, name in enumerate(files):
        if i:
            time.sleep(seconds / (len(files) - 1))
        os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
        shutil.copyfile(os.path.join(source, name), os.path.join(target, name))
    folder.version = new
    return new, time.monotonic()


def load_failures(rest_address: str) -> float:
    return sum(sample.value for sample in metric_samples(rest_address)
               if sample.name == "enja_serving_version_load_failures_total")


def push_slowly(args: argparse.Namespace) -> list[Row]:
    retry_s = args.load_retry_seconds or args.push_seconds / 4
    print(f"## 4. Slow push\n\n{args.push_clients} clients calling while a version is copied over "
          f"{args.push_seconds:g} s; the server runs with --load_retry_interval_micros {retry_s * 1e6:.0f} "
          f"(TF Serving's 60 s default would serve the version up to a minute after the copy ends) and "
          f"--max_num_load_retries {LOAD_RETRIES}\n")
    with enja_serve_on_copy(args, f"--load_retry_interval_micros={retry_s * 1e6:.0f}",
                            f"--max_num_load_retries={LOAD_RETRIES}") as (server, folder), \
            grpc_channels(server.address) as channels, \
            load_clients(server, channels, args.model_name, args.push_clients) as clients, \
            futures.ThreadPoolExecutor(1) as background:
        status = model_service_pb2_grpc.ModelServiceStub(channels[0])
        old, before = folder.version, served_requests(server.rest_api_address)
        with calling(clients) as outcomes:
            start = time.monotonic()
            pushing = background.submit(slow_push, folder, args.push_seconds)
            # when the new version was first seen available; whether before it was whole
            served_at, early = None, False
            give_up = start + args.push_seconds + (LOAD_RETRIES + 1) * retry_s + 60
            while time.monotonic() < give_up:
                available = available_versions(status, args.model_name)
                if old + 1 in available:
                    served_at, early = time.monotonic(), not pushing.done()
                    break
                time.sleep(0.2)
            new, whole = pushing.result()
            if served_at is not None:
                time.sleep(SERVED_AFTER_PUSH_S)
        versions = {GrpcPredict.protocol: {o.version for o in outcomes if o.protocol == GrpcPredict.protocol
                                           and o.error is None},
                    RestPredict.protocol: rest_versions(before, served_requests(server.rest_api_address))}
        failed_loads = load_failures(server.rest_api_address)
        final = available_versions(status, args.model_name)
    seconds = time.monotonic() - start
    print_errors(outcomes)
    answered = all(new in shown for shown in versions.values())
    served = served_at is not None and not early
    when = ("never" if served_at is None else
            f"{served_at - whole:+.1f} s after the copy was whole ({served_at - start:.1f} s after it began)")
    return [
        Row("push",
            f"version {new} copied over {whole - start:.1f} s; {failed_loads:.0f} failed load attempts"),
        Row(f"version {new} available (GetModelStatus)", when, "once the copy is whole, not before", served),
        Row(f"version {new} answered", "; ".join(f"{protocol}: versions {', '.join(map(str, sorted(found)))}"
                                                 for protocol, found in versions.items()) +
            f"; served now: {final}", "both protocols", answered),
        Row("requests during the push",
            f"{len(outcomes)} in {seconds:.0f} s, {len(failures(outcomes))} failed",
            "0 failed", not failures(outcomes)),
    ]


SCENARIOS = {"slow-clients": slow_clients, "deadlines": deadlines, "sigterm": sigterm,
             "slow-push": push_slowly}


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--trickle", type=int, default=1000, help="1: trickling connections")
    parser.add_argument("--trickle-interval", type=float, default=10,
                        help="1: seconds between a connection's bytes")
    parser.add_argument("--real-clients", type=int, default=32, help="1: REST clients sending real requests")
    parser.add_argument("--phase-seconds", type=float, default=60, help="1: seconds of each phase")
    parser.add_argument("--burst", type=int, default=500, help="2: gRPC calls issued at once")
    parser.add_argument("--beam-width", type=int, default=16, help="2: the burst's beam width")
    parser.add_argument("--deadline", type=float, default=1.0, help="2: each burst call's deadline, seconds")
    parser.add_argument("--probes", type=int, default=20, help="2: beam-1 calls for the p50 before the burst")
    parser.add_argument("--probe-group", type=int, default=5, help="2: beam-1 calls in each p50 after it")
    parser.add_argument("--sigterm-clients", type=int, default=100, help="3: clients of each protocol")
    parser.add_argument("--sigterm-after", type=float, default=5, help="3: seconds of load before SIGTERM")
    parser.add_argument("--push-clients", type=int, default=20, help="4: clients calling, half of them REST")
    parser.add_argument("--push-seconds", type=float, default=20, help="4: seconds the copy takes")
    parser.add_argument("--load-retry-seconds", type=float, default=None,
                        help="4: the server's --load_retry_interval_micros, in seconds (default: a quarter "
                             "of --push-seconds, so that its 5 retries span the copy)")
    args = parser.parse_args()

    model_dir = os.path.join(args.model_base_path, args.model_name)
    print(f"model {os.path.realpath(model_dir)}, versions {sorted(os.listdir(model_dir))} (a copy of "
          f"the newest is served); {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}\n\n"
          f"    {' '.join(['.venv/bin/python', 'bench/serving_faults.py', *sys.argv[1:]])}\n")
    verdicts = []
    for name in args.scenarios:
        try:
            rows = SCENARIOS[name](args)
        except Exception:  # a scenario that could not run is a missed target; the others still run
            traceback.print_exc()
            rows = [Row(name, "did not run (see the error above)", "runs", False)]
        print_rows(rows)
        verdicts += [(name, row) for row in rows if row.met is not None]
    print("## 5. The earlier figures\n\n200 clients across a push, memory over 20 swaps, the "
          "malformed-request fuzz and the overhead:\n")
    for bench in ("serving_push_load", "serving_swap_memory", "serving_fuzz", "serving_overhead"):
        print(f"    .venv/bin/python bench/{bench}.py --model-base-path {args.model_base_path}")
    print()
    missed = [f"{name}: {row.measurement} ({row.value})" for name, row in verdicts if not row.met]
    print("all targets met" if not missed
          else "TARGETS MISSED:\n" + "\n".join(f"- {line}" for line in missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
