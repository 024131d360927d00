"""`enja report`: the pipeline's history as one self-contained HTML page.

`enja history` answers in a terminal; this page is for a person reviewing the runs: the
same records as a table, charts of BLEU and training, and what the served model
makes of a few sentences. Everything is inline (CSS, base64 PNG charts), so the file can
be mailed or archived and opens without network or the project's code.
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import math
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from enja.models.evaluation import attention_plot, saved_model_bleu
from enja.models.training import training_summary
from enja.pipeline.operations.history import Rollback, RunRecord, short_outcome
from enja.serving import contract, files
from enja.serving.served import Served

CANDIDATE_COLOUR, BASELINE_COLOUR = "tab:blue", "tab:gray"
# Noto CJK (fonts-noto-cjk) draws the Japanese; the generic family is the fallback.
STYLE = """
body { font-family: "Noto Sans CJK JP", sans-serif; margin: 24px; color: #222; font-size: 14px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 4px 6px;
  vertical-align: top; text-align: left; } th { background: #f2f2f2; }
td.number { text-align: right; } td.number, td.when { white-space: nowrap; } td ul { margin: 0; padding-left:
16px; }
.bad { color: #b00020; } .good { color: #006d2c; } .note { color: #666; font-size: 12px; }
img { max-width: 100%; display: block; margin: 8px 0; }
"""


def _text(value: object) -> str:
    """A record's value for the page: escaped, '–' for a missing one."""
    return "–" if value is None else html.escape(str(value))


def _when(iso: str) -> str:
    """An ISO time as history's table shows it: to the second, no zone (UTC)."""
    return iso.replace("T", " ")[:19]


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _items(texts: Sequence[str]) -> str:
    return ("<ul>" + "".join(f"<li>{_text(text)}</li>" for text in texts) + "</ul>") if texts else ""


def _image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return _png(buffer.getvalue(), alt)


def _png(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


def _start(record: RunRecord) -> str:
    if record.start_mode is None:
        return "–"
    start = _text(record.start_mode)
    if record.start_mode == training_summary.WARM:
        base = (f"version {record.warm_start_from_version}"
                if record.warm_start_from_version is not None else record.warm_start_from)
        start += f" from {_text(base)}"
    return start + (f'<div class="note">{_text(record.start_reason)}</div>'
                    if record.start_reason else "")


def _data_verdict(record: RunRecord) -> str:
    if record.data_passed is None:
        return "–"
    verdict = '<span class="good">passed</span>' if record.data_passed else '<span class="bad">failed</span>'
    if record.reference_spans:
        spans = ",".join(map(str, record.reference_spans))
        verdict += f'<div class="note">against spans {_text(spans)}</div>'
    return verdict + _items(record.data_anomalies)


def _blessing(record: RunRecord) -> str:
    if record.blessed is None:
        return "–"
    if record.blessed:
        return '<span class="good">yes</span>'
    return f'<span class="bad">no</span>: {_text(record.not_blessed_reason)}'


def _serving_check(record: RunRecord) -> str:
    if record.infra_passed is None:
        return "–"
    verdict = '<span class="good">passed</span>' if record.infra_passed else '<span class="bad">failed</span>'
    return verdict + (f": {_text(record.infra_detail)}" if record.infra_detail else "")


def _rollback(rollback: Rollback) -> str:
    to = "the newest version" if rollback.to_version is None else f"version {rollback.to_version}"
    was = "–" if rollback.from_version is None else rollback.from_version
    return f"{_when(rollback.at)}: to {to} (was serving {was})"


def _runs_table(records: Sequence[RunRecord]) -> str:
    header = ("run", "started (UTC)", "min", "spans", "start", "train min", "BLEU", "baseline",
              "data", "blessed", "serving check", "outcome", "rollbacks after")
    rows = []
    for number, record in enumerate(records, start=1):
        cells = (f'<td class="number">{number}</td>',
                 f'<td class="when">{_text(_when(record.started))}</td>',
                 f'<td class="number">{_number(record.minutes, 1)}</td>',
                 f"<td>{_text(','.join(map(str, record.spans or [])) or None)}</td>",
                 f"<td>{_start(record)}</td>",
                 f'<td class="number">{_number(record.training_minutes, 1)}</td>',
                 f'<td class="number">{_number(record.candidate_bleu, 2)}</td>',
                 f'<td class="number">{_number(record.baseline_bleu, 2)}</td>',
                 f"<td>{_data_verdict(record)}</td>", f"<td>{_blessing(record)}</td>",
                 f"<td>{_serving_check(record)}</td>", f"<td>{_text(short_outcome(record))}</td>",
                 f"<td>{_items([_rollback(rollback) for rollback in record.rollbacks])}</td>")
        rows.append(f'<tr class="run" id="run-{number}">{"".join(cells)}</tr>')
    head = "".join(f"<th>{name}</th>" for name in header)
    return f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _grouped_bars(axes: Axes, labels: Sequence[str], series: dict[str, tuple[list[float | None],
                                                                             str]]) -> None:
    """Side-by-side bars a label, each bar labelled with its value; None leaves a gap."""
    width = 0.8 / len(series)
    for index, (name, (values, colour)) in enumerate(series.items()):
        positions = np.arange(len(labels)) + (index - (len(series) - 1) / 2) * width
        bars = axes.bar(positions, [math.nan if value is None else value for value in values],
                        width, label=name, color=colour)
        axes.bar_label(bars, ["" if value is None else f"{value:.2f}" for value in values],
                       fontsize=8, padding=2)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel("dev BLEU")
    axes.legend(loc="upper left", fontsize=8, frameon=False)


def _bleu_chart(records: Sequence[RunRecord]) -> str:
    """Each run's candidate against its baseline; runs without a candidate say why."""
    if not any(record.candidate_bleu is not None for record in records):
        return "<p>No run has been evaluated yet.</p>"
    figure = Figure(figsize=(max(6.0, 1.2 * len(records) + 2), 3.6))
    axes = figure.add_subplot()
    labels = [f"run {number}" + ("\nnot blessed" if record.blessed is False else "")
              for number, record in enumerate(records, start=1)]
    _grouped_bars(axes, labels, {
        "candidate": ([record.candidate_bleu for record in records], CANDIDATE_COLOUR),
        "baseline": ([record.baseline_bleu for record in records], BASELINE_COLOUR)})
    top = max(value for record in records for value in (record.candidate_bleu, record.baseline_bleu)
              if value is not None)
    axes.set_ylim(0, max(top, 1.0) * 1.25)
    axes.set_xlim(-0.6, len(records) - 0.4)
    vertical = {"rotation": 90, "ha": "center", "fontsize": 8}
    for index, record in enumerate(records):  # the baseline's bar is at index + 0.2
        if record.candidate_bleu is None:
            axes.text(index, top / 2, short_outcome(record), va="center", color="#b00020", **vertical)
        elif record.baseline_bleu is None:
            axes.text(index + 0.2, top / 50, "no baseline", va="bottom", color="#666", **vertical)
    axes.set_title("dev BLEU of each run's candidate and its baseline", fontsize=10)
    return _image(figure, "dev BLEU per run")


def _length_chart(records: Sequence[RunRecord]) -> str:
    """BLEU by source-length bucket of the latest run that has it, against its baseline."""
    latest = next(((number, record) for number, record in reversed(list(enumerate(records, start=1)))
                   if record.bleu_by_length.get("candidate")), None)
    if latest is None:
        return "<p>No run has BLEU by source length yet.</p>"
    number, record = latest
    candidate = record.bleu_by_length["candidate"]
    baseline = record.bleu_by_length.get("baseline", {})
    buckets = sorted(set(candidate) | set(baseline))
    figure = Figure(figsize=(max(5.0, 1.1 * len(buckets) + 2), 3.4))
    axes = figure.add_subplot()
    series = {"candidate": ([candidate.get(bucket) for bucket in buckets], CANDIDATE_COLOUR)}
    if baseline:
        series["baseline"] = ([baseline.get(bucket) for bucket in buckets], BASELINE_COLOUR)
    _grouped_bars(axes, buckets, series)
    axes.set_ylim(0, max(*candidate.values(), *baseline.values(), 1.0) * 1.25)
    axes.set_xlabel("source length (tokens)")
    axes.set_title(f"run {number}: BLEU by source length", fontsize=10)
    return _image(figure, f"BLEU by source length, run {number}")


def _training_chart(records: Sequence[RunRecord]) -> str:
    """Loss, validation loss and greedy dev BLEU per epoch, a panel for each run that trained."""
    trained = [(number, record) for number, record in enumerate(records, start=1) if record.loss]
    if not trained:
        return "<p>No run has trained yet.</p>"
    columns = min(3, len(trained))
    rows = math.ceil(len(trained) / columns)
    figure = Figure(figsize=(4.0 * columns, 2.8 * rows), layout="constrained")
    panels = figure.subplots(rows, columns, sharey=True, squeeze=False).flat
    for (number, record), axes in zip(trained, panels, strict=False):  # the grid may have empty cells
        for name, values, style in (("loss", record.loss, "o-"), ("val_loss", record.val_loss, "s--")):
            axes.plot(range(1, len(values) + 1), values, style, label=name, markersize=3)
        axes.set_title(f"run {number} ({record.start_mode or '?'} start)", fontsize=10)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = axes.get_legend_handles_labels()
        if record.val_bleu:
            bleu_axes = axes.twinx()
            bleu_axes.plot(range(1, len(record.val_bleu) + 1), record.val_bleu, "^:",
                           color="tab:green", label="greedy dev BLEU", markersize=3)
            bleu_axes.tick_params(axis="y", labelcolor="tab:green", labelsize=8)
            more_handles, more_labels = bleu_axes.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        axes.legend(handles, labels, fontsize=8, frameon=False)
    for axes in panels:  # the grid's empty cells
        axes.set_visible(False)
    return _image(figure, "training curves")


def _samples(records: Sequence[RunRecord], sentences: Sequence[str], served: Served | None) -> str:
    """The served model's translations of `sentences` and one attention heatmap: after a
    rollback that is not the newest push."""
    if served is None:
        return "<p>No model is served yet.</p>"
    pusher = next((number for number, record in enumerate(records, start=1)
                   if record.pushed_version == served.version), None)
    by = f"pushed by run {pusher}" if pusher else "pushed by a run not recorded here"
    model_dir = served.path
    about = f"<p>Version {served.version}, {by}: {_text(model_dir)}</p>"
    if not os.path.isdir(model_dir):
        return about + "<p>That model is no longer on disk, so there are no samples.</p>"
    if not sentences:
        return about + "<p>No sentences to translate.</p>"
    model = tf.saved_model.load(model_dir)  # Keep a reference: the signature uses its resources.
    translations = saved_model_bleu.translate(model.signatures[contract.SERVING_SIGNATURE], sentences,
                                        batch_size=len(sentences))
    rows = "".join(f"<tr><td>{_text(source)}</td><td>{_text(target)}</td></tr>"
                   for source, target in zip(sentences, translations, strict=True))
    table = (f'<table id="samples"><thead><tr><th>English</th><th>translation</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    try:
        alignment = attention_plot.align(model_dir, sentences[0])
    except ValueError as error:
        return about + table + f"<p>{_text(error)}</p>"
    png = io.BytesIO()
    note = attention_plot.draw(alignment, png)
    heatmap = (f"<h3>Attention: {_text(sentences[0])}</h3>" + _png(png.getvalue(), "attention heatmap")
               + (f'<p class="note">{_text(note)}</p>' if note else ""))
    return about + table + heatmap


def render(records: Sequence[RunRecord], sentences: Sequence[str], served: Served | None,
           source: str = "") -> str:
    """The whole page for `records` (oldest first), sampling `sentences` on the served model."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    runs = _runs_table(records) if records else "<p>No runs recorded yet.</p>"
    sections = (("Runs", runs), ("Dev BLEU per run", _bleu_chart(records)),
                ("BLEU by source length", _length_chart(records)),
                ("Training curves", _training_chart(records)),
                ("Sample translations by the served model", _samples(records, sentences, served)))
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    where = f" in {_text(source)}" if source else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>enja pipeline report</title><style>{STYLE}</style></head><body>"
            f"<h1>enja pipeline report</h1><p>Runs recorded{where}: {len(records)}; made {now}.</p>"
            f"{body}</body></html>\n")


def write_report(records: Sequence[RunRecord], sentences: Sequence[str], served: Served | None,
                 out: str, source: str = "") -> None:
    """Renders the page and swaps it into `out` at once, so no half-written page is seen."""
    files.write_atomically(out, render(records, sentences, served, source).encode("utf-8"))
