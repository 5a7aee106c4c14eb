"""One self-contained HTML page per execution: what the run did to the data and the model.

    html = render_report(Engine(store_path), execution_arn)      # or: ddcicd report NAME

Everything comes from the execution read against the definition it ran
(workflow.run_record: state outputs, timings, gates and their thresholds) and from the
artifacts the states wrote, read through workflow.local.reader: the processing
manifest, the training job's metrics.json, the evaluation and load-test results.
Charts are inline SVG (workflow.console.plots), so the file can be mailed or archived on
its own. A section whose artifact is missing (the run failed before it, or the files
were cleaned up) says so in one line instead of failing the whole report.
"""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from steps.atomic import write_atomically
from workflow.console import plots
from workflow.console.graph import choice_label
from workflow.engine import Engine
from workflow.local.reader import Artifacts
from workflow.run_record import RunRecord, read_run
from workflow.state_runs import StateRun, readable_cause

QUICK_SECONDS = 0.05
PERCENTILES = ("p50", "p90", "p95", "p99", "max")
RESULT_PAYLOAD = re.compile(r"\$\.\w+\.Payload\.")  # `$.evaluation.Payload.accuracy` reads as `accuracy`
STYLE = """
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d2330; margin: 0; background: #f4f6f9; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; min-height: 100vh; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #d9dee7; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; } th, td { padding: 4px 10px; border-bottom: 1px solid #e3e7ee; text-align: left; }
th { color: #6b7383; font-weight: 600; font-size: 12px; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted, .missing { color: #6b7383; } .missing::before { content: "— "; }
.status { display: inline-block; padding: 2px 9px; border-radius: 10px; font-size: 12px; font-weight: 700; }
.SUCCEEDED, .pass { background: #e2f4e9; color: #1e8e4f; } .FAILED, .TIMED_OUT, .fail { background: #fbe5e5; color: #cf2e2e; }
.RUNNING { background: #e3eefc; color: #2f7de1; } .ABORTED, .skip { background: #eceef2; color: #6b7383; }
.error { background: #fbe5e5; border: 1px solid #efb9b9; padding: 8px 12px; border-radius: 6px; white-space: pre-wrap; word-break: break-word; }
svg { max-width: 100%; height: auto; } code { font-size: 12px; background: #f2f4f8; padding: 1px 4px; border-radius: 3px; }
.facts th { width: 190px; }
"""


@dataclass
class RunData:
    """An execution read against its definition, with its artifacts loaded (None when missing)."""

    record: RunRecord
    manifest: dict[str, Any] | None = None
    per_driver: dict[str, dict[str, dict[str, int]]] | None = None  # split -> driver -> class -> images
    training: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    load_test: dict[str, Any] | None = None

    @property
    def description(self) -> dict[str, Any]:
        return self.record.description

    @property
    def runs(self) -> dict[str, StateRun]:
        return self.record.runs


