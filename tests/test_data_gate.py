"""The data gate on real spans and on spans made bad on purpose, with the reviewed schema."""
from __future__ import annotations

import os
import pathlib
import re
import shutil

import apache_beam as beam
import pytest
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from enja.components import data_gate, example_gen, names
from enja.components.spans import SpanWindow
from support.corpus import BAD_SPANS, BEAM_ARGS, real_pairs, write_dev, write_span
from support.paths import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "pipeline" / "schema.pbtxt"
PAIRS = 300  # the smoke preset's sample of each span


def _context(tmp: pathlib.Path) -> base_beam_executor.BaseBeamExecutor.Context:
    return base_beam_executor.BaseBeamExecutor.Context(
        make_beam_pipeline_fn=lambda: beam.Pipeline(argv=BEAM_ARGS), tmp_dir=str(tmp / "tmp"))


class Gate:
    """ExampleGen → StatisticsGen → DataGate executors over one corpus folder, run after run."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.corpus = root / "corpus"
        self.corpus.mkdir()
        write_dev(self.corpus, 100)
        self.schema = standard_artifacts.Schema()
        self.schema.uri = str(root / "schema")
        os.makedirs(self.schema.uri)
        shutil.copy(SCHEMA_FILE, self.schema.uri)
        self.reference_file = str(root / "state" / "reference.json")
        self.runs = 0

    @property
    def reference(self) -> dict | None:
        return data_gate.read_reference(self.reference_file)

    def check(self, span: int) -> list[str]:
        """Checks the latest span like a pipeline run would; returns the problems found.

        The gate itself points the reference file at the last passing check's statistics.
        """
        self.runs += 1
        run = self.root / f"run{self.runs}"
        examples = standard_artifacts.Examples()
        examples.uri = str(run / "examples")
        exec_properties = dict(example_gen.ParallelCorpusExampleGen(
            input_base=str(self.corpus), train_pattern="train.en.{SPAN:3}",
            window=SpanWindow(spans=1)).exec_properties)
        example_gen.Executor(_context(run)).Do({}, {"examples": [examples]}, exec_properties)
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = str(run / "statistics")
        statistics_executor.Executor(_context(run)).Do(
            {"examples": [examples]}, {"statistics": [statistics]}, {"exclude_splits": "[]"})
        anomalies = standard_artifacts.ExampleAnomalies()
        anomalies.uri = str(run / "anomalies")
        accepted = data_gate.AcceptedStatistics()
        accepted.uri = str(run / "accepted")
        inputs = {"statistics": [statistics], "schema": [self.schema], "examples": [examples]}
        result = data_gate.Executor().Do(
            inputs, {"anomalies": [anomalies], "accepted_statistics": [accepted]},
            {"max_empty_fraction": 0.01, data_gate.REFERENCE_FILE_KEY: self.reference_file})
        self.anomalies = anomalies
        if result is None:
            assert self.reference["uri"] == accepted.uri
            return []
        assert result.execution_result.code != 0
        return result.execution_result.result_message.splitlines()


def _accepted_spans(gate: Gate) -> list[int]:
    return gate.reference["spans"]


@pytest.fixture(name="gate")
def _gate(tmp_path) -> Gate:
    return Gate(tmp_path)


def test_real_spans_pass_one_after_another_and_become_the_reference(gate):
    for span in range(3):
        write_span(gate.corpus, span, *real_pairs(span, PAIRS))
        assert gate.check(span) == []
        assert _accepted_spans(gate) == [span]
    assert gate.anomalies.get_json_value_custom_property(names.REFERENCE_SPANS) == [1]
    # TFDV's own record of each split, where TFX's tools look for it.
    assert os.path.exists(os.path.join(artifact_utils.get_split_uri([gate.anomalies], "train"),
                                       data_gate.ANOMALIES_FILE))


# Each spoiled span, with what the gate must say about it ({span}: where the span is).
BAD_SPAN_PROBLEMS = {
    "swapped": [r"train span {span}: en_script: .*japanese", r"train span {span}: ja_script: .*latin",
                r"train span {span}: en_script: The Linfty distance"],
    "long": [r"train span {span}: en_tokens: Unexpectedly large value",
             r"train span {span}: en_tokens: .*Jensen-Shannon"],
    "mostly_empty_ja": [r"train span {span}: 270 of 300 lines of train\.ja\.00{span} are empty; at most 1% "
                        r"may be"],
}


def test_bad_spans_stop_the_run_saying_what_and_where(gate):
    write_span(gate.corpus, 0, *real_pairs(0, PAIRS))
    assert gate.check(0) == []
    for span, (spoil, patterns) in enumerate(BAD_SPAN_PROBLEMS.items(), start=1):
        write_span(gate.corpus, span, *BAD_SPANS[spoil](*real_pairs(span, PAIRS)))

        problems = "\n".join(gate.check(span))

        for pattern in patterns:
            assert re.search(pattern.format(span=span), problems), (spoil, problems)
        # The bad span does not become the reference: span 0's statistics stay it.
        assert _accepted_spans(gate) == [0], spoil
    good = len(BAD_SPAN_PROBLEMS) + 1
    write_span(gate.corpus, good, *real_pairs(good, PAIRS))
    assert gate.check(good) == []
    assert gate.anomalies.get_json_value_custom_property(names.REFERENCE_SPANS) == [0]


def test_a_bad_first_span_leaves_no_reference_and_the_next_is_checked_on_the_schema(gate):
    write_span(gate.corpus, 0, *BAD_SPANS["swapped"](*real_pairs(0, PAIRS)))
    assert gate.check(0)
    assert gate.reference is None
    write_span(gate.corpus, 1, *real_pairs(1, PAIRS))
    assert gate.check(1) == []
    assert gate.anomalies.get_json_value_custom_property(names.REFERENCE_SPANS) == []
