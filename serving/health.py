"""The standard gRPC health service (grpc.health.v1.Health) on the model server's port.

Load balancers and Kubernetes probes ask it whether to send traffic. A model
name is SERVING while at least one of its versions is available; the overall
service ("") is SERVING only while every configured model is, as TF Serving
itself accepts calls only once all its models have loaded. Anything else,
including a model dropped from the config, is NOT_SERVING.
"""
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

OVERALL = ""
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Keeps the health service's statuses in step with which models have versions available."""

    def __init__(self, server: grpc.Server, model_names: list[str]) -> None:
        self._service = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._service, server)
        self._statuses: dict[str, int] = {}
        self.update({name: [] for name in model_names})

    def update(self, available: Mapping[str, list[int]]) -> None:
        """Report the configured models (with their available versions); names not given become NOT_SERVING.

        Callers report one snapshot at a time, so an older one never overwrites a newer one.
        """
        wanted = {name: SERVING if versions else NOT_SERVING for name, versions in available.items()}
        wanted[OVERALL] = SERVING if all(status == SERVING for status in wanted.values()) else NOT_SERVING
        for name in self._statuses.keys() - wanted.keys():
            wanted[name] = NOT_SERVING
        for name, status in wanted.items():
            if self._statuses.get(name) != status:  # set() wakes Watch streams, so only on a change
                self._service.set(name, status)
                self._statuses[name] = status

    def shut_down(self) -> None:
        """Answer NOT_SERVING from now on (and ignore updates), so clients drain while calls finish."""
        self._service.enter_graceful_shutdown()