def _training_metrics(files: Artifacts, record: RunRecord) -> dict[str, Any] | None:
    """metrics.json next to the model the training state reported, else the newest under ModelOutputUri."""
    training = record.result("training")
    model_uri = ((training if isinstance(training, dict) else {}).get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if isinstance(model_uri, str) and model_uri.endswith("model.tar.gz"):
        metrics = files.json(model_uri[: -len("model.tar.gz")] + "data/metrics.json")
        if metrics is not None:
            return metrics
    prefix = record.execution_input.get("ModelOutputUri")
    for uri in files.newest(prefix, "*/output/data/metrics.json") if isinstance(prefix, str) else []:
        metrics = files.json(uri)
        if metrics is not None:
            return metrics
    return None


def _images_per_driver(files: Artifacts, manifest: dict[str, Any], processed_uri: str, raw_uri: Any) -> dict[str, dict[str, dict[str, int]]] | None:
    """What each split holds per driver and class: the written .lst files joined with the
    dataset's driver_imgs_list.csv (the manifest lists a split's drivers, not their counts)."""
    csv_name = (manifest.get("source") or {}).get("csv") or "driver_imgs_list.csv"
    listing = files.text(raw_uri.rstrip("/") + "/" + csv_name) if isinstance(raw_uri, str) else None
    if listing is None:
        return None
    try:
        driver_of = {row["img"]: row["subject"] for row in csv.DictReader(io.StringIO(listing, newline=""))}
    except (KeyError, csv.Error):
        return None
    classes = list(manifest.get("classes") or [])
    result: dict[str, dict[str, dict[str, int]]] = {}
    for split in manifest.get("splits") or {}:
        text = files.text(processed_uri.rstrip("/") + f"/{split}.lst")
        if text is None:
            return None
        counts: dict[str, dict[str, int]] = {}
        for line in text.splitlines():
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            label = int(float(fields[1]))
            name = classes[label] if 0 <= label < len(classes) else str(label)
            driver = driver_of.get(fields[-1].rsplit("/", 1)[-1], "unknown")
            counts.setdefault(driver, {}).setdefault(name, 0)
            counts[driver][name] += 1
        result[split] = dict(sorted(counts.items()))
    return result


def collect(engine: Engine, execution_arn: str, files: Artifacts | None = None) -> RunData:
    files = files or Artifacts()
    record = read_run(engine, execution_arn)
    data = RunData(record)
    processed = record.execution_input.get("ProcessedDataUri")
    if isinstance(processed, str):
        data.manifest = files.json(processed.rstrip("/") + "/manifest.json")
        if data.manifest is not None:
            data.per_driver = _images_per_driver(files, data.manifest, processed, record.execution_input.get("RawDataUri"))
    data.training = _training_metrics(files, record)
    data.evaluation = record.payload("evaluation")
    if data.evaluation is not None:
        data.evaluation = files.json(data.evaluation.get("metrics_uri")) or data.evaluation
    data.load_test = record.payload("load_test")
    load_uri = record.execution_input.get("LoadTestUri")
    if (data.load_test is None or "histogram" not in data.load_test) and record.writer("load_test") in record.runs:
        data.load_test = files.json(load_uri) or data.load_test
    return data


# ---------------------------------------------------------------------- HTML pieces
def _e(value: Any) -> str:
    return html.escape(str(value))


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if index >= numeric_from else ""}>{_e(cell)}</td>'
                                    for index, cell in enumerate(row)) + "</tr>" for row in rows)  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _why_missing(data: RunData, key: str, artifact: str) -> str:
    """Why the result at `$.key` is missing, told by the state that writes it."""
    state = data.record.writer(key)
    if state is None:
        return f"No {artifact}: no state of this state machine writes $.{key}."
    run = data.runs.get(state)
    if run is None:
        return f"No {artifact}: the {state} state did not run in this execution."
    if run.status in ("failed", "aborted"):
        return f"No {artifact}: the {state} state {run.status}."
    return f"No {artifact}: the file is missing from the local S3 root (cleaned up?)."


def header_section(data: RunData) -> str:
    description = data.description
    start: datetime = description["startDate"]
    stop: datetime | None = description.get("stopDate")
    seconds = ((stop or datetime.now(start.tzinfo)) - start).total_seconds()
    rows = [("State machine", description["stateMachineArn"].rsplit(":", 1)[-1]),
            ("Started", start.strftime("%Y-%m-%d %H:%M:%S UTC")), ("Duration", f"{seconds:.1f} s"),
            ("Redrives", description.get("redriveCount", 0)), ("Execution ARN", description["executionArn"])]  # fmt: skip
    facts = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in rows)
    error = ""
    if description.get("error"):
        cause = description.get("cause") or ""
        failed = data.record.failed_state()
        where = f" in state {failed}" if failed else ""
        error = (f'<div class="error"><strong>{_e(description["error"])}</strong>{_e(where)}: {_e(readable_cause(cause))}'
                 f"<details><summary>full cause</summary>{_e(cause[:20000])}</details></div>")  # fmt: skip
    status = description["status"]
    return (f'<h1>{_e(description["name"])} <span class="status {_e(status)}">{_e(status)}</span></h1>'
            f'<table class="facts">{facts}</table>{error}')  # fmt: skip


def dataset_section(data: RunData) -> str:
    manifest = data.manifest
    if not manifest:
        return "<h2>Dataset</h2>" + _missing(_why_missing(data, "processing", "processing manifest"))
    classes = list(manifest.get("classes") or [])
    splits = manifest.get("splits") or {}
    series = {name: [int((split.get("per_class") or {}).get(label, 0)) for label in classes] for name, split in splits.items()}
    parts = ["<h2>Dataset</h2>"]
    counts = ", ".join(f"{name}: {split.get('count', 0)} images from {len(split.get('drivers') or [])} drivers"
                       for name, split in splits.items())  # fmt: skip
    parts.append(f"<p>{_e(counts)}; split by {_e(manifest.get('split_by', 'driver'))}.</p>")
    if classes and series:
        parts.append(plots.grouped_bars(classes, series, "images", "Images per class"))
        rows = [[label] + [values[index] for values in series.values()] for index, label in enumerate(classes)]
        parts.append(_table(["class"] + list(series), rows))
    if data.per_driver:
        drivers = [driver for split in data.per_driver.values() for driver in split]
        by_split = {name: [sum(data.per_driver[name].get(driver, {}).values()) for driver in drivers] for name in data.per_driver}
        parts.append(plots.grouped_bars(drivers, by_split, "images", "Images per driver", stacked=True))
        for name, drivers_in_split in data.per_driver.items():
            parts.append(f"<h3>{_e(name)}: images per driver and class</h3>")
            rows = [[driver] + [counts.get(label, 0) for label in classes] + [sum(counts.values())]
                    for driver, counts in drivers_in_split.items()]  # fmt: skip
            parts.append(_table(["driver", *classes, "total"], rows))
    else:
        parts.append("<h3>Drivers per split</h3>")
        parts.append(_table(["split", "drivers"], [[name, ", ".join(split.get("drivers") or []) or "–"] for name, split in splits.items()], 2))
        parts.append(_missing("No per-driver counts: the processed .lst files or the dataset's driver list are missing."))
    skipped = manifest.get("skipped") or []
    if skipped:
        parts.append(f"<h3>Skipped files ({len(skipped)})</h3>")
        parts.append(_table(["file", "reason"], [[item.get("path", "?"), item.get("reason", "?")] for item in skipped[:200]], 9))
    else:
        parts.append("<p class=muted>No files were skipped.</p>")
    return "".join(parts)


