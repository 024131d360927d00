"""`enja report`: the page from hand-made run records and the real tiny model, opened in chromium."""
from __future__ import annotations

import html
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image

from enja.pipeline import cli, data
from enja.pipeline.operations import report
from enja.pipeline.operations.history import Rollback, RunRecord
from enja.serving.config import ServingConfig
from enja.serving.served import Served
from support.corpus import TINY_PAIRS

CHROMIUM = shutil.which("chromium")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANOMALY = "ja_script: value <script>alert(1)</script> & 'latin' is not in the schema"
NOT_BLESSED = "BLEU changed by -1.10 against the baseline; the least allowed is +0.00"
SENTENCES = [en for en, _ in TINY_PAIRS[:5]]


def _records(model_dir: str) -> list[RunRecord]:
    """A cold first push, a run below its baseline, a run the data gate stopped, a warm push
    followed by a rollback, and a run that failed before anything was recorded."""
    cold = RunRecord(
        "run-a", "2025-01-06T09:00:00+00:00", 24.3, spans=[0], train_pairs=10000, data_passed=True,
        start_mode="cold", start_reason="no blessed model to start from", training_minutes=18.2,
        loss=[4.1, 3.2, 2.8, 2.6], val_loss=[3.6, 3.1, 2.9, 2.85], val_bleu=[9.0, 17.5, 22.1, 24.6],
        candidate_bleu=25.1,
        bleu_by_length={"candidate": {"01-06": 31.0, "07-08": 26.5, "09-10": 22.0, "11+": 18.4}},
        blessed=True, infra_passed=True, infra_detail="answered the warm-up requests",
        pushed_version=1, candidate_model=model_dir)
    below = RunRecord(
        "run-b", "2025-01-07T09:00:00+00:00", 12.0, spans=[0, 1], data_passed=True,
        reference_spans=[0], start_mode="warm", start_reason="vocabularies match",
        warm_start_from="run-a", warm_start_from_version=1, training_minutes=8.0,
        loss=[2.7, 2.6], val_loss=[2.9, 2.95], candidate_bleu=24.0, baseline_bleu=25.1,
        blessed=False, not_blessed_reason=NOT_BLESSED, stopped_at="the serving check")
    stopped = RunRecord(
        "run-c", "2025-01-08T09:00:00+00:00", 1.5, spans=[0, 1, 2], data_passed=False,
        data_anomalies=[ANOMALY, "en_tokens: drifted by 0.31 against spans 0,1 (at most 0.2)"],
        reference_spans=[0, 1], stopped_at="data validation")
    warm = RunRecord(
        "run-d", "2025-01-09T09:00:00+00:00", 14.8, spans=[0, 1, 3], data_passed=True,
        reference_spans=[0, 1], start_mode="warm", start_reason="vocabularies match",
        warm_start_from="run-a", warm_start_from_version=1, training_minutes=9.1,
        loss=[2.6, 2.4], val_loss=[2.8, 2.7], candidate_bleu=27.4, baseline_bleu=25.1,
        bleu_by_length={"candidate": {"01-06": 33.2, "07-08": 28.9, "09-10": 24.1, "11+": 19.0},
                        "baseline": {"01-06": 31.0, "07-08": 26.5, "09-10": 22.0, "11+": 18.4}},
        blessed=True, infra_passed=True, pushed_version=2,
        candidate_model=model_dir,
        rollbacks=[Rollback("2025-01-10T12:00:00+00:00", to_version=1, from_version=2)])
    crashed = RunRecord("run-e", "2025-01-11T09:00:00+00:00", 0.2, stopped_at="reading the corpus")
    return [cold, below, stopped, warm, crashed]


def _chromium(page: str, profile: str, *args: str) -> str:
    result = subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *args, page],
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_page_opens_in_chromium_with_runs_charts_and_translations(exported_model_dir, tmp_path):
    page = tmp_path / "page" / "report.html"
    page.parent.mkdir()
    report.write_report(_records(exported_model_dir), SENTENCES, Served(1, exported_model_dir), str(page),
                        source="/runs")
    assert [path.name for path in page.parent.iterdir()] == ["report.html"]  # no temporary left

    dom = _chromium(page.as_uri(), str(tmp_path / "profile"), "--dump-dom")
    assert re.findall(r'<tr class="run" id="run-(\d+)"', dom) == ["1", "2", "3", "4", "5"]
    assert html.escape(ANOMALY, quote=False) in dom and "<script" not in dom
    assert NOT_BLESSED in dom
    assert "to version 1 (was serving 2)" in dom and "stopped: data" in dom
    assert "Version 1, pushed by run 1" in dom  # the served version, rolled back to, not the newest
    assert all(ja in dom for _, ja in TINY_PAIRS[:5])
    sources = re.findall(r'<img [^>]*src="([^"]*)"', dom)
    assert len(sources) == 4  # BLEU per run, by length, training curves, attention
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "labelled by vocabulary id" not in dom, \
        "no CJK font found: apt-get install -y fonts-noto-cjk"

    screenshot = tmp_path / "screenshot.png"
    _chromium(page.as_uri(), str(tmp_path / "profile"), f"--screenshot={screenshot}",
              "--window-size=1280,3000")
    pixels = image.imread(str(screenshot))
    assert pixels.shape[:2] == (3000, 1280)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 100  # not blank


def test_empty_history_missing_fields_and_a_vanished_model_say_so():
    assert "No runs recorded yet" in report.render([], SENTENCES, None)
    gone = RunRecord("run-x", "2025-01-06T09:00:00+00:00", 3.0, pushed_version=4,
                     candidate_model="/nowhere/Format-Serving")
    page = report.render([RunRecord("run-y", "2025-01-05T09:00:00+00:00", 0.1), gone], SENTENCES,
                         Served(4, "/nowhere/4"))
    for message in ("No run has been evaluated yet", "No run has BLEU by source length yet",
                    "No run has trained yet", "no longer on disk"):
        assert message in page
    assert "<img" not in page


def test_samples_come_from_dev_else_from_the_warmup_sentences(tmp_path, monkeypatch):
    monkeypatch.delenv("ENJA_DATA_ROOT", raising=False)
    assert data.sample_sentences(None) == list(ServingConfig.warmup_sentences)
    (tmp_path / "dev.en").write_text("".join(f"{en}\n" for en, _ in TINY_PAIRS), encoding="utf-8")
    (tmp_path / "dev.ja").write_text("".join(f"{ja}\n" for _, ja in TINY_PAIRS), encoding="utf-8")
    assert data.sample_sentences(str(tmp_path)) == [en for en, _ in TINY_PAIRS[:5]]


def test_report_command_without_pipeline_metadata_fails_in_one_line(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert cli.main(["report", "--output-dir", str(tmp_path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error == f"enja report: no pipeline has run in {tmp_path}\n"
    assert not out.exists()
