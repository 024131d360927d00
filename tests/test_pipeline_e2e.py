"""The whole local pipeline with the smoke preset: a model is pushed, a bad one (a Transformer
decoding nothing) is not, and decoding changes re-export that Transformer without training it
again and push it, before and after it was blessed."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.metadata import sqlite_metadata_connection_config

from enja.components import names
from enja.models.training import training_summary
from enja.pipeline import cli, configs, local_runner
from enja.pipeline.operations import history, lineage
from enja.serving import contract

Execution = metadata_store_pb2.Execution


def _artifacts(metadata_path: str, type_name: str) -> list[metadata_store_pb2.Artifact]:
    with metadata.Metadata(sqlite_metadata_connection_config(metadata_path)) as store:
        return sorted(store.store.get_artifacts_by_type(type_name), key=lambda a: a.id)


def test_smoke_pipeline_pushes_a_model_that_translates(smoke_run):
    layout = smoke_run["layout"]
    pushed = smoke_run["pushed"]
    assert os.path.dirname(pushed) == layout.serving_model_dir
    assert os.path.basename(pushed).isdigit()  # a TF Serving version folder
    assert tf.io.gfile.exists(os.path.join(pushed, "assets.extra", "tf_serving_warmup_requests"))

    translate = tf.saved_model.load(pushed).signatures[contract.SERVING_SIGNATURE]
    outputs = translate(text=tf.constant(["i like cats ."]))
    translation = outputs[contract.TRANSLATIONS_OUTPUT].numpy()[0].decode()
    assert translation.strip() and translation.isprintable()
    assert outputs[contract.SCORES_OUTPUT].numpy()[0] <= 0

    # ExampleGen's output is the Examples artifact that carries the dropped-pair count.
    [examples] = [artifact for artifact in _artifacts(layout.metadata_path, "Examples")
                  if names.DROPPED_EMPTY_PAIRS in artifact.custom_properties]
    assert examples.custom_properties[names.DROPPED_EMPTY_PAIRS].int_value == 0
    assert examples.custom_properties["span"].int_value == 4  # the smoke preset reads the latest span
    record = smoke_run["record"]
    assert record.spans == [4] and record.train_pairs == 300 and record.data_passed
    assert record.start_mode == "cold" and record.start_reason == "no model in production yet"
    assert record.blessed and record.infra_passed
    assert set(record.bleu_by_length["candidate"]) == {"01-06", "07-08", "09-10", "11+"}
    [blessing] = _artifacts(layout.metadata_path, "ModelBlessing")
    assert blessing.custom_properties["blessed"].int_value == 1

    [model_run] = _artifacts(layout.metadata_path, "ModelRun")
    summary = training_summary.read(model_run.uri)
    epochs = configs.PRESETS["smoke"].training.epochs
    assert summary["epochs_run"] == summary["kept_epoch"] == epochs  # no early stopping
    assert len(summary["val_loss"]) == epochs and summary["loss"][-1] < summary["loss"][0]
    assert summary["tokens_per_second"] > 0 and summary["tokens_per_epoch"] > 300


def _translation(saved_model: str) -> str:
    translate = tf.saved_model.load(saved_model).signatures[contract.SERVING_SIGNATURE]
    return translate(text=tf.constant(["i like cats ."]))[contract.TRANSLATIONS_OUTPUT].numpy()[0].decode()


def _attention_over_real_source_tokens_sums_to_one(saved_model: str) -> None:
    loaded = tf.saved_model.load(saved_model)
    attention = loaded.signatures[contract.ATTENTION_SIGNATURE](text=tf.constant(["i like cats ."]))
    weights = attention[contract.ATTENTION_OUTPUT].numpy()[0]
    emitted = attention[contract.TARGET_IDS_OUTPUT].numpy()[0] != 0
    # Over the 4 real source tokens (of the padded 16), the cross-attention sums to one.
    np.testing.assert_allclose(weights[emitted, :4].sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[:, 4:] == 0)


# A one-block Transformer: what differs from the LSTM is built and exercised, in a third of the time.
TRANSFORMER_SETTINGS = ["model.architecture=transformer", "model.layers=1", "model.feedforward_dim=64"]
LET_THROUGH = ["evaluation.bleu_floor=0", "evaluation.regression_tolerance=100"]


def _set_args(settings: list[str]) -> list[str]:
    """`enja run`'s arguments for settings: `--set` before each."""
    return [arg for setting in settings for arg in ("--set", setting)]


