"""A local model server speaking TF Serving's gRPC and REST APIs (`enja serve`).

For development and tests where the tensorflow/serving image cannot run: it
loads, versions, batches and answers like TF Serving, so clients and the
model contract can be checked against it and then pointed at the real thing.
"""
import dataclasses
import functools
import logging
import os
import re
import signal
import threading
import time
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from enja.serving import memory
from enja.serving.batcher import Batcher
from enja.serving.batching_config import BatchOptions, batch_options
from enja.serving.config import RequestLimits
from enja.serving.config_poller import ConfigFilePoller
from enja.serving.draining import Draining
from enja.serving.errors import ServingError
from enja.serving.health import HealthReporter
from enja.serving.http_server import MAX_CONNECTIONS, HttpServer, Request, Response, Route
from enja.serving.loader import LoadedModel
from enja.serving.metrics import ServerMetrics
from enja.serving.model_config import (
    ModelConfig,
    ModelServerConfig,
    model_server_config,
    naming_file,
    read_model_config,
    resolve_base_paths,
)
from enja.serving.rest_api import RestApi
from enja.serving.served_models import ServedModels
from enja.serving.servicer import ModelServicer, PredictionServicer
from enja.serving.versions import VersionManager

log = logging.getLogger(__name__)
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's, so scrape configs carry over
SIGNAL_POLL_S = 0.2  # how soon SIGTERM or SIGINT starts the shutdown at most


class ListenError(OSError):
    """A port the server was asked to listen on cannot be had; the message names it."""


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8500  # 0 picks a free port
    rest_api_port: int | None = None  # the HTTP port (REST API, metrics); None: none, 0 picks a free port
    poll_interval_s: float = 1.0  # TF Serving's --file_system_poll_wait_seconds
    num_versions: int = 1  # the newest N versions are served (a config's models follow their policies)
    max_load_retries: int = 5  # TF Serving's --max_num_load_retries
    load_retry_interval_s: float = 60.0  # TF Serving's --load_retry_interval_micros
    enable_model_warmup: bool = True  # replay a version's warm-up requests before serving it
    intra_op_threads: int = 0  # threads each op may use; 0: TensorFlow's choice, one a core
    inter_op_threads: int = 0  # ops run at once; 0: TensorFlow's choice, one a core
    batching: BatchOptions | None = BatchOptions()  # None serves each request on its own
    limits: RequestLimits = RequestLimits()
    max_message_bytes: int = 4 * 1024 * 1024
    max_workers: int = 64  # RPC threads; must exceed client concurrency for batches to fill
    # Calls in progress at most (running or waiting for a thread); more are refused at once with
    # RESOURCE_EXHAUSTED, which clients retry, instead of queueing past their deadlines.
    max_concurrent_rpcs: int = 256
    rest_api_timeout_s: float = 30.0  # TF Serving's --rest_api_timeout_in_ms: a REST predict's deadline
    rest_api_num_threads: int = 0  # TF Serving's: threads answering REST calls; 0: four a core, its default
    rest_api_max_connections: int = MAX_CONNECTIONS  # HTTP connections open at most; one more is answered 503
    # HandleReloadConfigRequest loads whatever SavedModel a caller names (its init ops and warm-up
    # run), so it may be turned off, and may only name base paths under these folders or URI
    # prefixes; () allows the folders holding the base paths the server started with.
    enable_reload_config: bool = True
    reload_config_roots: tuple[str, ...] = ()
    grace_s: float = 10.0  # how long in-flight requests may take to finish at shutdown


