"""The `enja` command: run the pipeline, evaluate a model, serve it, translate with it."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Callable, Sequence


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    """`--set GROUP.FIELD=VALUE` (repeatable) into `args.settings`, for `configs.with_overrides`."""
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="GROUP.FIELD=VALUE",
                        help="override one setting of the preset (pipeline/configs.py), "
                             "e.g. --set training.epochs=2; repeatable")


def _run(args: argparse.Namespace) -> int:
    from enja.pipeline import configs, local_runner

    try:
        config = configs.with_overrides(configs.PRESETS[args.preset], args.settings)
    except ValueError as error:
        print(f"enja run: --set: {error}", file=sys.stderr)
        return 2
    pushed = local_runner.run(data_root=args.data_root, output_dir=args.output_dir,
                              config=config)
    if pushed is None:
        print("No model was blessed, so nothing was pushed.")
        return 1
    print(pushed)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from enja.models import evaluation

    report = evaluation.evaluate_saved_model(args.model, args.src, args.ref,
                                             beam_width=args.beam)
    print(json.dumps(report, ensure_ascii=False))
    return 0


def _attention(args: argparse.Namespace) -> int:
    from enja.models import attention_plot

    note = attention_plot.plot_attention(args.model, args.sentence, args.out)
    if note:
        print(note, file=sys.stderr)
    print(args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from enja.serving import server
    from enja.serving.request import RequestLimits

    server.serve(
        model_base_path=args.model_base_path,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        enable_batching=args.enable_batching,
        batching_parameters_file=args.batching_parameters_file,
        poll_interval_s=args.file_system_poll_wait_seconds,
        limits=RequestLimits(max_batch_size=args.max_request_sentences,
                             max_chars=args.max_sentence_chars),
    )
    return 0


def _download_data(args: argparse.Namespace) -> int:
    from enja.pipeline import data

    print(data.download(args.dest))
    return 0


def _translate(args: argparse.Namespace) -> int:
    from enja.serving import client

    return client.main(args)


def build_parser() -> argparse.ArgumentParser:
    from enja.pipeline import configs
    from enja.serving.config import ServingConfig

    parser = argparse.ArgumentParser(prog="enja", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the local TFX pipeline and push a model")
    run.add_argument("--preset", choices=sorted(configs.PRESETS), default=configs.DEFAULT_PRESET)
    run.add_argument("--data-root", help="corpus folder (default: $ENJA_DATA_ROOT)")
    run.add_argument("--output-dir", default="pipeline_output")
    add_settings_argument(run)
    run.set_defaults(handler=_run)

    evaluate = commands.add_parser("evaluate", help="translate a file and score it with BLEU")
    evaluate.add_argument("--model", required=True, help="SavedModel directory")
    evaluate.add_argument("--src", required=True, help="English file, one sentence a line")
    evaluate.add_argument("--ref", required=True, help="Japanese reference file")
    evaluate.add_argument("--beam", type=int, metavar="N",
                          help="beam width (default: the model's serving_default decoding)")
    evaluate.set_defaults(handler=_evaluate)

    attention = commands.add_parser("attention", help="plot a translation's attention weights")
    attention.add_argument("--model", required=True, help="SavedModel directory")
    attention.add_argument("--out", required=True, help="PNG file to write")
    attention.add_argument("sentence", help="English sentence, tokenized like the corpus")
    attention.set_defaults(handler=_attention)

    serve = commands.add_parser("serve", help="serve pushed models over TF Serving's gRPC API")
    serve.add_argument("--model-base-path", required=True)
    serve.add_argument("--model-name", default=ServingConfig.model_name)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument("--enable-batching", action=argparse.BooleanOptionalAction, default=True)
    serve.add_argument("--batching-parameters-file",
                       help="TF Serving BatchingParameters text file, "
                            "e.g. serving/deploy/batching_parameters.txt")
    serve.add_argument("--file-system-poll-wait-seconds", type=float, default=1.0)
    serve.add_argument("--max-sentence-chars", type=int, default=1000)
    serve.add_argument("--max-request-sentences", type=int, default=256)
    serve.set_defaults(handler=_serve)

    translate = commands.add_parser("translate", help="translate through a model server")
    translate.add_argument("--server", default="localhost:8500")
    translate.add_argument("--model-name", default=ServingConfig.model_name)
    translate.add_argument("--timeout", type=float, default=30.0)
    translate.add_argument("--wait", type=float, default=0.0,
                           help="seconds to wait for the server to come up first")
    translate.add_argument("text", nargs="*", help="sentences (default: stdin, one a line)")
    translate.set_defaults(handler=_translate)
    download = commands.add_parser("download-data", help="fetch the public corpus")
    download.add_argument("--dest", default="data/small_parallel_enja")
    download.set_defaults(handler=_download_data)
    return parser


def _quiet_library_noise() -> None:
    """Hides start-up chatter that says nothing about this run (set before TF loads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # CUDA/TensorRT probes on a CPU box
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_library_noise()
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