def test_a_silent_transformer_is_not_pushed_and_decoding_changes_push_it_without_training(smoke_run):
    """After the LSTM of `smoke_run`: a Transformer with a decoding that emits nothing, then
    `enja run --set model.architecture=transformer …` with the smoke decoding, which only
    re-exports it (the Trainer is cached), then beam width 2, after that run's push (the
    Trainer keeps the served model's weights). The Evaluator lets it through whatever its dev BLEU
    (floor 0, any tolerance against the LSTM's): the point is that a Transformer is pushed and
    served."""
    layout = smoke_run["layout"]
    versions_before = sorted(os.listdir(layout.serving_model_dir))
    transformer = configs.with_overrides(configs.PRESETS["smoke"], TRANSFORMER_SETTINGS)
    silent = configs.replace(transformer, decoding={"max_output_length": 0})

    record = local_runner.run(output_dir=smoke_run["output_dir"], config=silent)

    assert record.pushed_version is None and record.blessed is False
    # The blessed LSTM is the Trainer's base model; its weights cannot start a Transformer.
    assert record.start_mode == "cold" and record.trained_by is None
    assert record.start_reason == ("the base model has architecture='lstm'; "
                                   "this config architecture='transformer'")
    assert "BLEU" in record.not_blessed_reason
    assert sorted(os.listdir(layout.serving_model_dir)) == versions_before
    blessings = _artifacts(layout.metadata_path, "ModelBlessing")
    assert [b.custom_properties["blessed"].int_value for b in blessings] == [1, 0]
    assert _translation(record.candidate_model) == ""

    # The smoke decoding again, with the same data and base model: only the decoding differs.
    assert cli.main(["run", "--preset", "smoke", "--output-dir", smoke_run["output_dir"],
                     *_set_args(TRANSFORMER_SETTINGS + LET_THROUGH)]) == 0

    again = history.latest_run(layout.metadata_connection())
    runs = lineage.Lineage(layout.metadata_connection()).runs()
    *_, silent_run, run = runs
    trainer = run.nodes["Trainer"]
    assert trainer.execution.last_known_state == Execution.CACHED
    assert trainer.output("model").id == silent_run.nodes["Trainer"].output("model").id
    for component in ("ServingExport", "Evaluator", "InfraCheck", "Pusher"):
        assert run.nodes[component].execution.last_known_state == Execution.COMPLETE, component
    assert run.nodes["ServingExport"].input("trained_model").id == trainer.output("model").id
    assert again.trained_by == record.run_id and again.start_mode == "cold"
    assert again.val_bleu == record.val_bleu  # the training facts of the run that trained it
    assert (f"run {len(runs)}: the Trainer was cached; run {len(runs) - 1} trained the weights"
            in history.format_table(history.history(layout.metadata_connection())))
    assert again.candidate_model != record.candidate_model
    *_, transformer_run = _artifacts(layout.metadata_path, "ModelRun")
    summary = training_summary.read(transformer_run.uri)
    assert summary["loss"][-1] < summary["loss"][0]

    # Pushed after the TF1 loader served it (InfraCheck), as TF Serving will.
    assert again.blessed and again.infra_passed and again.pushed_version is not None
    pushed = layout.pushed_dir(again.pushed_version)
    translation = _translation(pushed)  # the same weights, the new decoding
    assert translation.strip() and translation.isprintable()
    _attention_over_real_source_tokens_sums_to_one(pushed)

    # That model is blessed, so it is the next run's base model and the Trainer is not cached;
    # trained from these very inputs, its weights are kept rather than trained again.
    assert cli.main(["run", "--preset", "smoke", "--output-dir", smoke_run["output_dir"],
                     *_set_args(TRANSFORMER_SETTINGS + LET_THROUGH + ["decoding.beam_width=2"])]) == 0

    kept = history.latest_run(layout.metadata_connection())
    *_, kept_run = lineage.Lineage(layout.metadata_connection()).runs()
    assert kept_run.nodes["Trainer"].execution.last_known_state == Execution.COMPLETE
    assert kept.start_mode == "reused" and kept.trained_by == record.run_id
    assert kept.val_bleu == record.val_bleu and kept.pushed_version is not None
    assert (f"run {len(runs) + 1}: the Trainer kept its base model's weights; run {len(runs) - 1} "
            "trained the weights" in history.format_table(history.history(layout.metadata_connection())))
    assert _translation(layout.pushed_dir(kept.pushed_version)).strip()
