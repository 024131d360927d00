"""`enja continuous`: data arrives span by span, each run checks it, and serving follows.

It plays the life of the pipeline on one machine. A model server (`enja serve` on the
output folder's model config file) runs throughout. The corpus's training spans arrive
one at a time in a landing folder beside the dev set, as new data would, and after each
arrival the pipeline runs: it checks the span, trains (warm-starting from the model in
production once there is one), compares the candidate with that model, checks that it
serves, and pushes it only if it is at least as good. After each push the server is
asked until it answers with the new version.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from enja.components import parallel_corpus, spans
from enja.models.training.progress import duration
from enja.pipeline import configs, local_runner
from enja.pipeline.operations import history
from enja.serving import contract, model_config
from enja.serving.predict_api import predict_request

SERVER_START_TIMEOUT_S = 120.0
ADOPTION_TIMEOUT_S = 300.0


def source_spans(source_root: str, config: configs.PipelineConfig) -> dict[int, str]:
    """{span: source-side file} of the training spans in the corpus folder."""
    return spans.available_spans(source_root, config.data.train_pattern, glob.glob)


def arrive(source_file: str, landing: str) -> None:
    """Copies a span's two files into the landing folder, each appearing whole."""
    for path in (source_file, parallel_corpus.target_path(source_file, "en", "ja")):
        partial = os.path.join(landing, f".partial-{os.path.basename(path)}")
        shutil.copyfile(path, partial)
        os.replace(partial, os.path.join(landing, os.path.basename(path)))


def prepare_landing(source_root: str, landing: str) -> None:
    """A landing folder holding the dev set and no training span yet."""
    if os.path.exists(landing):
        shutil.rmtree(landing)
    os.makedirs(landing)
    for name in ("dev.en", "dev.ja"):
        shutil.copyfile(os.path.join(source_root, name), os.path.join(landing, name))


class ServerProcess:
    """`enja serve` on a model config file, as a separate process, logging to a file."""

    def __init__(self, layout: local_runner.OutputLayout, model_name: str, port: int) -> None:
        self.address = f"127.0.0.1:{port}"
        self.model_name = model_name
        # Both live as long as the server: stop() ends the process and closes the log.
        self._log = open(os.path.join(layout.output_dir, "server.log"), "ab")  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "enja.pipeline.cli", "serve",
             "--model_config_file", layout.model_config_file,
             "--model_config_file_poll_wait_seconds", "1", "--file-system-poll-wait-seconds", "1",
             "--port", str(port)], stdout=self._log, stderr=subprocess.STDOUT)
        self._channel = grpc.insecure_channel(self.address)

    def wait_until_listening(self) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=SERVER_START_TIMEOUT_S)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"the model server did not start on {self.address}; "
                               f"see {self._log.name}") from None

    def translate(self, sentences: Sequence[str]) -> tuple[int, list[str]]:
        """(answering version, translations) of one Predict call."""
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        response = stub.Predict(predict_request(sentences, self.model_name), timeout=60)
        translations = tf.make_ndarray(response.outputs[contract.TRANSLATIONS_OUTPUT])
        return response.model_spec.version.value, [text.decode("utf-8") for text in translations]

    def wait_for_version(self, version: int, sentences: Sequence[str]) -> list[str]:
        """Asks until the server answers with `version`; returns that answer's translations."""
        deadline = time.monotonic() + ADOPTION_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                answered, translations = self.translate(sentences)
                if answered == version:
                    return translations
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:  # nothing served before the first push
                    raise
            time.sleep(1.0)
        raise RuntimeError(f"the model server did not adopt version {version} within "
                           f"{ADOPTION_TIMEOUT_S:.0f} s; see {self._log.name}")

    def stop(self) -> None:
        self._channel.close()
        self._process.terminate()
        self._process.wait(timeout=60)
        self._log.close()


def play(config: configs.PipelineConfig, source_root: str, output_dir: str, port: int,
         arriving: Sequence[int], report: Callable[[str], None] = print) -> list[history.RunRecord]:
    """One pipeline run per arriving span, the server up throughout; returns the history."""
    available = source_spans(source_root, config)
    missing = [span for span in arriving if span not in available]
    if missing:
        raise spans.SpanError(f"{source_root} has no span {missing[0]} of "
                              f"{config.data.train_pattern!r}; it has {sorted(available)}")
    layout = local_runner.OutputLayout(output_dir, config)
    landing = os.path.join(layout.output_dir, "incoming")
    prepare_landing(source_root, landing)
    os.makedirs(layout.serving_model_dir, exist_ok=True)
    model_config.write_initial_model_config(
        layout.model_config_file, config.serving.model_name, layout.serving_model_dir)
    server = ServerProcess(layout, config.serving.model_name, port)
    try:
        server.wait_until_listening()
        report(f"Model server on {server.address} (log: {os.path.join(layout.output_dir, 'server.log')})")
        started = time.monotonic()
        for number, span in enumerate(arriving, start=1):
            arrive(available[span], landing)
            report(f"Span {span} arrived ({number} of {len(arriving)}); running the pipeline.")
            record = local_runner.run(data_root=landing, output_dir=output_dir, config=config)
            report(history.outcome(record, layout.serving_model_dir))
            per_run = (time.monotonic() - started) / number
            if number < len(arriving):
                report(f"{number} of {len(arriving)} runs in {duration(per_run * number)}; the rest "
                       f"about {duration(per_run * (len(arriving) - number))} more.")
            if record.pushed_version is not None:
                sentences = list(config.serving.warmup_sentences)
                translations = server.wait_for_version(record.pushed_version, sentences)
                report(f"The server answers with version {record.pushed_version}:")
                for sentence, translation in zip(sentences, translations, strict=True):
                    report(f"  {sentence} → {translation}")
    finally:
        server.stop()
    return history.history(layout.metadata_connection())

