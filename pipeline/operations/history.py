"""`enja history`: what each run of the pipeline did, read back from ML Metadata.

One record a run: the spans it read, the data verdict, how training started and how
long it took, the candidate's and the baseline's dev BLEU (overall and by source-length
bucket), the blessing and why not, the serving check, the pushed version, and the
rollbacks that followed it. `enja report` renders the same records as a page.

A run whose Trainer was cached (only the decoding changed, say) or kept its base model's
weights (the same, after a blessed run: models/training/warm_start.py) trained nothing: its
training facts are those of the run that trained the candidate's weights, which
`trained_by` names.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from enja.components import names
from enja.models.training import training_summary
from enja.pipeline.operations import lineage

# Components in pipeline order, with the step a run stops at when one fails or is skipped.
STEPS = ((names.EXAMPLE_GEN, "reading the corpus"), (names.STATISTICS_GEN, "statistics"),
         (names.DATA_GATE, "data validation"), (names.TRANSFORM, "Transform"),
         (names.TRAINER, "training"), (names.SERVING_EXPORT, "the serving export"),
         (names.EVALUATOR, "evaluation"), (names.INFRA_CHECK, "the serving check"),
         (names.PUSHER, "push"))


@dataclasses.dataclass
class Rollback:
    at: str
    to_version: int | None  # None: back to following the newest version
    from_version: int | None


@dataclasses.dataclass
class RunRecord:
    run_id: str
    started: str
    minutes: float
    spans: list[int] | None = None
    train_pairs: int | None = None
    data_passed: bool | None = None
    data_anomalies: list[str] = dataclasses.field(default_factory=list)
    reference_spans: list[int] | None = None
    start_mode: str | None = None  # "warm", "cold" or "reused"
    start_reason: str | None = None
    warm_start_from: str | None = None  # the run id of the base model
    warm_start_from_version: int | None = None
    training_minutes: float | None = None
    trained_by: str | None = None  # a Trainer that trained nothing: the run that trained the weights
    loss: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_bleu: list[float] = dataclasses.field(default_factory=list)  # greedy dev BLEU per epoch
    candidate_bleu: float | None = None
    baseline_bleu: float | None = None
    # {"candidate": {bucket: BLEU}, "baseline": {bucket: BLEU}}
    bleu_by_length: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    blessed: bool | None = None  # the Evaluator's verdict
    not_blessed_reason: str | None = None
    infra_passed: bool | None = None
    infra_detail: str | None = None
    pushed_version: int | None = None
    candidate_model: str | None = None
    stopped_at: str | None = None  # the step the run did not get past
    rollbacks: list[Rollback] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)  # recorded files since deleted


def _iso(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc) \
        .isoformat(timespec="seconds")


def data_problems(gate: lineage.NodeRun) -> list[str]:
    """The anomalies a DataGate stopped the run for ([] if it did not stop it)."""
    code, message = gate.execution_result() or (0, "")
    return message.splitlines() if code == names.DATA_GATE_STOPPED_CODE else []


def _base_model_id(trainer: lineage.NodeRun, pushed_models: dict[int, int]) -> int | None:
    """The ServingExport model the Trainer's base model was: the one pushed as the version
    ProductionModel found in production."""
    base = trainer.input(names.BASE_MODEL)
    version = base and lineage.custom(base, names.SERVED_VERSION)
    return pushed_models.get(version) if version is not None else None


def _summary(trainer: lineage.NodeRun) -> dict[str, Any] | None:
    """The Trainer's training summary; None if its files were deleted since the run."""
    try:
        return training_summary.read(trainer.output(names.MODEL_RUN).uri)
    except FileNotFoundError:
        return None


def _training_run(store: lineage.Lineage, trainer: lineage.NodeRun,
                  pushed_models: dict[int, int]) -> str | None:
    """The run that trained the weights of `trainer`'s model: the run that wrote its model if
    `trainer` was cached, and if that Trainer kept its base model's weights (a `reused`
    start), the run that trained those, through the ServingExport that exported them."""
    while True:
        if trainer.execution.last_known_state == lineage.Execution.CACHED:
            trainer = store.producer(trainer.output(names.MODEL).id)
            if trainer is None:
                return None
        start = (_summary(trainer) or {}).get("start", {})
        if start.get("mode") != training_summary.REUSED:
            return store.run_of(trainer.execution.id)
        base_model_id = _base_model_id(trainer, pushed_models)
        serving_export = base_model_id and store.producer(base_model_id)
        trainer = serving_export and store.producer(serving_export.input(names.TRAINED_MODEL).id)
        if trainer is None:
            return None


