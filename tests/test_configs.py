"""Command-line overrides of the presets, and the learning-rate schedules a preset selects."""
from __future__ import annotations

import math

import pytest

from enja.models.config import TrainingConfig
from enja.models.training import trainer
from enja.pipeline import configs


def test_overrides_change_only_the_named_settings():
    base = configs.PRESETS["quick"]
    config = configs.with_overrides(base, [
        "model.bidirectional=true", "training.epochs=2", "training.label_smoothing=0.1",
        "model.attention=bahdanau"])
    assert config.model.bidirectional is True and config.model.attention == "bahdanau"
    assert config.training.epochs == 2 and config.training.label_smoothing == 0.1
    assert config.model.units == base.model.units and config.vocab == base.vocab


@pytest.mark.parametrize(("setting", "message"), [
    ("epochs=2", "group.field=value"),
    ("optimizer.epochs=2", "group.field=value"),
    ("training.epoch=2", "no setting 'epoch'"),
    ("training.epochs=two", "takes a int"),
    ("model.bidirectional=yes", "true or false"),
    ("serving.warmup_sentences=hi", "cannot be set"),
    ("beam.runner=gpu", "beam.runner is 'gpu'; choose one of in_memory, multi_process"),
    ("model.attention=dot", "model.attention is 'dot'; choose one of none, luong, bahdanau"),
    ("training.learning_rate_schedule=linear",
     "training.learning_rate_schedule is 'linear'; choose one of constant, cosine"),
    ("model.units=255", "model.bidirectional needs even model.units, not 255"),
])
def test_bad_overrides_name_the_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        configs.with_overrides(configs.PRESETS["quick"], [setting])


def test_cosine_schedule_falls_from_the_base_rate_towards_zero():
    training = TrainingConfig(epochs=4, learning_rate=1.0,
                                      learning_rate_schedule="cosine")
    rates = [trainer.learning_rate(training, epoch) for epoch in range(4)]
    assert rates[0] == 1.0 and rates == sorted(rates, reverse=True) and rates[-1] > 0
    assert rates[2] == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    constant = TrainingConfig(learning_rate=0.5, learning_rate_schedule="constant")
    assert trainer.learning_rate(constant, 3) == 0.5


@pytest.mark.parametrize(("setting", "message"), [
    ("training.epoch=2", "training has no setting 'epoch'"),
    ("model.attention=dot", "model.attention is 'dot'; choose one of none, luong, bahdanau"),
    ("model.architecture=rnn", "model.architecture is 'rnn'; choose one of lstm, transformer"),
    ("training.precision=float16", "training.precision is 'float16'; choose one of float32, "
                                   "mixed_bfloat16"),
])
def test_enja_run_rejects_a_bad_override_before_running(tmp_path, capsys, setting, message):
    from enja.pipeline import cli

    status = cli.main(["run", "--preset", "smoke", "--output-dir", str(tmp_path), "--set", setting])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
