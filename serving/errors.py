"""Errors that carry the gRPC status TF Serving would answer with."""
import time

import grpc
import tensorflow as tf

# An error message's length at most. gRPC sends it in the trailing metadata, percent-encoded (up
# to 12 bytes for a character), and clients drop answers whose metadata is over 8 KiB at random,
# over 16 KiB always: a message quoting a 10 kB model name reached the client as
# RESOURCE_EXHAUSTED "received metadata size exceeds soft limit".
MAX_MESSAGE_CHARS = 400
ELLIPSIS = "..."


def shortened(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis if longer: messages quote what clients sent."""
    return text if len(text) <= limit else text[:limit - len(ELLIPSIS)] + ELLIPSIS


class ServingError(Exception):
    """A failed request: its status code and a message for the client, shortened to fit gRPC's metadata."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        message = shortened(message)
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_tf(cls, error: tf.errors.OpError) -> "ServingError":
        """TF's error codes are gRPC's, number for number."""
        code = next((c for c in grpc.StatusCode if c.value[0] == error.error_code), grpc.StatusCode.INTERNAL)
        return cls(code, error.message)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until `deadline` (a time.monotonic() value; None: no deadline). DEADLINE_EXCEEDED
    once it has passed, so that nothing is decoded for a caller that has given up."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the model ran")
    return left
