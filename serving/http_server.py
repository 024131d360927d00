"""The model server's HTTP port (`--rest_api_port`): a route table served by a small threaded server.

Routes match a method and a path pattern (the first match wins; named groups
become the request's captures). A path no route matches answers 404 with a
JSON body `{"error": "..."}`. The server guards itself the same way for every
route: a body over `max_body_bytes` is refused from its Content-Length before
it is read, a client that stops sending times out, and a failing handler
answers 500; none of them ends the server or leaves a thread behind.
"""
import dataclasses
import http.server
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)
ANY_METHOD = "*"
READ_TIMEOUT_S = 30.0  # for each read of a request, so a stalled client cannot hold a thread
DISCARD_S = 2.0  # how long a refused body is read and dropped, so the client gets to read the answer


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    captures: dict[str, str]  # the route pattern's named groups that matched
    body: bytes


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
    return Response(status, (json.dumps({"error": message}) + "\n").encode("utf-8"))


class _BodyRefused(Exception):
    """A request answered before any route: its body is too large, unreadable or incomplete.
    `unread` body bytes are still on the way."""

    def __init__(self, status: int, message: str, unread: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.unread = unread


class _RoutingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a scrape in progress must not hold up shutdown

    def __init__(self, address: tuple[str, int], routes: Sequence[Route], max_body_bytes: int,
                 read_timeout_s: float):
        self.routes = tuple(routes)
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        super().__init__(address, _RequestHandler)

    def handle_error(self, request, client_address) -> None:
        """Handlers answer their own failures, so what is left is a client that went away mid-request."""
        log.debug("connection from %s failed", client_address, exc_info=True)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server: _RoutingServer

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # the socket's, set by setup()
        super().setup()

    def _answer(self) -> None:
        try:
            body = self._read_body()
        except _BodyRefused as refused:
            self._send(error_response(refused.status, refused.message))
            if refused.unread:
                self._discard(refused.unread)
            return
        self._send(self._dispatch(self.path.split("?", 1)[0], body))

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise _BodyRefused(http.HTTPStatus.LENGTH_REQUIRED,
                               "chunked request bodies are not supported: send a Content-Length")
        declared = self.headers.get("Content-Length", "0")
        if not declared.isdigit():
            raise _BodyRefused(http.HTTPStatus.BAD_REQUEST, f"Content-Length {declared!r} is not a byte count")
        length = int(declared)
        if length > self.server.max_body_bytes:
            raise _BodyRefused(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request body of {length} bytes is over the limit of "
                               f"{self.server.max_body_bytes} bytes", unread=length)
        try:
            body = self.rfile.read(length)
        except TimeoutError as error:
            raise _BodyRefused(http.HTTPStatus.REQUEST_TIMEOUT,
                               f"request body incomplete after {self.timeout:g} s") from error
        if len(body) < length:
            raise _BodyRefused(http.HTTPStatus.BAD_REQUEST, f"request body ended after {len(body)} of {length} bytes")
        return body

    def _dispatch(self, path: str, body: bytes) -> Response:
        for route in self.server.routes:
            match = route.pattern.fullmatch(path)
            if match and route.method in (self.command, ANY_METHOD):
                captures = {name: value for name, value in match.groupdict().items() if value is not None}
                try:
                    return route.handler(Request(self.command, path, captures, body))
                except Exception as error:  # a failing handler answers 500; the server lives on
                    log.exception("%s %s failed", self.command, path)
                    return error_response(http.HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")
        return error_response(http.HTTPStatus.NOT_FOUND, f"Not found: {self.command} {path}")

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _discard(self, length: int) -> None:
        """Read and drop up to `length` body bytes for a while: closing with them unread would reset the
        connection, and the client would see the reset instead of the answer."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DISCARD_S
        while length > 0 and (left := deadline - time.monotonic()) > 0:
            self.connection.settimeout(left)
            try:
                chunk = self.rfile.read1(min(length, 1 << 16))
            except OSError:  # a timeout or a reset: either way the client is gone
                return
            if not chunk:
                return
            length -= len(chunk)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format, *args) -> None:  # pylint: disable=redefined-builtin
        log.debug(format, *args)  # a line per scrape, every few seconds, would flood stderr otherwise


class HttpServer:
    """Serves `routes` on host:port (0 picks a free port) from a daemon thread, a thread per request."""

    def __init__(self, host: str, port: int, routes: Sequence[Route], max_body_bytes: int,
                 read_timeout_s: float = READ_TIMEOUT_S):
        self._server = _RoutingServer((host, port), routes, max_body_bytes, read_timeout_s)
        self.port = self._server.server_address[1]
        # Polling for shutdown 10 times a second (not the default 2) so that stop() returns promptly.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
