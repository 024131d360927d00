"""Continuous validation end to end with the smoke preset and a real model server.

Spans arrive one by one in a landing folder; after each the whole pipeline runs. Run 1
pushes version A; run 2's candidate is trained badly on purpose and must not replace A;
run 3's span is spoiled and must stop at the data gate; run 4 warm-starts from A and is
pushed while clients keep calling the server; then a rollback brings A back.
"""
from __future__ import annotations

import json
import time

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from enja.components import production_model
from enja.pipeline import cli, configs, local_runner
from enja.serving import model_config
from enja.serving.server import ModelServer, ServerOptions
from support.corpus import BAD_SPANS, real_pairs, write_dev, write_span
from support.serving import Hammer, text_request

SMOKE = configs.PRESETS["smoke"]
# Clearly below a baseline: trained from scratch for one epoch only. With no floor, only the
# comparison with the model in production can refuse it.
BAD_CANDIDATE = configs.with_overrides(
    SMOKE, ["training.warm_start=false", "training.epochs=1", "evaluation.bleu_floor=0"])
PAIRS = 300


def _answering_version(stub) -> int:
    return stub.Predict(text_request(["i like cats ."]), timeout=30).model_spec.version.value


def _wait_until_answering(stub, version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _answering_version(stub) == version:
                return
        except grpc.RpcError:
            pass  # nothing served yet
        assert time.monotonic() < deadline, f"the server never answered with version {version}"
        time.sleep(0.2)


def test_only_better_models_are_served_and_a_rollback_brings_one_back(tmp_path, capsys):
    landing = tmp_path / "incoming"
    landing.mkdir()
    write_dev(landing, PAIRS)
    layout = local_runner.OutputLayout(str(tmp_path / "output"), SMOKE)
    model_config.write_initial_model_config(layout.model_config_file, SMOKE.serving.model_name,
                                            layout.serving_model_dir)
    server = ModelServer.from_model_config_file(
        layout.model_config_file, ServerOptions(port=0, poll_interval_s=0.2), poll_wait_s=0.2)
    server.start()

    def run(span: int, config: configs.PipelineConfig, spoil: str | None = None):
        pairs = real_pairs(span, PAIRS)
        write_span(landing, span, *(BAD_SPANS[spoil](*pairs) if spoil else pairs))
        return local_runner.run(data_root=str(landing), output_dir=layout.output_dir, config=config)

    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            first = run(0, SMOKE)
            version_a = first.pushed_version
            assert version_a is not None and first.start_mode == "cold"
            _wait_until_answering(stub, version_a)

            bad = run(1, BAD_CANDIDATE)
            assert bad.pushed_version is None and bad.blessed is False
            assert bad.candidate_bleu < bad.baseline_bleu
            assert "against the baseline" in bad.not_blessed_reason
            assert _answering_version(stub) == version_a

            spoiled = run(2, SMOKE, spoil="swapped")
            assert spoiled.data_passed is False and spoiled.stopped_at == "data validation"
            assert any(problem.startswith("train span 2: en_script")
                       for problem in spoiled.data_anomalies)
            assert spoiled.start_mode is None and spoiled.pushed_version is None
            assert _answering_version(stub) == version_a

            with Hammer(stub, threads=4) as clients:
                good = run(3, SMOKE)
                assert good.pushed_version is not None
                clients.wait_for_version(good.pushed_version)
            assert clients.failures == []
            assert {version_a, good.pushed_version} <= set(clients.versions)
            assert good.blessed and good.start_mode == "warm"
            assert good.warm_start_from == first.run_id and good.warm_start_from_version == version_a
            assert good.baseline_bleu is not None and good.reference_spans == [1]

            assert cli.main(["rollback", "--output-dir", layout.output_dir,
                             "--to", str(version_a)]) == 0
            _wait_until_answering(stub, version_a)
            # What the next run's ProductionModel gives its Trainer and Evaluator.
            assert production_model.find_served(layout.serving_model_dir, layout.model_config_file,
                                                SMOKE.serving.model_name).version == version_a

            capsys.readouterr()
            assert cli.main(["history", "--output-dir", layout.output_dir, "--json"]) == 0
            runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [r["spans"] for r in runs] == [[0], [1], [2], [3]]
            assert [r["pushed_version"] for r in runs] == [version_a, None, None, good.pushed_version]
            assert [r["blessed"] for r in runs] == [True, False, None, True]
            assert [r["warm_start_from"] for r in runs] == [None, None, None, first.run_id]
            assert runs[2]["data_passed"] is False and runs[2]["data_anomalies"]
            assert runs[1]["candidate_bleu"] < runs[1]["baseline_bleu"]
            assert runs[3]["rollbacks"] == [{"at": runs[3]["rollbacks"][0]["at"],
                                             "to_version": version_a,
                                             "from_version": good.pushed_version}]
            assert all(r["run_id"] for r in runs)

            assert cli.main(["rollback", "--output-dir", layout.output_dir, "--latest"]) == 0
            _wait_until_answering(stub, good.pushed_version)
    finally:
        server.stop()
