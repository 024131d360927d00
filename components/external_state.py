"""A local driver for components that read state outside their input artifacts.

TFX's cache keys an execution on its inputs and parameters. A component that reads state
kept at a URI (the model in production, the data gate's reference) would be reused from
the cache after that state changed. Its driver puts a fingerprint of the state into the
execution's parameters before the cache is consulted, as TFX's ExampleGen driver does
with the input files. Kubeflow Pipelines runs no drivers; there such tasks are never
cached (pipeline.ALWAYS_RUN_NODE_IDS), and the executor reads the state itself either way.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from tfx.dsl.components.base import base_driver
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2

# The parameter the fingerprint travels in; executors ignore it.
FINGERPRINT_KEY = "external_state_fingerprint"


class FingerprintDriver(base_driver.BaseDriver):
    """Adds FINGERPRINT(exec_properties) to the execution's parameters."""

    FINGERPRINT: ClassVar[Callable[[dict[str, Any]], str]]

    def run(self, execution_info: data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        output = driver_output_pb2.DriverOutput()
        output.exec_properties[FINGERPRINT_KEY].string_value = type(self).FINGERPRINT(
            execution_info.exec_properties)
        return output