def _record(run: lineage.PipelineRun, store: lineage.Lineage, pushed_models: dict[int, int]) -> RunRecord:
    record = RunRecord(run.run_id, _iso(run.started_ms),
                       round((run.finished_ms - run.started_ms) / 60000, 2))
    nodes = run.nodes
    record.stopped_at = next((step for node_id, step in STEPS
                              if node_id not in nodes or not nodes[node_id].succeeded), None)

    examples = nodes.get(names.EXAMPLE_GEN)
    if examples and examples.output(names.EXAMPLES):
        artifact = examples.output(names.EXAMPLES)
        record.spans = [int(span) for span in lineage.custom(artifact, names.SPANS, [])]
        record.train_pairs = int(sum(pair["pairs"] for pair in lineage.custom(
            artifact, names.FILE_PAIRS, []) if pair["split"] == "train"))

    gate = nodes.get(names.DATA_GATE)
    if gate and gate.succeeded:
        record.data_passed = True
        record.reference_spans = [int(span) for span in lineage.custom(
            gate.output(names.ANOMALIES), names.REFERENCE_SPANS, [])]
    elif gate and (problems := data_problems(gate)):
        record.data_passed, record.data_anomalies = False, problems
        record.stopped_at = "data validation"

    trainer = nodes.get(names.TRAINER)
    if trainer and trainer.succeeded:
        trained_by = _training_run(store, trainer, pushed_models)
        record.trained_by = trained_by if trained_by != run.run_id else None
        summary = _summary(trainer)
        if summary is None:
            record.missing.append(trainer.output(names.MODEL_RUN).uri)
            summary = {}
        start = summary.get("start", {})
        record.start_mode, record.start_reason = start.get("mode"), start.get("reason")
        if "train_seconds" in summary:
            record.training_minutes = round(summary["train_seconds"] / 60, 2)
        record.loss, record.val_loss = summary.get("loss", []), summary.get("val_loss", [])
        record.val_bleu = summary.get("val_bleu", [])
        base_model_id = _base_model_id(trainer, pushed_models)
        if base_model_id is not None and record.start_mode == training_summary.WARM:
            producer = store.producer(base_model_id)
            record.warm_start_from = producer and store.run_of(producer.execution.id)
            record.warm_start_from_version = lineage.custom(
                trainer.input(names.BASE_MODEL), names.SERVED_VERSION)

    serving_export = nodes.get(names.SERVING_EXPORT)
    if serving_export and serving_export.succeeded:
        record.candidate_model = os.path.join(serving_export.output(names.MODEL).uri, "Format-Serving")

    evaluator = nodes.get(names.EVALUATOR)
    if evaluator and evaluator.succeeded:
        evaluation = evaluator.output(names.EVALUATION)
        record.candidate_bleu = lineage.custom(evaluation, names.CANDIDATE_BLEU)
        record.baseline_bleu = lineage.custom(evaluation, names.BASELINE_BLEU)
        record.bleu_by_length = lineage.custom(evaluation, names.BLEU_BY_LENGTH, {})
        record.blessed = lineage.custom(evaluator.output(names.BLESSING), names.BLESSED) == 1
        record.not_blessed_reason = (None if record.blessed else
                                     lineage.custom(evaluation, names.NOT_BLESSED_REASON) or None)

    infra = nodes.get(names.INFRA_CHECK)
    if infra and infra.succeeded:
        blessing = infra.output(names.BLESSING)
        record.infra_passed = lineage.custom(blessing, names.BLESSED) == 1
        record.infra_detail = lineage.custom(blessing, names.REASON)

    pusher = nodes.get(names.PUSHER)
    pushed_model = pusher and pusher.output(names.PUSHED_MODEL)
    if pusher and pusher.succeeded and lineage.custom(pushed_model, names.PUSHED) == 1:
        record.pushed_version = int(lineage.custom(pushed_model, names.PUSHED_VERSION))
    return record


def _pushed_models(store: lineage.Lineage) -> dict[int, int]:
    """{pushed version: the id of the model artifact pushed as it}."""
    return dict(store.pushes())


