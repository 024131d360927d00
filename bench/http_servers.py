"""Which HTTP server library the REST front end should stand on: measured, not guessed (issue #22).

    .venv/bin/python bench/http_servers.py [--servers shipped tornado aiohttp] [--requests 2000]
        [--slow-clients 300] [--slow-seconds 30]

Each candidate serves one JSON route (POST /v1/echo: the body read whole and answered) in a
process of its own, with a 10 s budget for a request's headers where the library has one:
  shipped  serving/http_server.py as the server ships it: aiohttp, our route table, handlers on a
           thread pool, 10 s for a request's headers (the measurements that chose aiohttp compared
           the http.server front end it replaced; docs/serving.md keeps them);
  tornado  tornado.httpserver on one event loop (idle_connection_timeout bounds the headers);
  aiohttp  aiohttp.web on one event loop (no header deadline of its own).
For each it prints: keep-alive latency of one client (p50, p99), requests a second from 32
clients, then the same 8 real clients' p99 while --slow-clients connections send a header byte
every 2 s (a slowloris), with the server's threads and resident memory at the end of the
trickle and how many trickling connections the server had closed by then.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures

BODY = json.dumps({"instances": ["i like cats ."] * 4}).encode()
HEADER_BUDGET_S = 10


def _serve_shipped(port: int) -> None:
    import re

    from enja.serving.http_server import HttpServer, Response, Route

    routes = [Route("POST", re.compile("/v1/echo"), lambda request: Response(200, request.body))]
    server = HttpServer("127.0.0.1", port, routes, max_body_bytes=4 << 20, read_timeout_s=HEADER_BUDGET_S)
    server.start()
    threading.Event().wait()


def _serve_tornado(port: int) -> None:
    import tornado.httpserver
    import tornado.web

    class Echo(tornado.web.RequestHandler):
        def post(self):
            self.set_header("Content-Type", "application/json")
            self.write(self.request.body)

    async def main():
        server = tornado.httpserver.HTTPServer(
            tornado.web.Application([("/v1/echo", Echo)]), idle_connection_timeout=HEADER_BUDGET_S,
            body_timeout=HEADER_BUDGET_S, max_body_size=4 << 20)
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def echo(request):
        return web.Response(body=await request.read(), content_type="application/json")

    app = web.Application(client_max_size=4 << 20)
    app.router.add_post("/v1/echo", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, keepalive_timeout=HEADER_BUDGET_S)


SERVERS = {"shipped": _serve_shipped, "tornado": _serve_tornado, "aiohttp": _serve_aiohttp}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _proc(pid: int) -> tuple[int, float]:
    """Threads and resident MiB of a process."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


def _latencies(port: int, count: int) -> list[float]:
    """Seconds per request of one keep-alive client."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("POST", "/v1/echo", BODY, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and response.read() == BODY
        times.append(time.perf_counter() - start)
    connection.close()
    return times


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def _trickle(port: int, stop: threading.Event, closed: list[int]) -> None:
    """One slowloris connection: a header byte every 2 s until stopped or closed by the server."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v1/echo HTTP/1.1\r\nHost: x\r\n")
            while not stop.wait(2):
                sock.sendall(b"X")
    except OSError:
        closed.append(1)


def measure(name: str, requests: int, slow_clients: int, slow_seconds: float) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port)])
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        _latencies(port, 50)  # warm up
        one = _latencies(port, requests)
        start = time.perf_counter()
        with futures.ThreadPoolExecutor(32) as pool:
            done = sum(len(part) for part in pool.map(lambda _: _latencies(port, requests // 32), range(32)))
        throughput = done / (time.perf_counter() - start)

        stop, closed = threading.Event(), []
        trickles = [threading.Thread(target=_trickle, args=(port, stop, closed), daemon=True)
                    for _ in range(slow_clients)]
        for thread in trickles:
            thread.start()
        time.sleep(2)
        real: list[float] = []
        deadline = time.monotonic() + slow_seconds
        with futures.ThreadPoolExecutor(8) as pool:
            while time.monotonic() < deadline:
                for part in pool.map(lambda _: _latencies(port, 20), range(8)):
                    real.extend(part)
        threads, rss = _proc(server.pid)
        stop.set()
        print(f"{name:8} one client p50 {_p(one, 50):5.2f} ms p99 {_p(one, 99):5.2f} ms | "
              f"32 clients {throughput:6.0f}/s | with {slow_clients} trickling: real p99 "
              f"{_p(real, 99):6.2f} ms, server threads {threads}, RSS {rss:.0f} MiB, "
              f"trickles closed by the server {len(closed)}/{slow_clients}", flush=True)
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--slow-clients", type=int, default=300)
    parser.add_argument("--slow-seconds", type=float, default=30)
    parser.add_argument("--serve", choices=list(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        SERVERS[args.serve](args.port)
        return
    for name in args.servers:
        measure(name, args.requests, args.slow_clients, args.slow_seconds)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
