"""Malformed requests: whether random bad gRPC calls and HTTP requests crash or wedge the server; exits 1 if a
check fails.

    .venv/bin/python bench/serving_fuzz.py --model-base-path SERVING_DIR
    .venv/bin/python bench/serving_fuzz.py --model-base-path SERVING_DIR --calls 50   # a smoke run

SERVING_DIR is the folder holding <model-name>/<version>/: an `enja run` output's serving_model/
(pipeline_output/serving_model after `make run`); it is never written. One server
(serving_harness.ServerProcess: its own process, batching and the REST API on) serves a temporary
copy of its newest version. --calls random gRPC calls and as many random HTTP requests
(bench/malformed_requests.py makes them, from --seed), a few at a time. Checks: every gRPC call
ended in a status other than UNKNOWN, UNAVAILABLE or DEADLINE_EXCEEDED; every HTTP request got a
response, with a JSON {"error": ...} body unless it is a 200 or answers HEAD; the server is still
running at the end and answers a good request over each protocol. Prints each protocol's answers
by count, with the kinds of call that got each most.
"""
import argparse
import collections
import os
import random
import time
from collections.abc import Callable
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc

from malformed_requests import (
    BAD_GRPC_CODES,
    Answer,
    grpc_answer,
    http_answer,
    random_grpc_call,
    random_http_call,
)
from serving_harness import (
    ModelFolder,
    ServerProcess,
    argument_parser,
    call_once,
    check,
    check_on_copy,
    load_clients,
    rss_mib,
)

FUZZ_THREADS = 8
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
        kinds = "; ".join(kind for kind, _ in counts.most_common(3))
        print(f"| {answer} | {sum(counts.values())} | {kinds} |")
    print()


def problems(results: list[tuple[int, str, Answer]]) -> list[str]:
    """The answers that break the contract, a line for each kind of answer with its count and first case."""
    cases = collections.defaultdict(list)
    for index, kind, answer in results:
        if answer.problem:
            cases[answer.answer, answer.problem].append(f"case {index}, {kind}: {answer.detail[:200]}")
    return [f"{len(found)} x {answer}, {problem}; first: {found[0]}"
            for (answer, problem), found in cases.items()]


def good_requests(server: ServerProcess, channels: list[grpc.Channel],
                  model_name: str) -> dict[str, str | None]:
    """One good predict by each protocol: the error of each, None if it succeeded."""
    with load_clients(server, channels, model_name, 2) as clients:
        outcomes = [call_once(client) for client in clients]
    return {outcome.protocol: outcome.error for outcome in outcomes}


def malformed_requests(server: ServerProcess, _: ModelFolder, channels: list[grpc.Channel],
                       args: argparse.Namespace) -> bool:
    def grpc_case(index: int) -> tuple[str, Callable[[], Answer]]:
        kind, method, request = random_grpc_call(random.Random(f"{args.seed}-grpc-{index}"), args.model_name)
        return kind, lambda: grpc_answer(channels[index % len(channels)], method, request)

    def http_case(index: int) -> tuple[str, Callable[[], Answer]]:
        call = random_http_call(random.Random(f"{args.seed}-http-{index}"), args.model_name)
        return call.kind, lambda: http_answer(server.rest_api_address, call)

    start = time.monotonic()
    grpc_results, http_results = fuzz(grpc_case, args.calls), fuzz(http_case, args.calls)
    seconds = time.monotonic() - start
    alive = server.alive()
    good = good_requests(server, channels, args.model_name) if alive else {}
    print(f"\n## Malformed requests\n\n{args.calls} gRPC and {args.calls} HTTP calls (seed {args.seed}) in "
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
                check(not http_problems,
                      "every HTTP call got a response, with a JSON error unless 200 or HEAD"),
                check(alive and good and not any(good.values()),
                      f"the server is still up and answers gRPC and REST predict ({good or 'it died'})")])


def main() -> int:
    parser = argument_parser(__doc__, thread_flags=True)
    parser.add_argument("--calls", type=int, default=2000,
                        help="malformed gRPC calls, and as many HTTP requests")
    parser.add_argument("--seed", type=int, default=0, help="for the random calls")
    return check_on_copy(parser.parse_args(), malformed_requests)


if __name__ == "__main__":
    raise SystemExit(main())
