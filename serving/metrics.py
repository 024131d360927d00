"""What a server counts for Prometheus: requests, their latency, batch sizes and version loads.

Each server has its own CollectorRegistry rather than prometheus_client's global
one, so that several servers in one process (as in the tests) count apart. The
names are ours (`enja_serving_*`), not TF Serving's `:tensorflow:serving:*`,
because the labels differ: dashboards are written against these.

Requests are counted by `api`: the gRPC method's name (`Predict`,
`GetModelMetadata`, `GetModelStatus`, `HandleReloadConfigRequest`) for gRPC
calls, and the same name after REST_API_PREFIX for the REST API's calls
(`rest:Predict`, `rest:GetModelMetadata`, `rest:GetModelStatus`). A dashboard
selects REST with `api=~"rest:.*"`, gRPC with `api!~"rest:.*"`, and one method
over both with e.g. `api=~"(rest:)?Predict"`. `model` is "" for calls about no
one model (a config reload); `version` is "" unless the call ran one version.
"""
import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping

import grpc
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from enja.serving.errors import ServingError

REST_API_PREFIX = "rest:"  # what a REST call's api label starts with (see above)
# Latencies from a cached short request (milliseconds) to a long beam search under load (tens of seconds).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Rows per session run; batches are capped by max_batch_size (32 by default, a few hundred at most).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclasses.dataclass
class RequestLabels:
    """What a request is counted under; the servicer fills in version and signature once it resolved them."""
    api: str
    model: str
    version: str = ""  # "" when the request failed before a version was chosen
    signature: str = ""


class ServerMetrics:
    """One server's metrics, and the hooks its servicer and loaders record through."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        request_labels = ("api", "model", "version", "signature", "status")
        self._requests = Counter("enja_serving_requests",
                                 "Requests answered, by outcome (a gRPC status name)",
                                 request_labels, registry=self.registry)
        self._latency = Histogram("enja_serving_request_latency_seconds",
                                  "Time from receiving a request to answering it", request_labels,
                                  buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self._batch_size = Histogram("enja_serving_batch_size", "Rows in each batched session run",
                                     ("model", "version", "signature"), buckets=BATCH_SIZE_BUCKETS,
                                     registry=self.registry)
        self._loads = Counter("enja_serving_version_loads", "Versions loaded and warmed up", ("model",),
                              registry=self.registry)
        self._load_failures = Counter("enja_serving_version_load_failures",
                                      "Attempts to load a version that failed (each retry counts)", ("model",
                                                                                                     ),
                                      registry=self.registry)
        self._served_version = Gauge("enja_serving_served_version",
                                     "The newest available version (what unversioned requests get); "
                                     "absent while none is", ("model",), registry=self.registry)
        self._served_models: set[str] = set()  # the models the gauge has a value for

    @contextlib.contextmanager
    def request(self, labels: RequestLabels) -> Iterator[RequestLabels]:
        """Count and time the block as one request; its status is what the servicer will answer."""
        start, status = time.perf_counter(), grpc.StatusCode.OK
        try:
            yield labels
        except ServingError as error:
            status = error.code
            raise
        except Exception:  # answered INTERNAL by the servicer
            status = grpc.StatusCode.INTERNAL
            raise
        finally:
            values = (*dataclasses.astuple(labels), status.name)
            self._requests.labels(*values).inc()
            self._latency.labels(*values).observe(time.perf_counter() - start)

    def batch(self, model: str, version: int, signature: str, rows: int) -> None:
        self._batch_size.labels(model, str(version), signature).observe(rows)

    @contextlib.contextmanager
    def load(self, model: str) -> Iterator[None]:
        """Count the block as one attempt to load a version of `model`: a success unless it raises."""
        try:
            yield
        except Exception:
            self._load_failures.labels(model).inc()
            raise
        self._loads.labels(model).inc()

    def set_served(self, available: Mapping[str, list[int]]) -> None:
        """Every model's newest available version; models with none (or no longer served) are dropped.

        Callers report one snapshot at a time, so an older one never overwrites a newer one.
        """
        served = {model: max(versions) for model, versions in available.items() if versions}
        for model, version in served.items():
            self._served_version.labels(model).set(version)
        for model in self._served_models - served.keys():
            self._served_version.remove(model)
        self._served_models = set(served)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST
