"""The `enja` command: run the pipeline, follow its history, serve, roll back and translate."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from enja.pipeline import configs


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean the input is wrong, not the program: one line, no traceback."""
    from enja.components.parallel_corpus import CorpusError
    from enja.components.spans import SpanError
    from enja.pipeline.data import MissingCorpusError

    return (CorpusError, SpanError, MissingCorpusError)


def _missing_folder(path: str) -> str | None:
    """The folder a file is to be written in, if it does not exist: said before any slow work."""
    folder = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(folder) else folder


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    """`--set GROUP.FIELD=VALUE` (repeatable) into `args.settings`, for `configs.with_overrides`."""
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="GROUP.FIELD=VALUE",
                        help="override one setting of the preset (pipeline/configs.py), "
                             "e.g. --set training.epochs=2; repeatable")


def _config(args: argparse.Namespace, command: str) -> configs.PipelineConfig | None:
    """The preset with the --set overrides, or None after saying what is wrong."""
    from enja.pipeline import configs

    try:
        return configs.with_overrides(configs.PRESETS[args.preset], args.settings)
    except ValueError as error:
        print(f"enja {command}: --set: {error}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from enja.pipeline import history, local_runner
    from enja.pipeline.layout import OutputLayout

    config = _config(args, "run")
    if config is None:
        return 2
    try:
        record = local_runner.run(data_root=args.data_root, output_dir=args.output_dir,
                                  config=config)
    except _user_errors() as error:
        print(f"enja run: {error}", file=sys.stderr)
        return 2
    print(history.outcome(record, OutputLayout(args.output_dir, config).serving_model_dir))
    return 0 if record.pushed_version is not None else 1


def _kubeflow(args: argparse.Namespace) -> int:
    from enja.pipeline import data, kubeflow_v2_runner

    config = _config(args, "kubeflow")
    if config is None:
        return 2
    # Only the containers read it (it may be a bucket this machine cannot read): not checked here.
    data_root = args.data_root or os.environ.get(data.DATA_ROOT_ENV)
    if not data_root:
        print(f"enja kubeflow: give --data-root URI (or set {data.DATA_ROOT_ENV}): "
              "the corpus as the containers read it", file=sys.stderr)
        return 2
    root = args.pipeline_root.rstrip("/")
    serving_dir = args.serving_dir or "/".join([root, "serving_model", config.serving.model_name])
    try:
        kubeflow_v2_runner.compile_pipeline(
            config, args.output, pipeline_root=args.pipeline_root, data_root=data_root,
            serving_model_dir=serving_dir, state_dir=args.state_dir or f"{root}/state",
            model_config_file=args.model_config_file or "",
            image=args.image or kubeflow_v2_runner.DEFAULT_IMAGE,
            schema_file=args.schema_file or kubeflow_v2_runner.IMAGE_SCHEMA_FILE)
    except _user_errors() as error:
        print(f"enja kubeflow: {error}", file=sys.stderr)
        return 2
    print(args.output)
    return 0


def _history(args: argparse.Namespace) -> int:
    from enja.pipeline import configs, history
    from enja.pipeline.layout import OutputLayout

    layout = OutputLayout(args.output_dir, configs.PRESETS[configs.DEFAULT_PRESET])
    if not os.path.exists(layout.metadata_path):
        print(f"enja history: no pipeline has run in {args.output_dir}", file=sys.stderr)
        return 2
    records = history.history(layout.metadata_connection())
    print(history.to_json(records) if args.json else history.format_table(records))
    return 0


def _report(args: argparse.Namespace) -> int:
    from enja.pipeline import configs
    from enja.pipeline.layout import OutputLayout

    layout = OutputLayout(args.output_dir, configs.PRESETS[configs.DEFAULT_PRESET])
    if not os.path.exists(layout.metadata_path):
        print(f"enja report: no pipeline has run in {args.output_dir}", file=sys.stderr)
        return 2
    if folder := _missing_folder(args.out):
        print(f"enja report: no folder {folder} to write {args.out} in", file=sys.stderr)
        return 2
    from enja.pipeline import history, report  # TensorFlow: only once the arguments are known good

    try:
        sentences = report.sample_sentences(args.data_root)
    except _user_errors() as error:
        print(f"enja report: {error}", file=sys.stderr)
        return 2
    report.write_report(history.history(layout.metadata_connection()), sentences, args.out,
                        source=layout.output_dir)
    print(args.out)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from enja.pipeline import configs, rollback, rollback_kubernetes
    from enja.pipeline.layout import OutputLayout
    from enja.serving.model_config import ModelConfigError

    config = configs.PRESETS[configs.DEFAULT_PRESET]
    layout = OutputLayout(args.output_dir, config)
    config_file = args.model_config_file or layout.model_config_file
    record = None
    if os.path.exists(layout.metadata_path):
        record = rollback.RunsRecord(layout.metadata_connection(), config.pipeline_name)
    elif not args.serving_dir:
        print(f"enja rollback: no pipeline has run in {args.output_dir} (for runs elsewhere, "
              "e.g. on Kubeflow, give --serving-dir and --model-config-file)", file=sys.stderr)
        return 2
    if args.kubeconfig is not None and args.kubernetes_configmap is None:
        print("enja rollback: --kubeconfig is for --kubernetes-configmap", file=sys.stderr)
        return 2
    versions_dir = args.serving_dir or layout.serving_model_dir
    try:
        configmap = args.kubernetes_configmap
        kubernetes = rollback_kubernetes.Targets(
            args.configmap_manifest,
            None if configmap is None else rollback_kubernetes.ConfigMapRef.parse(configmap), args.kubeconfig)
        if args.latest:
            message = rollback.rollback_latest(config_file, args.model_name, versions_dir, record, kubernetes)
        else:
            message = rollback.rollback_to(config_file, args.model_name, versions_dir, args.to, record,
                                           kubernetes)
    except (rollback.RollbackError, ModelConfigError, rollback_kubernetes.KubernetesError) as error:
        print(f"enja rollback: {error}", file=sys.stderr)
        return 2
    print(message)
    return 0


def _continuous(args: argparse.Namespace) -> int:
    from enja.pipeline import continuous, data, history
    from enja.pipeline.layout import OutputLayout

    config = _config(args, "continuous")
    if config is None:
        return 2
    layout = OutputLayout(args.output_dir, config)
    if os.path.exists(layout.metadata_path):
        print(f"enja continuous: {args.output_dir} already holds a pipeline's history; "
              "give a new --output-dir", file=sys.stderr)
        return 2
    try:
        source_root = data.resolve_data_root(args.data_root)
        records = continuous.play(config, source_root, args.output_dir, args.port,
                                  args.spans or sorted(continuous.source_spans(source_root, config)))
    except _user_errors() as error:
        print(f"enja continuous: {error}", file=sys.stderr)
        return 2
    print(history.format_table(records))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from enja.models import evaluation

    try:
        report = evaluation.evaluate_saved_model(args.model, args.src, args.ref, beam_width=args.beam)
    except evaluation.EvaluationError as error:
        print(f"enja evaluate: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False))
    return 0


def _attention(args: argparse.Namespace) -> int:
    if folder := _missing_folder(args.out):
        print(f"enja attention: no folder {folder} to write {args.out} in", file=sys.stderr)
        return 2
    from enja.models import attention_plot  # TensorFlow: only once the arguments are known good

    try:
        note = attention_plot.plot_attention(args.model, args.sentence, args.out)
    except OSError as error:  # no SavedModel in --model: TensorFlow's message names the folder
        print(f"enja attention: {error}", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    print(args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from enja.serving import flags
    from enja.serving.batching_config import BatchingParametersError
    from enja.serving.model_config import ModelConfigError
    from enja.serving.server import ListenError

    try:
        flags.serve(args)
    except (ModelConfigError, ListenError, BatchingParametersError) as error:
        print(f"enja serve: {error}", file=sys.stderr)
        return 2
    return 0


def _download_data(args: argparse.Namespace) -> int:
    from enja.pipeline import data

    try:
        print(data.download(args.dest))
    except OSError as error:  # a --dest that cannot be written, or no network
        print(f"enja download-data: {error}", file=sys.stderr)
        return 1
    return 0


def _translate(args: argparse.Namespace) -> int:
    from enja.serving import client

    return client.main(args)


def build_parser() -> argparse.ArgumentParser:
    from enja.pipeline import configs
    from enja.serving import flags as serving_flags
    from enja.serving.config import ServingConfig

    parser = argparse.ArgumentParser(prog="enja", description=__doc__)
    parser.add_argument("--verbose", action="store_true",
                        help="also show what TensorFlow, gRPC and absl log from C++ (start-up notes, "
                             "CUDA probes, their errors) and TensorFlow's deprecation notices")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the local TFX pipeline and push a model")
    run.add_argument("--preset", choices=sorted(configs.PRESETS), default=configs.DEFAULT_PRESET)
    run.add_argument("--data-root", help="corpus folder (default: $ENJA_DATA_ROOT)")
    run.add_argument("--output-dir", default="pipeline_output")
    add_settings_argument(run)
    run.set_defaults(handler=_run)

    continuous = commands.add_parser(
        "continuous", help="play the spans arriving one by one, a run each, the server up throughout")
    continuous.add_argument("--preset", choices=sorted(configs.PRESETS), default="continuous")
    continuous.add_argument("--data-root", help="corpus folder with the spans (default: $ENJA_DATA_ROOT)")
    continuous.add_argument("--output-dir", default="continuous_output",
                            help="a new folder for this scenario's runs (default: %(default)s)")
    continuous.add_argument("--port", type=int, default=8500, help="the model server's gRPC port")
    continuous.add_argument("--spans", type=int, nargs="+", metavar="SPAN",
                            help="the spans to arrive, in order (default: every span of the corpus)")
    add_settings_argument(continuous)
    continuous.set_defaults(handler=_continuous)

    kubeflow = commands.add_parser(
        "kubeflow", help="compile the pipeline for Kubeflow Pipelines v2 (see docs/kubeflow.md)")
    kubeflow.add_argument("--output", required=True, metavar="FILE",
                          help="the PipelineSpec to write: YAML, or a PipelineJob for a .json name")
    kubeflow.add_argument("--preset", choices=sorted(configs.PRESETS), default=configs.DEFAULT_PRESET)
    # Defaults from enja.pipeline.kubeflow_v2_runner, which the handler imports: it loads TFX.
    kubeflow.add_argument("--image", help="the image every component runs in "
                                           "(default: enja-nmt:latest, the Dockerfile's local tag)")
    kubeflow.add_argument("--pipeline-root", required=True, metavar="URI",
                          help="where runs write their artifacts, e.g. gs://BUCKET/root")
    kubeflow.add_argument("--data-root", metavar="URI",
                          help="the corpus as the containers read it (default: $ENJA_DATA_ROOT)")
    kubeflow.add_argument("--serving-dir", metavar="URI",
                          help="where Pusher pushes (default: <pipeline-root>/serving_model/<model>)")
    kubeflow.add_argument("--model-config-file", metavar="URI",
                          help="the TF Serving model config file the servers poll, if any: the "
                               "pipeline's baseline is the version it serves (default: the newest)")
    kubeflow.add_argument("--state-dir", metavar="URI",
                          help="where runs keep the data gate's reference (default: <pipeline-root>/state)")
    kubeflow.add_argument("--schema-file", metavar="URI",
                          help="the reviewed schema as the containers read it "
                               "(default: the copy the image's installed enja package ships)")
    add_settings_argument(kubeflow)
    kubeflow.set_defaults(handler=_kubeflow)

    lineage = commands.add_parser("history", help="what each run did, from ML Metadata")
    lineage.add_argument("--output-dir", default="pipeline_output")
    lineage.add_argument("--json", action="store_true", help="one JSON object a run")
    lineage.set_defaults(handler=_history)

    page = commands.add_parser("report", help="the history as one self-contained HTML page")
    page.add_argument("--output-dir", default="pipeline_output")
    page.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    page.add_argument("--data-root", help="corpus folder whose first dev sentences are sampled "
                                          "(default: $ENJA_DATA_ROOT, else the warm-up sentences)")
    page.set_defaults(handler=_report)

    rollback = commands.add_parser(
        "rollback", help="serve an earlier pushed version, or the newest again")
    target = rollback.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=int, metavar="VERSION", help="pin the model to this version")
    target.add_argument("--latest", action="store_true", help="follow the newest version again")
    rollback.add_argument("--output-dir", default="pipeline_output")
    rollback.add_argument("--model-config-file", metavar="FILE",
                          help="the model config file the servers read "
                               "(default: <output-dir>/models.config)")
    rollback.add_argument("--serving-dir", metavar="DIR",
                          help="the folder of numbered versions the servers load "
                               "(default: the one under <output-dir>)")
    rollback.add_argument("--model-name", default=ServingConfig.model_name)
    rollback.add_argument("--configmap-manifest", metavar="PATH",
                          help="also write the ConfigMap that `kubectl apply -k` builds from the model "
                               "config file's folder (serving/deploy/), for `kubectl apply -f PATH`")
    rollback.add_argument("--kubernetes-configmap", metavar="[NAMESPACE/]NAME",
                          help="also patch this ConfigMap's models.config through the Kubernetes API, "
                               "e.g. enja-serving-config (namespace: the kubeconfig context's, or the pod's)")
    rollback.add_argument("--kubeconfig", metavar="FILE",
                          help="for --kubernetes-configmap (default: the pod's service account in a "
                               "cluster, else $KUBECONFIG or ~/.kube/config)")
    rollback.set_defaults(handler=_rollback)

    evaluate = commands.add_parser("evaluate", help="translate a file and score it with BLEU")
    evaluate.add_argument("--model", required=True, help="SavedModel directory")
    evaluate.add_argument("--src", required=True, help="English file, one sentence a line")
    evaluate.add_argument("--ref", required=True, help="Japanese reference file")
    evaluate.add_argument("--beam", type=_positive_int, metavar="N",
                          help="beam width (default: the model's serving_default decoding)")
    evaluate.set_defaults(handler=_evaluate)

    attention = commands.add_parser("attention", help="plot a translation's attention weights")
    attention.add_argument("--model", required=True, help="SavedModel directory")
    attention.add_argument("--out", required=True, help="PNG file to write")
    attention.add_argument("sentence", help="English sentence, tokenized like the corpus")
    attention.set_defaults(handler=_attention)

    serve = commands.add_parser(
        "serve", help="serve pushed models over TF Serving's gRPC and REST APIs",
        description="A local stand-in for tensorflow_model_server, with its flags: the same command line "
                    "serves the same models the same way (see serving/flags.py).")
    serving_flags.add_arguments(serve)
    serve.set_defaults(handler=_serve)

    translate = commands.add_parser("translate", help="translate through a model server")
    translate.add_argument("--server", default="localhost:8500")
    translate.add_argument("--model-name", default=ServingConfig.model_name)
    translate.add_argument("--timeout", type=float, default=30.0,
                           help="seconds each request may take, including the retries (with exponential backoff) "
                                "of one the server refuses as UNAVAILABLE or RESOURCE_EXHAUSTED "
                                "(default: %(default)s)")
    translate.add_argument("--wait", type=float, default=0.0,
                           help="seconds to wait for the server to come up first")
    translate.add_argument("text", nargs="*", help="sentences (default: stdin, one a line)")
    translate.set_defaults(handler=_translate)
    download = commands.add_parser("download-data", help="fetch the public corpus")
    download.add_argument("--dest", default="data/small_parallel_enja")
    download.set_defaults(handler=_download_data)
    return parser


# Read once, when TensorFlow and gRPC load. Level 3 hides TensorFlow's C++ log lines up to ERROR:
# on a machine without a GPU, XLA's "Unable to register cuDNN/cuFFT/cuBLAS factory" at import, the
# CUDA and TensorRT probes, oneDNN's notes (errors that stop a command reach Python as exceptions).
# gRPC's core logs through absl: ERROR spares its INFO lines (on a fork, say) and with them the
# "All log messages before absl::InitializeLog()" banner absl prints before the first one.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}


class _NoDeprecationNotices(logging.Filter):
    """Drops TensorFlow's notices that a library calls a deprecated TensorFlow function (TFMA
    does, reading evaluations): about the library's code, nothing the user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is deprecated" not in str(record.msg)


_NO_DEPRECATION_NOTICES = _NoDeprecationNotices()


def _quiet_library_noise() -> None:
    """Hides the libraries' chatter, which says nothing about this run. Our own logs stay, and
    Python's warnings and TensorFlow's Python-side ones but the few named here."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # an operator's own setting wins
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")  # "Python 3.10 is old"
    logging.getLogger("tensorflow").addFilter(_NO_DEPRECATION_NOTICES)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # imports no TensorFlow, so the quieting is in time
    if not args.verbose:
        _quiet_library_noise()
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
