"""The model server's HTTP port (`--rest_api_port`): a route table served by a small threaded server.

Routes match a method and a path pattern (the first match wins; named groups
become the request's captures); the methods are TF Serving's (GET, HEAD, POST,
PUT, DELETE, PATCH, OPTIONS). A path no route matches answers 404. Every
answer that is not a 200 is TF Serving's JSON `{"error": "..."}`, its message
shortened, http.server's own refusals too: 501 for another method, 414 for a
request line over 64 KiB, 431 for a header line over 64 KiB or over 100
headers, 400 or 505 for a garbled request.

It speaks HTTP/1.1 with keep-alive, as TF Serving does, so a client sends its
requests over one connection instead of opening one for each. Every answer
carries a Content-Length; an answer that leaves request bytes unread closes
the connection (`Connection: close`), as they cannot be read as the next
request. The server guards itself the same way for every route: a body over
`max_body_bytes` is refused from its Content-Length before it is read, a
client that stops sending (or an idle keep-alive connection) times out, and a
failing handler answers 500; none of them ends the server or leaves a thread
behind.
"""
import contextlib
import dataclasses
import http.server
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus

from enja.serving.errors import shortened

log = logging.getLogger(__name__)
ANY_METHOD = "*"
READ_TIMEOUT_S = 30.0  # for each read of a request, so a stalled client or an idle connection cannot hold a thread
DISCARD_S = 2.0  # how long a refused request's rest is read and dropped, so the client gets to read the answer
# Connections waiting for the accepting thread. http.server's 5 overflowed with 200 clients connecting at once,
# and the kernel answered the overflow with resets; 1024 holds a burst of hundreds (the kernel caps it at
# net.core.somaxconn, 4096 by default).
LISTEN_QUEUE = 1024


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
    return Response(status, (json.dumps({"error": shortened(message)}) + "\n").encode("utf-8"))


class _BodyRefused(Exception):
    """A request answered before any route: its body is too large, unreadable or incomplete.
    Up to `unread` bytes of it are still on the way."""

    def __init__(self, status: int, message: str, unread: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.unread = unread


class _RoutingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a scrape in progress must not hold up shutdown
    request_queue_size = LISTEN_QUEUE

    def __init__(self, address: tuple[str, int], routes: Sequence[Route], max_body_bytes: int,
                 read_timeout_s: float):
        self.routes = tuple(routes)
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: socket.socket, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def stop_reading(self) -> None:
        """End every open connection's reading: an idle keep-alive connection's thread sees the end of its
        requests and closes it at once, instead of taking requests for a stopped server until the read timeout;
        a busy one answers first."""
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # the client may have closed it already
                    connection.shutdown(socket.SHUT_RD)

    def handle_error(self, request, client_address) -> None:
        """Handlers answer their own failures, so what is left is a client that went away mid-request."""
        log.debug("connection from %s failed", client_address, exc_info=True)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server: _RoutingServer
    protocol_version = "HTTP/1.1"  # keep-alive, unless the client asks to close or speaks HTTP/1.0
    default_request_version = "HTTP/1.0"  # not 0.9, which would answer a garbled request line without a status
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle would hold the body back 40 ms

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # the socket's, set by setup()
        super().setup()

    def _answer(self) -> None:
        try:
            body = self._read_body()
        except _BodyRefused as refused:
            self._refuse(refused.status, refused.message, refused.unread)
            return
        self._send(self._dispatch(self.path.split("?", 1)[0], body))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals, in JSON like every other error rather than its HTML page."""
        text = ": ".join(part for part in (message or HTTPStatus(code).phrase, explain) if part)
        self.log_error("code %d, message %s", code, text)
        self._refuse(code, text, self.server.max_body_bytes)  # what is left of the request is unknown

    def _refuse(self, status: int, message: str, unread: int) -> None:
        """Answer an error and close the connection: up to `unread` bytes of the request were not read,
        so the next request's start cannot be found."""
        self.close_connection = True
        self._send(error_response(status, message))
        if unread:
            self._discard(unread)

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise _BodyRefused(HTTPStatus.LENGTH_REQUIRED,
                               "chunked request bodies are not supported: send a Content-Length",
                               unread=self.server.max_body_bytes)
        declared = self.headers.get("Content-Length", "0")
        if not declared.isdigit():
            raise _BodyRefused(HTTPStatus.BAD_REQUEST, f"Content-Length {declared!r} is not a byte count",
                               unread=self.server.max_body_bytes)
        length = int(declared)
        if length > self.server.max_body_bytes:
            raise _BodyRefused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request body of {length} bytes is over the limit of "
                               f"{self.server.max_body_bytes} bytes", unread=length)
        try:
            body = self.rfile.read(length)
        except TimeoutError as error:
            raise _BodyRefused(HTTPStatus.REQUEST_TIMEOUT,
                               f"request body incomplete after {self.timeout:g} s") from error
        if len(body) < length:
            raise _BodyRefused(HTTPStatus.BAD_REQUEST, f"request body ended after {len(body)} of {length} bytes")
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
                    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")
        return error_response(HTTPStatus.NOT_FOUND, f"Not found: {self.command} {path}")

    def _send(self, response: Response) -> None:
        """The answer, its length given (so keep-alive clients know where it ends); an answer to HEAD without
        its body."""
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _discard(self, length: int) -> None:
        """Read and drop up to `length` request bytes for a while: closing with them unread would reset the
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

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer  # TF Serving's methods

    def log_message(self, format, *args) -> None:  # pylint: disable=redefined-builtin
        log.debug(format, *args)  # a line per scrape, every few seconds, would flood stderr otherwise


class HttpServer:
    """Serves `routes` on host:port (0 picks a free port) from a daemon thread, a thread per connection."""

    def __init__(self, host: str, port: int, routes: Sequence[Route], max_body_bytes: int,
                 read_timeout_s: float = READ_TIMEOUT_S):
        self._server = _RoutingServer((host, port), routes, max_body_bytes, read_timeout_s)
        self.port = self._server.server_address[1]
        # Polling for shutdown 10 times a second (not the default 2) so that stop() returns promptly.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close open connections once their request in flight is answered, close the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.stop_reading()
        self._server.server_close()
