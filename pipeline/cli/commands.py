"""What each `enja` command does, once its arguments are parsed: one handler a command.

A handler imports the package that does the work inside its body, so that a command loads
only what it needs (`enja rollback` no TensorFlow) and a bad argument is refused before any
slow import. A user's mistake is one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

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


def _config(args: argparse.Namespace, command: str) -> configs.PipelineConfig | None:
    """The preset with the --set overrides, or None after saying what is wrong."""
    from enja.pipeline import configs

    try:
        return configs.with_overrides(configs.PRESETS[args.preset], args.settings)
    except ValueError as error:
        print(f"enja {command}: --set: {error}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    from enja.pipeline import local_runner
    from enja.pipeline.layout import OutputLayout
    from enja.pipeline.operations import history

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
    from enja.pipeline import configs
    from enja.pipeline.layout import OutputLayout
    from enja.pipeline.operations import history

    layout = OutputLayout(args.output_dir, configs.PRESETS[configs.DEFAULT_PRESET])
    if not os.path.exists(layout.metadata_path):
        print(f"enja history: no pipeline has run in {args.output_dir}", file=sys.stderr)
        return 2
    records = history.history(layout.metadata_connection())
    print(history.to_json(records) if args.json else history.format_table(records))
    return 0


def _report(args: argparse.Namespace) -> int:
    from enja.pipeline import configs, data
    from enja.pipeline.layout import OutputLayout

    config = configs.PRESETS[configs.DEFAULT_PRESET]
    layout = OutputLayout(args.output_dir, config)
    if not os.path.exists(layout.metadata_path):
        print(f"enja report: no pipeline has run in {args.output_dir}", file=sys.stderr)
        return 2
    if folder := _missing_folder(args.out):
        print(f"enja report: no folder {folder} to write {args.out} in", file=sys.stderr)
        return 2
    from enja.pipeline.operations import history, report  # TensorFlow: only once the arguments are known good
    from enja.serving.served import find_served

    try:
        sentences = data.sample_sentences(args.data_root)
    except _user_errors() as error:
        print(f"enja report: {error}", file=sys.stderr)
        return 2
    served = find_served(layout.serving_model_dir, layout.model_config_file, config.serving.model_name)
    report.write_report(history.history(layout.metadata_connection()), sentences, served, args.out,
                        source=layout.output_dir)
    print(args.out)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from enja.pipeline import configs
    from enja.pipeline.layout import OutputLayout
    from enja.pipeline.operations import rollback, rollback_kubernetes
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
    from enja.pipeline import continuous, data
    from enja.pipeline.layout import OutputLayout
    from enja.pipeline.operations import history

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
    from enja.models.evaluation import saved_model_bleu

    try:
        report = saved_model_bleu.evaluate_saved_model(args.model, args.src, args.ref, beam_width=args.beam)
    except saved_model_bleu.EvaluationError as error:
        print(f"enja evaluate: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False))
    return 0


def _attention(args: argparse.Namespace) -> int:
    if folder := _missing_folder(args.out):
        print(f"enja attention: no folder {folder} to write {args.out} in", file=sys.stderr)
        return 2
    from enja.models.evaluation import attention_plot  # TensorFlow: only once the arguments are known good

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


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "continuous": _continuous, "kubeflow": _kubeflow, "history": _history,
    "report": _report, "rollback": _rollback, "evaluate": _evaluate, "attention": _attention,
    "serve": _serve, "translate": _translate, "download-data": _download_data,
}
