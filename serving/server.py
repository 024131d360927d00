"""A local model server speaking TF Serving's gRPC API (`enja serve`).

For development and tests where the tensorflow/serving image cannot run: it
loads, versions, batches and answers like TF Serving, so clients and the
model contract can be checked against it and then pointed at the real thing.
"""
import dataclasses
import logging
import os
import signal
import threading
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from enja.serving.batcher import Batcher
from enja.serving.batching_config import BatchOptions, batch_options
from enja.serving.loader import LoadedModel
from enja.serving.request import RequestLimits
from enja.serving.servicer import ModelResolver, ModelServicer, PredictionServicer
from enja.serving.versions import VersionManager

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8500  # 0 picks a free port
    poll_interval_s: float = 1.0  # TF Serving's --file_system_poll_wait_seconds
    num_versions: int = 1  # the newest N versions are served
    max_load_retries: int = 5
    batching: BatchOptions | None = BatchOptions()  # None serves each request on its own
    limits: RequestLimits = RequestLimits()
    max_message_bytes: int = 4 * 1024 * 1024
    max_workers: int = 64  # RPC threads; must exceed client concurrency for batches to fill
    grace_s: float = 10.0  # how long in-flight requests may take to finish at shutdown


class ModelServer:
    """The gRPC server, its version manager and its batcher, started and stopped together."""

    def __init__(self, model_base_path: str, model_name: str, options: ServerOptions = ServerOptions()):
        self.options = options
        self.versions = VersionManager(
            os.path.join(model_base_path, model_name), self._load,
            poll_interval_s=options.poll_interval_s, num_versions=options.num_versions,
            max_load_retries=options.max_load_retries)
        self._batcher = Batcher(options.batching) if options.batching else None
        models = ModelResolver(model_name, self.versions)
        limits = [("grpc.max_receive_message_length", options.max_message_bytes),
                  ("grpc.max_send_message_length", options.max_message_bytes)]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(options.max_workers, thread_name_prefix="rpc"),
                                 options=limits)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(models, options.limits, self._batcher), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(models), self._grpc)
        self.port = self._grpc.add_insecure_port(f"{options.host}:{options.port}")

    def _load(self, path: str, version: int) -> LoadedModel:
        model = LoadedModel(path, version)
        log.info("version %d answered %d warm-up requests", version, model.warm_up(self.options.limits))
        return model

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.port}"

    def start(self) -> None:
        """Load what is on disk (like TF Serving, before accepting calls), then serve and poll."""
        self.versions.poll()
        self._grpc.start()
        self.versions.start()
        log.info("serving %s on %s", self.versions.model_dir, self.address)

    def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish (batcher still running), then stop the rest."""
        self._grpc.stop(self.options.grace_s).wait()
        if self._batcher:
            self._batcher.close()
        self.versions.stop()


def serve(model_base_path: str, model_name: str = "enja", host: str = "127.0.0.1", port: int = 8500, *,
          enable_batching: bool = True, batching_parameters_file: str | None = None,
          poll_interval_s: float = 1.0, limits: RequestLimits = RequestLimits()) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    batching = None
    if enable_batching:
        batching = batch_options(batching_parameters_file) if batching_parameters_file else BatchOptions()
    server = ModelServer(model_base_path, model_name, ServerOptions(
        host=host, port=port, poll_interval_s=poll_interval_s, batching=batching, limits=limits))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    stop.wait()
    log.info("shutting down")
    server.stop()
