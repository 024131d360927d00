"""The `enja` command line: its commands, their arguments and help.

Parsing imports no TensorFlow, so `enja --help` is instant and the terminal can be quieted
before TensorFlow loads (cli/terminal.py).
"""
from __future__ import annotations

import argparse


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

    lineage = commands.add_parser("history", help="what each run did, from ML Metadata")
    lineage.add_argument("--output-dir", default="pipeline_output")
    lineage.add_argument("--json", action="store_true", help="one JSON object a run")

    page = commands.add_parser("report", help="the history as one self-contained HTML page")
    page.add_argument("--output-dir", default="pipeline_output")
    page.add_argument("--out", required=True, metavar="FILE.html", help="the page to write")
    page.add_argument("--data-root", help="corpus folder whose first dev sentences are sampled "
                                          "(default: $ENJA_DATA_ROOT, else the warm-up sentences)")

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

    evaluate = commands.add_parser("evaluate", help="translate a file and score it with BLEU")
    evaluate.add_argument("--model", required=True, help="SavedModel directory")
    evaluate.add_argument("--src", required=True, help="English file, one sentence a line")
    evaluate.add_argument("--ref", required=True, help="Japanese reference file")
    evaluate.add_argument("--beam", type=_positive_int, metavar="N",
                          help="beam width (default: the model's serving_default decoding)")

    attention = commands.add_parser("attention", help="plot a translation's attention weights")
    attention.add_argument("--model", required=True, help="SavedModel directory")
    attention.add_argument("--out", required=True, help="PNG file to write")
    attention.add_argument("sentence", help="English sentence, tokenized like the corpus")

    serve = commands.add_parser(
        "serve", help="serve pushed models over TF Serving's gRPC and REST APIs",
        description="A local stand-in for tensorflow_model_server, with its flags: the same command line "
                    "serves the same models the same way (see serving/flags.py).")
    serving_flags.add_arguments(serve)

    translate = commands.add_parser("translate", help="translate through a model server")
    translate.add_argument("--server", default="localhost:8500")
    translate.add_argument("--model-name", default=ServingConfig.model_name)
    translate.add_argument("--timeout", type=float, default=30.0,
                           help="seconds each request may take, including the retries (with exponential "
                                "backoff) of one the server refuses as UNAVAILABLE or RESOURCE_EXHAUSTED "
                                "(default: %(default)s)")
    translate.add_argument("--wait", type=float, default=0.0,
                           help="seconds to wait for the server to come up first")
    translate.add_argument("text", nargs="*", help="sentences (default: stdin, one a line)")
    download = commands.add_parser("download-data", help="fetch the public corpus")
    download.add_argument("--dest", default="data/small_parallel_enja")
    return parser