def history(connection_config: metadata_store_pb2.ConnectionConfig) -> list[RunRecord]:
    """Every run, oldest first, each with the rollbacks made after it."""
    store = lineage.Lineage(connection_config)
    pushed_models = _pushed_models(store)
    runs = store.runs()
    records = [_record(run, store, pushed_models) for run in runs]
    starts = [run.started_ms for run in runs]
    for rollback in store.rollbacks():
        made = rollback.create_time_since_epoch
        earlier = [record for record, started in zip(records, starts, strict=True) if started <= made]
        if earlier:
            earlier[-1].rollbacks.append(Rollback(
                _iso(made), lineage.custom(rollback, names.TO_VERSION),
                lineage.custom(rollback, names.FROM_VERSION)))
    return records


def latest_run(connection_config: metadata_store_pb2.ConnectionConfig) -> RunRecord:
    """The newest run's record alone: what `enja run` reports when a run ends."""
    store = lineage.Lineage(connection_config)
    return _record(store.runs()[-1], store, _pushed_models(store))


def to_json(records: list[RunRecord]) -> str:
    """One JSON object a line, a run each."""
    return "\n".join(json.dumps(dataclasses.asdict(record), ensure_ascii=False) for record in records)


def outcome(record: RunRecord, serving_model_dir: str) -> str:
    """What a run ended with, in words, for the person who started it."""
    if record.pushed_version is not None:
        baseline = ("no baseline" if record.baseline_bleu is None
                    else f"baseline {record.baseline_bleu:.2f}")
        return (f"Pushed version {record.pushed_version} (dev BLEU {record.candidate_bleu:.2f}, "
                f"{baseline}; {record.start_mode} start): "
                f"{os.path.join(serving_model_dir, str(record.pushed_version))}")
    if record.data_passed is False:
        return "\n".join(["Data validation stopped the run; nothing was trained or pushed:",
                          *(f"  {problem}" for problem in record.data_anomalies)])
    if record.blessed is False:
        return f"Not blessed, so nothing was pushed: {record.not_blessed_reason}."
    if record.infra_passed is False:
        return f"The serving check failed, so nothing was pushed: {record.infra_detail}."
    return f"The run stopped at {record.stopped_at or 'the push'}; nothing was pushed."


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def short_outcome(record: RunRecord) -> str:
    if record.pushed_version is not None:
        return f"pushed {record.pushed_version}"
    if record.stopped_at == "data validation":
        return "stopped: data"
    if record.blessed is False:
        return "not blessed"
    if record.infra_passed is False:
        return "failed serving check"
    return f"stopped: {record.stopped_at}" if record.stopped_at else "not pushed"


def format_table(records: list[RunRecord]) -> str:
    """A fixed-width table a run a row, then the anomalies, reasons and rollbacks in words."""
    header = ("run", "started (UTC)", "min", "spans", "start", "train min", "BLEU", "baseline",
              "outcome")
    rows = []
    notes = []
    numbers = {record.run_id: number for number, record in enumerate(records, start=1)}
    for number, record in enumerate(records, start=1):
        start = (f"warm<{record.warm_start_from_version or record.warm_start_from}"
                 if record.start_mode == training_summary.WARM else record.start_mode)
        training = "cached" if record.trained_by else _cell(record.training_minutes, "{:.1f}")
        rows.append((str(number), record.started.replace("T", " ")[:19], f"{record.minutes:.1f}",
                     ",".join(map(str, record.spans or [])) or "-", _cell(start), training,
                     _cell(record.candidate_bleu, "{:.2f}"), _cell(record.baseline_bleu, "{:.2f}"),
                     short_outcome(record)))
        if record.trained_by:
            how = ("kept its base model's weights" if record.start_mode == training_summary.REUSED
                   else "was cached")
            notes.append(f"run {number}: the Trainer {how}; run "
                         f"{numbers.get(record.trained_by, record.trained_by)} trained the weights")
        notes += [f"run {number}: data anomaly: {problem}" for problem in record.data_anomalies]
        if record.not_blessed_reason:
            notes.append(f"run {number}: not blessed: {record.not_blessed_reason}")
        if record.infra_passed is False:
            notes.append(f"run {number}: serving check failed: {record.infra_detail}")
        notes += [f"run {number}: {path} is gone, and what it held is unknown"
                  for path in record.missing]
        for rollback in record.rollbacks:
            to = (f"version {rollback.to_version}" if rollback.to_version is not None
                  else "the newest version")
            notes.append(f"after run {number}: rollback at {rollback.at} to {to} "
                         f"(was serving {_cell(rollback.from_version)})")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    return "\n".join(lines + (["", *notes] if notes else []))