def training_section(data: RunData) -> str:
    metrics = data.training
    if not metrics or not metrics.get("epochs"):
        return "<h2>Training</h2>" + _missing(_why_missing(data, "training", "training metrics"))
    epochs = metrics["epochs"]
    final = metrics.get("final") or {}
    rows = [[row.get("epoch", index), _number(row.get("train_loss")), _number(row.get("train_accuracy")),
             _number(row.get("validation_loss")), _number(row.get("validation_accuracy"))] for index, row in enumerate(epochs)]  # fmt: skip
    summary = (f"{len(epochs)} epochs; final validation accuracy {_number(final.get('validation_accuracy'))}, "
               f"log loss {_number(final.get('validation_log_loss'))}.")  # fmt: skip
    return ("<h2>Training</h2>" + f"<p>{_e(summary)}</p>" + plots.training_curves(epochs)
            + _table(["epoch", "train loss", "train accuracy", "validation loss", "validation accuracy"], rows))  # fmt: skip


def evaluation_section(data: RunData) -> str:
    evaluation = data.evaluation
    if not evaluation:
        return "<h2>Validation metrics</h2>" + _missing(_why_missing(data, "evaluation", "evaluation"))
    parts = ["<h2>Validation metrics</h2>",
             f"<p>Accuracy <strong>{_number(evaluation.get('accuracy'))}</strong>, log loss <strong>{_number(evaluation.get('log_loss'))}</strong>"
             f" on {_e(evaluation.get('evaluated', '?'))} images ({_e(evaluation.get('failed_invocations', 0))} failed invocations);"
             f" macro F1 {_number(evaluation.get('macro_f1'))}.</p>"]  # fmt: skip
    per_class = evaluation.get("per_class") or {}
    if per_class:
        rows = [[label, _number(values.get("precision"), 3), _number(values.get("recall"), 3), _number(values.get("f1"), 3),
                 values.get("support", "–")] for label, values in per_class.items()]  # fmt: skip
        parts.append(_table(["class", "precision", "recall", "F1", "images"], rows))
    matrix, classes = evaluation.get("confusion_matrix"), evaluation.get("classes")
    if matrix and classes:
        parts.append("<h3>Confusion matrix</h3>" + plots.confusion_matrix(matrix, list(classes)))
    else:
        parts.append(_missing("No confusion matrix in the evaluation."))
    return "".join(parts)


def rule_text(rule: dict[str, Any]) -> str:
    """A Choice rule as one readable condition: `accuracy >= 0.9 and (... or ...)`."""
    for combinator in ("And", "Or"):
        if combinator in rule:
            inner = [rule_text(item) for item in rule[combinator]]
            joined = f" {combinator.lower()} ".join(f"({text})" if (" and " in text or " or " in text) else text for text in inner)
            return joined
    if "Not" in rule:
        return f"not ({rule_text(rule['Not'])})"
    return RESULT_PAYLOAD.sub("", choice_label(rule))


def gate_section(data: RunData) -> str:
    parts = ["<h2>Quality gate</h2>"]
    rows = []
    for item in data.record.gates():
        decision = {"passed": "pass", "rejected": "fail"}.get(item.decision, "skip")
        conditions = "; ".join(f"{rule_text(rule)} → {rule.get('Next')}" for rule in item.gate.rules)
        rows.append(f'<tr><th>{_e(item.gate.name)}</th><td><span class="status {decision}">{item.decision}</span></td>'
                    f'<td><code>{_e(conditions or "–")}</code></td></tr>')
    parts.append("<table>" + "".join(rows) + "</table>")
    evaluation = data.evaluation
    if evaluation is None:
        parts.append(_missing(_why_missing(data, "evaluation", "comparison with production")))
    elif evaluation.get("has_production"):
        production = evaluation.get("production") or {}
        parts.append(_table(["model", "accuracy", "log loss"], [
            ["this run", _number(evaluation.get("accuracy")), _number(evaluation.get("log_loss"))],
            ["production", _number(production.get("accuracy")), _number(production.get("log_loss"))]]))  # fmt: skip
        verdict = "better than" if evaluation.get("better_than_production") else "not better than"
        parts.append(f"<p>The new model is <strong>{verdict}</strong> production.</p>")
    else:
        parts.append("<p>No production model yet: this was judged by the thresholds alone.</p>")
    return "".join(parts)


