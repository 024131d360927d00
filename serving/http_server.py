"""The model server's HTTP port (`--rest_api_port`): a route table served by aiohttp's server.

aiohttp parses HTTP (keep-alive, chunked bodies, pipelining) on one event loop,
so a client that sends slowly costs a socket, not a thread; the routes' handlers
are blocking calls into the model and run on a pool of `handler_threads`
(TF Serving's --rest_api_num_threads). Routes match a method and a path pattern
(the first match wins; named groups become the request's captures); a path no
route matches answers 404, a method TF Serving does not take 501.

Every answer that is not a 200 is TF Serving's JSON `{"error": "..."}`, its
message shortened, the parser's own refusals too (400 for a malformed request,
505 for an HTTP version other than 1.x). The server guards itself the same way
for every route:
- each request has `read_timeout_s` for its headers (counted from the moment
  its connection is idle) and as long again for its body: a client that
  trickles or stops sending is answered 408 or dropped, as an idle keep-alive
  connection is;
- a body over `max_body_bytes` is refused (413) from its Content-Length before
  it is read, or as soon as a chunked body passes the limit;
- at most `max_connections` connections are open; one more is answered 503 and
  closed before its request is read;
- a failing handler answers 500.
An answer that leaves request bytes unread closes the connection (`Connection:
close`): the rest is read and dropped for a moment first, so the client reads
the answer rather than a reset.

`stop(grace_s)` stops accepting, closes idle connections, lets requests in
flight finish for up to the grace period, then closes the rest.
"""
import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent import futures
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from enja.serving.errors import shortened

log = logging.getLogger(__name__)
ANY_METHOD = "*"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})  # TF Serving's
READ_TIMEOUT_S = 30.0  # for a request's headers, and again for its body
# How long a refused request's rest is read and dropped, so the client gets to read the answer.
DISCARD_S = 2.0
MAX_LINE_BYTES = 64 * 1024  # of the request line or a header line (a 10 kB model name fits)
MAX_HEADERS = 100
MAX_CONNECTIONS = 4096
# Connections waiting for the event loop to accept them: a burst of hundreds of clients connecting at
# once is held (the kernel caps it at net.core.somaxconn, 4096 by default) instead of reset.
LISTEN_QUEUE = 1024


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str  # as sent (percent-encoded), without the query string
    captures: dict[str, str]  # the route pattern's named groups that matched
    body: bytes
    received_at: float  # time.monotonic() when its headers had arrived, for deadlines that count the wait


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[Request], Response]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str  # an HTTP method, or ANY_METHOD
    pattern: re.Pattern  # matched against the whole path
    handler: Handler


def error_response(status: int, message: str) -> Response:
    return Response(status, (json.dumps({"error": shortened(message)}) + "\n").encode("utf-8"))


def _web_response(response: Response, close: bool = False) -> web.Response:
    headers = {"Content-Type": response.content_type}
    if close:
        headers["Connection"] = "close"  # aiohttp leaves it out where HTTP/1.0 implies it; clients read it
    answer = web.Response(status=response.status, body=response.body, headers=headers)
    if close:
        answer.force_close()
    return answer


def _refusal(status: int, message: str) -> web.Response:
    """An error answered before any route ran: the rest of the request may be unread, so the
    connection closes."""
    return _web_response(error_response(status, message), close=True)


def _parser_message(message: str | None, status: int) -> str:
    """The first line of the parser's message (the rest repeats the client's bytes with a caret
    under the fault)."""
    first = (message or "").strip().split("\n", 1)[0].rstrip(":")
    return first or HTTPStatus(status).phrase


