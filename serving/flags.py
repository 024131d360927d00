"""`enja serve`'s command line: tensorflow_model_server's flags, with their meanings and defaults.

A user moves between TF Serving and this server by changing the program name:
the flags that both have are spelled, typed and defaulted as TF Serving does
(`--enable_batching=true`, `--model_base_path` the folder holding the numbered
versions). Each also answers to the spelling `enja serve` had before (dashes).
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from enja.serving.config import RequestLimits, ServingConfig

if TYPE_CHECKING:
    from enja.serving import server

log = logging.getLogger(__name__)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _bool(value: str) -> bool:
    """TF Serving's boolean flag values (`--enable_batching=false`)."""
    if value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def _port(value: str) -> int:
    """A TCP port number, 0 for one the system picks: gRPC would take a larger one as 0 without a word."""
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535)")
    return port


def _add_switch(group: argparse._ActionsContainer, *names: str, default: bool, help: str) -> None:
    """A boolean flag as TF Serving spells it: `--name`, `--name=true` or `--name=false`."""
    group.add_argument(*names, type=_bool, nargs="?", const=True, default=default, metavar="true|false",
                       help=f"{help} (default: %(default)s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """tensorflow_model_server's flags, then this server's own (request limits, the listening address)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_base_path", "--model-base-path", metavar="DIR",
                        help="serve the model whose numbered versions are in DIR, e.g. "
                             "pipeline_output/serving_model/enja (for the old spelling's meaning, a DIR "
                             "holding <model_name>/ and no versions is taken as DIR/<model_name>)")
    source.add_argument("--model_config_file", metavar="FILE",
                        help="serve the models of a TF Serving ModelServerConfig in protobuf text format, "
                             "e.g. serving/deploy/models.config: names, base paths (a relative one is taken "
                             "relative to FILE's folder), version policies and labels")
    parser.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0, metavar="N",
                        help="re-read --model_config_file every N seconds and apply it when it changed; "
                             "0 reads it once (default: %(default)s)")
    parser.add_argument("--model_name", "--model-name", default=ServingConfig.model_name, metavar="NAME",
                        help="the model's name with --model_base_path; TF Serving's default is 'default' "
                             "(default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8500,
                        help="the gRPC port: TF Serving's PredictionService and ModelService, and the "
                             "standard health service grpc.health.v1.Health, SERVING for a model name while "
                             "a version of it is available and for \"\" while every model's is; 0 picks a "
                             "free port "
                             "(default: %(default)s)")
    parser.add_argument("--rest_api_port", type=_port, default=0, metavar="PORT",
                        help="the HTTP port: TF Serving's REST API (/v1/models/...) and Prometheus metrics "
                             "at /monitoring/prometheus/metrics; 0 serves no HTTP (default: %(default)s)")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30_000, metavar="N",
                        help="a REST predict's deadline, as a gRPC caller's would be; 0: none "
                             "(default: %(default)s)")
    parser.add_argument("--rest_api_num_threads", type=int, default=0, metavar="N",
                        help="threads answering REST calls (a call waits for one); 0: four a core "
                             "(default: %(default)s)")
    _add_switch(parser, "--enable_batching", "--enable-batching", default=False,
                help="batch concurrent requests into one session run")
    parser.add_argument("--no-enable-batching", dest="enable_batching", action="store_false",
                        help=argparse.SUPPRESS)  # the old spelling of --enable_batching=false
    parser.add_argument("--batching_parameters_file", "--batching-parameters-file", metavar="FILE",
                        help="TF Serving BatchingParameters in protobuf text format, e.g. "
                             "serving/deploy/batching_parameters.txt (default: max_batch_size 32, "
                             "batch_timeout_micros 2000, num_batch_threads 2, max_enqueued_batches 100)")
    parser.add_argument("--file_system_poll_wait_seconds", "--file-system-poll-wait-seconds", type=float,
                        default=1,
                        metavar="N", help="look for new versions every N seconds (default: %(default)s)")
    parser.add_argument("--max_num_load_retries", type=int, default=5, metavar="N",
                        help="retry a version that fails to load up to N times (default: %(default)s)")
    parser.add_argument("--load_retry_interval_micros", type=int, default=60_000_000, metavar="N",
                        help="wait at least N microseconds before retrying a load, e.g. while a push is "
                             "still being copied (default: %(default)s)")
    _add_switch(parser, "--enable_model_warmup", default=True,
                help="replay a version's assets.extra/tf_serving_warmup_requests before serving it")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, metavar="N",
                        help="threads one op may use; 0 lets TensorFlow choose (default: %(default)s)")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0, metavar="N",
                        help="ops run at once; 0 lets TensorFlow choose (default: %(default)s)")
    own = parser.add_argument_group("this server's own")
    own.add_argument("--host", default="127.0.0.1",
                     help="the address to listen on; TF Serving listens on all (0.0.0.0) "
                          "(default: %(default)s)")
    own.add_argument("--max_concurrent_rpcs", type=int, default=256, metavar="N",
                     help="gRPC calls in progress at most; more are refused with RESOURCE_EXHAUSTED, "
                          "which clients retry (default: %(default)s)")
    own.add_argument("--rest_api_max_connections", type=int, default=4096, metavar="N",
                     help="HTTP connections open at most; one more is answered 503 and closed "
                          "(default: %(default)s)")
    _add_switch(own, "--enable_reload_config", default=True,
                help="take HandleReloadConfigRequest calls, which make the server load the SavedModels "
                     "they name")
    own.add_argument("--reload_config_roots", type=lambda value: tuple(filter(None, value.split(","))),
                     default=(), metavar="DIR[,DIR...]",
                     help="folders (or URI prefixes) whose models such a call may name (default: the folders "
                          "holding the models the server starts with)")
    own.add_argument("--max_request_sentences", "--max-request-sentences", type=int,
                     default=RequestLimits.max_batch_size, metavar="N",
                     help="refuse requests of more than N sentences (default: %(default)s)")
    own.add_argument("--max_sentence_chars", "--max-sentence-chars", type=int,
                     default=RequestLimits.max_chars,
                     metavar="N", help="refuse sentences of more than N characters (default: %(default)s)")
    own.add_argument("--max_beam_width", "--max-beam-width", type=int, default=RequestLimits.max_beam_width,
                     metavar="N", help="refuse translate_with_options requests for a beam width over N "
                                       "(default: %(default)s)")


def versions_folder(path: str, model_name: str) -> str:
    """`path` as TF Serving takes it, unless it is what the old `--model-base-path` meant: the
    folder above."""
    from enja.serving.served import versions_on_disk

    below = os.path.join(path, model_name)
    if not versions_on_disk(path) and versions_on_disk(below):
        log.warning("%s holds no versions but %s does: serving that (TF Serving needs --model_base_path=%s)",
                    path, below, below)
        return below
    return path


def server_options(args: argparse.Namespace) -> server.ServerOptions:
    """The ServerOptions the flags ask for."""
    from enja.serving import server

    return server.ServerOptions(
        host=args.host, port=args.port, rest_api_port=args.rest_api_port or None,
        poll_interval_s=args.file_system_poll_wait_seconds, max_load_retries=args.max_num_load_retries,
        load_retry_interval_s=args.load_retry_interval_micros / 1e6,
        max_concurrent_rpcs=args.max_concurrent_rpcs, enable_reload_config=args.enable_reload_config,
        reload_config_roots=args.reload_config_roots,
        rest_api_timeout_s=args.rest_api_timeout_in_ms / 1000,
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_max_connections=args.rest_api_max_connections,
        batching=server.batching(args.enable_batching, args.batching_parameters_file),
        enable_model_warmup=args.enable_model_warmup,
        intra_op_threads=args.tensorflow_intra_op_parallelism,
        inter_op_threads=args.tensorflow_inter_op_parallelism,
        limits=RequestLimits(max_batch_size=args.max_request_sentences, max_chars=args.max_sentence_chars,
                             max_beam_width=args.max_beam_width))


def serve(args: argparse.Namespace) -> None:
    """Serve as the flags say until SIGTERM or SIGINT; ModelConfigError if the config cannot be served."""
    from enja.serving import server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.serve(server_options(args),
                 model_base_path=args.model_base_path and versions_folder(args.model_base_path,
                                                                          args.model_name),
                 model_name=args.model_name, model_config_file=args.model_config_file,
                 model_config_file_poll_wait_s=args.model_config_file_poll_wait_seconds)