def _latency_buckets(histogram: dict[str, Any]) -> list[tuple[float, float, int]]:
    """(low ms, high ms, requests) per histogram bucket; values are recorded in microseconds."""
    from lambdas.load_test.histogram import Histogram

    decoded = Histogram.from_json(histogram)
    buckets = []
    for index in sorted(decoded.counts):
        low, high = decoded.bucket_bounds(index)
        buckets.append((low / 1000.0, (high + 1) / 1000.0, decoded.counts[index]))
    return buckets


def load_test_section(data: RunData) -> str:
    load = data.load_test
    if not load:
        return "<h2>Load test</h2>" + _missing(_why_missing(data, "load_test", "load-test results"))
    slo = load.get("slo") or {}
    parts = ["<h2>Load test</h2>",
             f"<p>{_e(load.get('requests', '?'))} requests in {_number(load.get('duration_seconds'), 1)} s"
             f" ({_number(load.get('throughput_rps'), 0)} requests/s over {_e(load.get('shards', '?'))} shards),"
             f" error rate {_number(100 * float(load.get('error_rate') or 0), 2)} %."
             f' SLO (p99 ≤ {_e(slo.get("p99_ms", "?"))} ms, errors ≤ {_number(100 * float(slo.get("max_error_rate") or 0), 2)} %):'
             f' <span class="status {"pass" if load.get("slo_met") else "fail"}">{"met" if load.get("slo_met") else "missed"}</span></p>']  # fmt: skip
    percentiles = {name: float(load[f"{name}_ms"]) for name in PERCENTILES if isinstance(load.get(f"{name}_ms"), (int, float))}
    parts.append(_table(["percentile", "latency (ms)"], [[name, f"{value:.1f}"] for name, value in percentiles.items()]))
    histogram = load.get("histogram")
    if isinstance(histogram, dict) and histogram.get("buckets"):
        try:
            buckets = _latency_buckets(histogram)
        except (ValueError, KeyError, TypeError) as error:
            parts.append(_missing(f"Latency histogram unreadable: {error}"))
        else:
            shown = {name: value for name, value in percentiles.items() if name in ("p50", "p90", "p99")}
            parts.append(plots.latency_histogram(buckets, shown, slo.get("p99_ms")))
    else:
        parts.append(_missing("No latency histogram in the load-test results."))
    errors = load.get("errors_by_kind") or {}
    if errors:
        parts.append(_table(["error", "requests"], [[kind, count] for kind, count in errors.items()]))
    return "".join(parts)


def timing_section(data: RunData) -> str:
    ran = [run for run in data.runs.values() if run.visits]
    if not ran:
        return "<h2>Time per state</h2>" + _missing("No state ran.")
    runs = [run for run in ran if run.seconds >= QUICK_SECONDS or run.status in ("failed", "running", "aborted")]
    quick = [run.name for run in ran if run not in runs]
    names = [run.name + (f" ×{run.visits}" if run.visits > 1 else "") for run in runs]
    parts = ["<h2>Time per state</h2>"]
    if runs:
        parts.append(plots.state_times(names, [run.seconds for run in runs], [run.status for run in runs]))
    if quick:
        parts.append(f"<p class=muted>Under {QUICK_SECONDS} s each: {_e(', '.join(quick))}.</p>")
    return "".join(parts)


# The report is text and inline SVG: no script, nothing fetched. The console serves it with a
# sandboxing header (guard.REPORT_POLICY); this copy protects the file opened from disk.
FILE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def render_report(engine: Engine, execution_arn: str, files: Artifacts | None = None) -> str:
    data = collect(engine, execution_arn, files)
    sections = [header_section(data), dataset_section(data), training_section(data), evaluation_section(data),
                gate_section(data), load_test_section(data), timing_section(data)]  # fmt: skip
    title = f"ddcicd run report: {data.description['name']}"
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta http-equiv="Content-Security-Policy" content="{FILE_POLICY}">'
            f"<style>{STYLE}</style></head><body><main>{''.join(sections)}"
            f'<p class="muted">Generated {_e(generated)} by ddcicd from the local engine\'s history.</p></main></body></html>')  # fmt: skip


def write_report(engine: Engine, execution_arn: str, out: Path, files: Artifacts | None = None) -> Path:
    """Renders and writes atomically (temporary name in the same folder, then rename)."""
    write_atomically(out, render_report(engine, execution_arn, files).encode("utf-8"), fsync=False)
    return out