class ModelServer:
    """The gRPC server, its models' version managers and its batcher, started and stopped together."""

    def __init__(self, model_base_path: str, model_name: str,
                 options: ServerOptions = ServerOptions()) -> None:
        """Serve the newest `options.num_versions` versions in <model_base_path>/<model_name>/."""
        self._build(model_server_config(model_name, os.path.join(model_base_path, model_name),
                                        options.num_versions),
                    options, config_dir=os.getcwd())

    @classmethod
    def from_model_config(cls, config: ModelServerConfig, options: ServerOptions = ServerOptions(),
                          config_dir: str = ".") -> "ModelServer":
        """Serve the models a ModelServerConfig lists, relative base paths taken from `config_dir`.

        Raises ModelConfigError, before anything loads, if the config cannot be served.
        """
        server = cls.__new__(cls)
        server._build(config, options, config_dir)
        return server

    @classmethod
    def from_model_config_file(cls, path: str, options: ServerOptions = ServerOptions(),
                               poll_wait_s: float = 0.0) -> "ModelServer":
        """Serve what a model config file says, re-reading it every `poll_wait_s` seconds (0: once).

        Relative base paths are taken from the file's folder. Raises ModelConfigError naming the file.
        """
        config = read_model_config(path)
        with naming_file(path):
            server = cls.from_model_config(config, options, os.path.dirname(os.path.abspath(path)))
        if poll_wait_s > 0:
            server._config_poller = ConfigFilePoller(path, config, server.reload_config, poll_wait_s)
        return server

    def _build(self, config: ModelServerConfig, options: ServerOptions, config_dir: str) -> None:
        # before the RPC and session threads make arenas of their own
        memory.cap_malloc_arenas(os.cpu_count() or 1)
        self.options = options
        self._config_dir = config_dir
        self._config_poller: ConfigFilePoller | None = None
        config = resolve_base_paths(config, config_dir)
        # Without so_reuseport 0 a second server binds the same port silently and takes half the calls.
        limits = [("grpc.max_receive_message_length", options.max_message_bytes),
                  ("grpc.max_send_message_length", options.max_message_bytes), ("grpc.so_reuseport", 0)]
        self._rpc_threads = futures.ThreadPoolExecutor(options.max_workers, thread_name_prefix="rpc")
        self._draining = Draining()
        self._grpc = grpc.server(self._rpc_threads, options=limits, interceptors=[self._draining],
                                 maximum_concurrent_rpcs=options.max_concurrent_rpcs)
        self.metrics = ServerMetrics()
        self._health = HealthReporter(self._grpc, [model.name for model in config.model_config_list.config])
        self._report_lock = threading.Lock()
        self.models = ServedModels(config, self._new_manager)
        self._batcher = Batcher(options.batching) if options.batching else None
        predictions = PredictionServicer(self.models, options.limits, self._batcher, self.metrics)
        self._reload_roots = tuple(_canonical(root) for root in options.reload_config_roots or
                                   {_parent(model.base_path) for model in config.model_config_list.config})
        model_service = ModelServicer(self.models, self.reload_config_from_client, self.metrics)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(predictions, self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model_service, self._grpc)
        self._http: HttpServer | None = None
        try:
            self.port = _listen_grpc(self._grpc, options.host, options.port)
            if options.rest_api_port is not None:
                routes = [Route("GET", re.compile(re.escape(METRICS_PATH)), self._metrics_page),
                          *RestApi(predictions, model_service, options.rest_api_timeout_s).routes()]
                self._http = _listen_http(options, routes)
        except ListenError:
            self._grpc.stop(None)
            self._rpc_threads.shutdown()
            if self._batcher:
                self._batcher.close()
            raise

    def _new_manager(self, config: ModelConfig) -> VersionManager:
        return VersionManager(config, functools.partial(self._load, config.name),
                              poll_interval_s=self.options.poll_interval_s,
                              max_load_retries=self.options.max_load_retries,
                              load_retry_interval_s=self.options.load_retry_interval_s,
                              on_round=self._report_availability)

    def _load(self, model_name: str, path: str, version: int) -> LoadedModel:
        with self.metrics.load(model_name):
            model = LoadedModel(path, version, self.options.intra_op_threads, self.options.inter_op_threads)
            if self.options.enable_model_warmup:
                log.info("version %d answered %d warm-up requests", version,
                         model.warm_up(self.options.limits))
        return model

    def _report_availability(self) -> None:
        """Bring health and the served-version gauge in line with the versions available now."""
        with self._report_lock:  # one snapshot at a time, so a stale one never lands last
            available = {name: manager.available_versions() for name, manager in self.models.managers.items()}
            self._health.update(available)
            self.metrics.set_served(available)

    def _metrics_page(self, request: Request) -> Response:
        text, content_type = self.metrics.exposition()
        return Response(200, text, content_type)

    @property
    def address(self) -> str:
        return f"{self.options.host}:{self.port}"

    @property
    def rest_api_address(self) -> str | None:
        """host:port of the HTTP server, if it has one."""
        return f"{self.options.host}:{self._http.port}" if self._http else None

    @property
    def versions(self) -> VersionManager:
        """The versions of the only model (as served by a server built from a base path and a name)."""
        (manager,) = self.models.managers.values()
        return manager

    def reload_config(self, config: ModelServerConfig) -> None:
        """Serve as a new config says (relative base paths as at start-up); keep the old one if it cannot be.

        Raises ModelConfigError when refused; returns once newly aspired versions serve (or failed to load).
        """
        self.models.apply(resolve_base_paths(config, self._config_dir))
        self._report_availability()  # the models added or dropped, which their managers' rounds cannot report
        log.info("applied a new model config: %s", ", ".join(sorted(self.models.managers)))

    def reload_config_from_client(self, config: ModelServerConfig) -> None:
        """A reload asked over the network: refused (PERMISSION_DENIED) when turned off or when a
        base path lies outside the allowed roots; otherwise as `reload_config`."""
        if not self.options.enable_reload_config:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               "this server takes no model config over the network")
        resolved_config = resolve_base_paths(config, self._config_dir)
        for model, resolved in zip(config.model_config_list.config,
                                   resolved_config.model_config_list.config, strict=True):
            if not any(_within(_canonical(resolved.base_path), root) for root in self._reload_roots):
                raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"model '{model.name}': base path '{model.base_path}' is outside the "
                                   "folders this server may load from")
        self.reload_config(config)

    def start(self) -> None:
        """Load what the config asks for (like TF Serving, before accepting calls), then serve and poll."""
        self.models.start()
        self._grpc.start()
        if self._http:
            self._http.start()
        if self._config_poller:
            self._config_poller.start()
        log.info("serving %s on %s", ", ".join(sorted(self.models.managers)), self.address)
        if self._http:
            log.info("REST API and metrics at http://%s", self.rest_api_address)

    def stop(self) -> None:
        """Stop adopting configs, refuse new calls on both ports (gRPC's once it has handed over those sent
        before: serving/draining.py), let calls in flight finish (for up to `grace_s`, the batcher still
        running), then stop."""
        if self._config_poller:
            self._config_poller.stop()
        started = time.monotonic()
        self._health.shut_down()
        if self._http:
            self._http.stop()
        self._draining.hand_over(since=started)  # gRPC calls sent before now are served
        refusing = time.monotonic()
        self._draining.refuse_new()
        self._draining.hand_over(since=refusing)  # and those sent meanwhile refused, not cancelled
        self._grpc.stop(max(0.0, self.options.grace_s - (time.monotonic() - started))).wait()
        self._rpc_threads.shutdown()  # gRPC leaves its pool's threads behind otherwise
        if self._batcher:
            self._batcher.close()
        self.models.stop()


