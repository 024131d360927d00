"""The model server's HTTP port (`--rest_api_port`): a route table served by a small threaded server.

For now it carries only the Prometheus page at TF Serving's path; TF Serving's
REST API is meant to be added as further routes. Like TF Serving, a path it
does not serve answers 404 with a JSON body `{"error": "..."}`.
"""
import dataclasses
import http.server
import json
import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


def error_response(status: int, message: str) -> Response:
    return Response(status, json.dumps({"error": message}).encode("utf-8"))


Handler = Callable[[bytes], Response]  # called with the request body
Routes = Mapping[tuple[str, str], Handler]  # (method, path) -> handler


class _RoutingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a scrape in progress must not hold up shutdown

    def __init__(self, address: tuple[str, int], routes: Routes):
        self.routes = dict(routes)
        super().__init__(address, _RequestHandler)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server: _RoutingServer

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        handler = self.server.routes.get((self.command, self.path.split("?", 1)[0]))
        try:
            response = (handler(body) if handler
                        else error_response(404, f"Malformed request: {self.command} {self.path}"))
        except Exception as error:  # a failing handler answers 500; the server lives on
            log.exception("%s %s failed", self.command, self.path)
            response = error_response(500, f"{type(error).__name__}: {error}")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format, *args) -> None:  # pylint: disable=redefined-builtin
        log.debug(format, *args)  # a line per scrape, every few seconds, would flood stderr otherwise


class HttpServer:
    """Serves `routes` on host:port (0 picks a free port) from a daemon thread, a thread per request."""

    def __init__(self, host: str, port: int, routes: Routes):
        self._server = _RoutingServer((host, port), routes)
        self.port = self._server.server_address[1]
        # Polling for shutdown 10 times a second (not the default 2) so that stop() returns promptly.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
