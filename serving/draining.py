"""How the gRPC side drains at shutdown without failing a call that was sent before it.

gRPC cancels (CANCELLED) the calls it has received but not yet handed to the
application when its server stops, and under load it holds many: the Python
server takes them one at a time. So the server hands over in two steps before
gRPC stops. First it goes on serving (its health already NOT_SERVING), so that
the calls sent before the shutdown began reach it and are answered; then it
answers new calls UNAVAILABLE, which clients retry elsewhere, while gRPC hands
over the calls sent meanwhile. An idle server skips both.
"""
import math
import threading
import time
from collections.abc import Callable

import grpc

# How long each step lasts: longer than it takes the server to take over the calls gRPC holds under
# load (docs/serving.md has what was measured).
HANDOVER_S = 1.0


class Draining(grpc.ServerInterceptor):
    """Passes calls through until `refuse_new()`, then answers each new one UNAVAILABLE."""

    def __init__(self) -> None:
        self._refusing = threading.Event()
        self._last_call = -math.inf  # when gRPC last handed over a call

    def refuse_new(self) -> None:
        self._refusing.set()

    def hand_over(self, since: float) -> None:
        """Wait until HANDOVER_S after `since` (a time.monotonic() value), unless no call has come for that
        long: an idle server holds none."""
        if time.monotonic() - self._last_call < HANDOVER_S:
            time.sleep(max(0.0, since + HANDOVER_S - time.monotonic()))

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        self._last_call = time.monotonic()
        if not self._refusing.is_set():
            return continuation(handler_call_details)
        return grpc.unary_unary_rpc_method_handler(_refuse)


def _refuse(request: bytes, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another")