class _Connection(RequestHandler):
    """aiohttp's connection, capped in number and answering its parser's refusals in JSON."""

    _manager: "_Server"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._manager.connections) >= self._manager.max_connections:
            transport.write(self._manager.over_capacity)  # written out before the close takes effect
            transport.close()
            return  # never registered nor started: its loss is all that follows
        super().connection_made(transport)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The parser's refusals (and aiohttp's own failures), in JSON like every other error
        rather than aiohttp's plain text; garbage from the network is no server error, so it is
        logged for debugging only."""
        log.debug("HTTP request from %s refused (%d): %s", request.remote, status, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer has already been sent")  # as aiohttp does: nothing more can be
        text = _parser_message(message,
                               status) if status != HTTPStatus.INTERNAL_SERVER_ERROR else "Internal error"
        return _refusal(status, text)


class _Server(web.Server):
    """aiohttp's low-level server, making our connections."""

    def __init__(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
                 max_connections: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        rendered = error_response(HTTPStatus.SERVICE_UNAVAILABLE,
                                  f"the server has {max_connections} connections open, its limit; "
                                  "retry later")
        self.over_capacity = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                              % (len(rendered.body), rendered.body))

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class _BodyRefusedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_body(request: web.BaseRequest, max_bytes: int) -> bytes:
    """The whole body, refused once it is known to be over `max_bytes`; chunked bodies too."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _BodyRefusedError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"request body of {declared} bytes is over the limit of {max_bytes} bytes")
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > max_bytes:
            raise _BodyRefusedError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request body is over the limit of {max_bytes} bytes")
    return bytes(body)


class HttpServer:
    """Serves `routes` on host:port (0 picks a free port): an event loop on a thread of its own for the
    connections, and a pool of `handler_threads` for the handlers."""

    def __init__(self, host: str, port: int, routes: Sequence[Route], max_body_bytes: int,
                 read_timeout_s: float = READ_TIMEOUT_S, handler_threads: int = 0,
                 max_connections: int = MAX_CONNECTIONS, grace_s: float = 10.0) -> None:
        """Binds the port at once (OSError if it cannot be had), so that clients connecting before
        `start()` wait in the listen queue. `handler_threads` 0: four a core, TF Serving's default."""
        self._routes = tuple(routes)
        self._max_body_bytes = max_body_bytes
        self._read_timeout_s = read_timeout_s
        self._max_connections = max_connections
        self._grace_s = grace_s
        self._socket = socket.create_server((host, port), backlog=LISTEN_QUEUE)
        self.port = self._socket.getsockname()[1]
        self._handlers = futures.ThreadPoolExecutor(handler_threads or 4 * (os.cpu_count() or 1),
                                                    thread_name_prefix="http-handler")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http", daemon=True)
        self._runner: web.ServerRunner | None = None
        self._reading: set[asyncio.Task] = set()  # handlers still reading their request's body

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    async def _start(self) -> None:
        server = _Server(self._answer, self._max_connections, keepalive_timeout=self._read_timeout_s,
                         lingering_time=DISCARD_S, max_line_size=MAX_LINE_BYTES,
                         max_field_size=MAX_LINE_BYTES,
                         max_headers=MAX_HEADERS, access_log=None)
        # aiohttp takes 0 as no limit
        self._runner = web.ServerRunner(server, shutdown_timeout=max(self._grace_s, 0.001))
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket, backlog=LISTEN_QUEUE).start()

    def stop(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish (up to the grace period),
        then close everything."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._stop(self._runner), self._loop).result()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()
        self._socket.close()
        self._handlers.shutdown(wait=False, cancel_futures=True)

    async def _stop(self, runner: web.ServerRunner) -> None:
        for task in self._reading:  # a request whose body has not come is not worth the grace period
            task.cancel()
        await runner.cleanup()
        # What cleanup leaves: connections closed meanwhile whose tasks have not yet seen it.
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    @property
    def open_connections(self) -> int:
        server = self._runner and self._runner.server
        return len(server.connections) if server else 0

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        received_at = time.monotonic()
        if request.version.major != 1:
            version = f"{request.version.major}.{request.version.minor}"
            return _refusal(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"HTTP version {version} is not supported")
        if request.method not in METHODS:
            return _refusal(HTTPStatus.NOT_IMPLEMENTED, f"method {request.method} is not supported")
        self._reading.add(asyncio.current_task())
        try:
            body = await asyncio.wait_for(_read_body(request, self._max_body_bytes), self._read_timeout_s)
        except _BodyRefusedError as refused:
            return _refusal(refused.status, refused.message)
        except asyncio.TimeoutError:
            return _refusal(HTTPStatus.REQUEST_TIMEOUT,
                            f"request body incomplete after {self._read_timeout_s:g} s")
        finally:
            self._reading.discard(asyncio.current_task())
        path = request.rel_url.raw_path
        response = await asyncio.get_running_loop().run_in_executor(
            self._handlers, self._dispatch, request.method, path, body, received_at)
        return _web_response(response)

    def _dispatch(self, method: str, path: str, body: bytes, received_at: float) -> Response:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method in (method, ANY_METHOD):
                captures = {name: value for name, value in match.groupdict().items() if value is not None}
                try:
                    return route.handler(Request(method, path, captures, body, received_at))
                except Exception as error:  # a failing handler answers 500; the server lives on
                    log.exception("%s %s failed", method, path)
                    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR,
                                          f"{type(error).__name__}: {error}")
        return error_response(HTTPStatus.NOT_FOUND, f"Not found: {method} {path}")
