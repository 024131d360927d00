"""DataGate: the data check that can stop a run before anything is trained.

TFX's ExampleValidator records anomalies but stops nothing, and cannot compare a new
span with earlier data. The gate validates each split's statistics against the
reviewed schema and, for drift, against the statistics of the last window that
passed; it also rejects a file pair whose side is mostly empty (ExampleGen drops such
pairs, so no statistic shows them). Each anomaly is a line naming the span, the
feature and the problem.

Anomalies fail the gate's execution with those lines as its result message (stored
in ML Metadata, shown by `enja history` and by Kubeflow's UI), which ends the run;
the pipeline orders Transform, and so training, after the gate. Failing rather than
skipping keeps the gate out of the inputs of later components, whose outputs stay
cached between runs on the same data.

A passing gate publishes its statistics (output `accepted_statistics`) and points the
reference file at them: the next run's reference. A failing one changes nothing, so the
reference stays the last window that passed and one bad span does not become the
yardstick for the next. The reference file is state the pipeline keeps at a URI it is
given, read by the executor at run time rather than resolved in ML Metadata, because
open-source Kubeflow Pipelines runs no resolver tasks; locally the gate's driver
fingerprints the file, so the cache never reuses a verdict reached against another
reference.
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.proto.orchestration import execution_result_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.experimental import simple_artifacts
from tfx.utils import io_utils

from enja.components import example_gen, external_state, names

ANOMALIES_FILE = "SchemaDiff.pb"  # per split, as TFX's ExampleValidator names it
REFERENCE_FILE_KEY = "reference_file"


# Statistics of a window that passed the gate. Laid out like ExampleStatistics
# (Split-<name>/ folders), its split names and spans in custom properties. TFX's generic
# `Statistics` type, a first-party type that TFX's Kubeflow container rebuilds (it
# rebuilds any other type by importing its title as a class path).
AcceptedStatistics = simple_artifacts.Statistics


def _as_statistics(uri: str, split_names: str) -> standard_artifacts.ExampleStatistics:
    """An ExampleStatistics view of accepted statistics, for TFX's readers."""
    view = standard_artifacts.ExampleStatistics()
    view.uri = uri
    view.split_names = split_names
    return view


def read_reference(reference_file: str) -> dict[str, Any] | None:
    """{"uri", "split_names", "spans"} of the last accepted statistics; None before any."""
    if not fileio.exists(reference_file):
        return None
    with fileio.open(reference_file) as text:
        return json.loads(text.read())


def _point_reference(reference_file: str, accepted: types.Artifact) -> None:
    """Points the reference file at `accepted`, replacing it whole (a reader sees old or new)."""
    fileio.makedirs(os.path.dirname(reference_file))
    staging = reference_file + ".partial"
    with fileio.open(staging, "w") as out:
        json.dump({"uri": accepted.uri, "split_names": accepted.get_string_custom_property("split_names"),
                   "spans": example_gen.spans_read(accepted)}, out)
    fileio.rename(staging, reference_file, overwrite=True)


def _fingerprint(exec_properties: dict[str, Any]) -> str:
    return json.dumps(read_reference(exec_properties[REFERENCE_FILE_KEY]), sort_keys=True)


class DataGateSpec(types.ComponentSpec):
    PARAMETERS = {"max_empty_fraction": ExecutionParameter(type=float),
                  REFERENCE_FILE_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        names.EXAMPLES: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        names.ANOMALIES: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "accepted_statistics": ChannelParameter(type=AcceptedStatistics),
    }


def _reasons(anomalies: anomalies_pb2.Anomalies) -> list[tuple[str, str]]:
    """(feature or "dataset", description) of every anomaly TFDV found."""
    found = [(feature, reason.description or reason.short_description)
             for feature, info in sorted(anomalies.anomaly_info.items())
             for reason in info.reason]
    found += [("dataset", reason.description or reason.short_description)
              for reason in anomalies.dataset_anomaly_info.reason]
    return found


def _where(split: str, file_pairs: list[example_gen.FilePair]) -> str:
    """How a message names a split: by its spans when it has them."""
    spans = [pair.span for pair in file_pairs if pair.split == split and pair.span is not None]
    if not spans:
        return f"{split} split"
    return f"{split} span {spans[0]}" if len(spans) == 1 else f"{split} spans {spans[0]}-{spans[-1]}"


def empty_side_problems(file_pairs: list[example_gen.FilePair], max_fraction: float) -> list[str]:
    """One line per file whose share of empty lines exceeds `max_fraction`."""
    problems = []
    for pair in file_pairs:
        lines = pair.pairs + pair.dropped_empty
        for path, empty in ((pair.source, pair.empty_source), (pair.target, pair.empty_target)):
            if lines and empty / lines > max_fraction:
                problems.append(f"{pair.describe()}: {empty:,} of {lines:,} lines of "
                                f"{os.path.basename(path)} are empty; at most {max_fraction:.0%} may be")
    return problems