def _canonical(path: str) -> str:
    """A local path with links and `..` resolved, or a URI without a trailing slash."""
    return path.rstrip("/") if "://" in path else os.path.realpath(path)


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if "://" in path else os.path.dirname(os.path.realpath(path))


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _listen_grpc(server: grpc.Server, host: str, port: int) -> int:
    try:
        return server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:  # what gRPC raises when it cannot bind
        raise ListenError(f"cannot listen for gRPC on {host}:{port}: the port is in use, or the "
                          "address is not this machine's") from error


def _listen_http(options: ServerOptions, routes: list[Route]) -> HttpServer:
    try:
        return HttpServer(options.host, options.rest_api_port, routes, options.max_message_bytes,
                          handler_threads=options.rest_api_num_threads,
                          max_connections=options.rest_api_max_connections, grace_s=options.grace_s)
    except OSError as error:
        raise ListenError(f"cannot listen for REST on {options.host}:{options.rest_api_port}: "
                          f"{error.strerror}") from error


def batching(enable: bool, parameters_file: str | None) -> BatchOptions | None:
    """What --enable_batching and --batching_parameters_file ask for: TF Serving's defaults unless
    the file says."""
    if not enable:
        return None
    return batch_options(parameters_file) if parameters_file else BatchOptions()


def serve(options: ServerOptions, model_base_path: str | None = None, model_name: str = "enja", *,
          model_config_file: str | None = None, model_config_file_poll_wait_s: float = 0.0) -> None:
    """Serve one model's versions folder or a config file's models until SIGTERM or SIGINT, then shut down.

    `model_base_path` is the folder holding the numbered versions, as TF Serving's flag means it.
    Raises ModelConfigError, before serving anything, if the config cannot be served.
    """
    if (model_base_path is None) == (model_config_file is None):
        raise ValueError("give exactly one of model_base_path and model_config_file")
    if model_config_file is None:
        server = ModelServer.from_model_config(
            model_server_config(model_name, os.path.abspath(model_base_path), options.num_versions), options)
    else:
        server = ModelServer.from_model_config_file(model_config_file, options, model_config_file_poll_wait_s)
    received: list[int] = []  # a handler must not take a lock: it runs between the main thread's bytecodes
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: received.append(signum))
    server.start()
    while not received:
        # Not a blocking wait: a signal the kernel hands to one of TF's or gRPC's threads
        # runs its Python handler only when the main thread next runs bytecode.
        time.sleep(SIGNAL_POLL_S)
    log.info("shutting down (%s)", signal.Signals(received[0]).name)
    server.stop()
