"""Errors that carry the gRPC status TF Serving would answer with."""
import grpc
import tensorflow as tf


class ServingError(Exception):
    """A failed request: its status code and a message for the client."""

    def __init__(self, code: grpc.StatusCode, message: str):
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