def _accept(statistics: types.Artifact, accepted: types.Artifact, spans: list[int]) -> None:
    """Copies the statistics into the accepted-statistics artifact."""
    accepted.set_string_custom_property("split_names", statistics.split_names)
    accepted.set_json_value_custom_property(names.SPANS, spans)
    destination = _as_statistics(accepted.uri, statistics.split_names)
    for split in artifact_utils.decode_split_names(statistics.split_names):
        source_dir = artifact_utils.get_split_uri([statistics], split)
        destination_dir = artifact_utils.get_split_uri([destination], split)
        fileio.makedirs(destination_dir)
        for name in fileio.listdir(source_dir):
            fileio.copy(os.path.join(source_dir, name), os.path.join(destination_dir, name), True)


def stopped(problems: list[str]) -> execution_result_pb2.ExecutorOutput:
    """The failed execution that stops the run, its message one line per anomaly."""
    return execution_result_pb2.ExecutorOutput(execution_result=execution_result_pb2.ExecutionResult(
        code=names.DATA_GATE_STOPPED_CODE, result_message="\n".join(problems)))


class Executor(base_executor.BaseExecutor):
    """Validates every split; stops the run on anomalies, else hands on the reference."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> execution_result_pb2.ExecutorOutput | None:
        statistics = artifact_utils.get_single_instance(input_dict["statistics"])
        examples = artifact_utils.get_single_instance(input_dict[names.EXAMPLES])
        accepted_before = read_reference(exec_properties[REFERENCE_FILE_KEY])
        reference = (None if accepted_before is None
                     else _as_statistics(accepted_before["uri"], accepted_before["split_names"]))
        schema = io_utils.SchemaReader().read(
            io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict["schema"])))
        file_pairs = example_gen.file_pairs_read(examples)
        anomalies_artifact = artifact_utils.get_single_instance(output_dict[names.ANOMALIES])
        anomalies_artifact.split_names = statistics.split_names
        anomalies_artifact.span = statistics.span

        problems = []
        reference_splits = artifact_utils.decode_split_names(reference.split_names) if reference else []
        for split in artifact_utils.decode_split_names(statistics.split_names):
            previous = (stats_artifact_utils.load_statistics(reference, split).proto()
                        if split in reference_splits else None)
            anomalies = tfdv.validate_statistics(
                stats_artifact_utils.load_statistics(statistics, split).proto(), schema,
                previous_statistics=previous)
            io_utils.write_bytes_file(
                os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE),
                anomalies.SerializeToString())
            problems += [f"{_where(split, file_pairs)}: {feature}: {description}"
                         for feature, description in _reasons(anomalies)]
        problems += empty_side_problems(file_pairs, exec_properties["max_empty_fraction"])
        if problems:
            for problem in problems:
                logging.error("Data anomaly: %s", problem)
            return stopped(problems)

        reference_spans = [] if accepted_before is None else accepted_before["spans"]
        anomalies_artifact.set_json_value_custom_property(names.REFERENCE_SPANS, reference_spans)
        accepted = artifact_utils.get_single_instance(output_dict["accepted_statistics"])
        _accept(statistics, accepted, example_gen.spans_read(examples))
        _point_reference(exec_properties[REFERENCE_FILE_KEY], accepted)
        logging.info("Data gate passed (drift measured against spans %s).", reference_spans or "none")
        return None


class Driver(external_state.FingerprintDriver):
    """Keys the local cache on the reference."""

    FINGERPRINT = staticmethod(_fingerprint)


class DataGate(base_component.BaseComponent):
    """Ends the run on data anomalies; see the module docstring."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
    DRIVER_CLASS = Driver

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 examples: types.BaseChannel, reference_file: str, max_empty_fraction: float = 0.01) -> None:
        """Builds the gate.

        Args:
          statistics: StatisticsGen's output for the window being checked.
          schema: The reviewed schema (ImportSchemaGen).
          examples: ExampleGen's output, for its per-file-pair counts and spans.
          reference_file: Where the gate keeps the reference, a URI (created on the
            first pass).
          max_empty_fraction: Largest share of empty lines a file may have.
        """
        super().__init__(DataGateSpec(
            statistics=statistics, schema=schema, examples=examples,
            reference_file=reference_file,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
            accepted_statistics=types.Channel(type=AcceptedStatistics),
            max_empty_fraction=max_empty_fraction))
