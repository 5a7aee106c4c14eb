"""What `ddcicd run` and `ddcicd redrive` show: states as they run, then a summary.

The view reads only the engine's history (the same events GetExecutionHistory returns),
so it would show an execution started by another process just as well.

    Process        succeeded   41.2 s
    Train          running     1:02    createTrainingJob.sync
    ...
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from workflow.config import PipelineConfig
from workflow.engine import Engine

console = Console(stderr=True)
POLL_SECONDS = 0.5
GATES = (("QualityGate", "ModelRejected", "PrepareLoadTest"), ("SloGate", "SloNotMet", "CreateProductionEndpointConfig"))
STYLE = {"running": "yellow", "succeeded": "green", "failed": "red", "caught": "magenta"}


@dataclass
class StateRow:
    name: str
    status: str = "running"
    started: float = 0.0
    seconds: float = 0.0
    detail: str = ""
    visits: int = 0


@dataclass
class ExecutionView:
    """Folds history events into one row per top-level state."""

    rows: dict[str, StateRow] = field(default_factory=dict)
    current: str | None = None

    def apply(self, event: dict[str, Any]) -> str | None:
        """Updates the rows; returns a one-line description of a finished state, if any."""
        kind, moment = event["type"], event["timestamp"].timestamp()
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            row = self.rows.setdefault(name, StateRow(name))
            row.status, row.started, row.visits = "running", moment, row.visits + 1
            self.current = name
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            row = self.rows.get(name)
            if row is not None:
                row.seconds += moment - row.started
                row.status = "caught" if row.status == "failed" else "succeeded"
                return f"{name} {row.status} in {row.seconds:.1f} s"
        elif kind == "TaskScheduled" and self.current:
            self.rows[self.current].detail = event["taskScheduledEventDetails"]["resource"]
        elif kind in ("TaskFailed", "LambdaFunctionFailed", "MapStateFailed", "ExecutionFailed") and self.current:
            details = next((value for key, value in event.items() if key.endswith("EventDetails")), {})
            row = self.rows[self.current]
            row.status = "failed"
            row.detail = details.get("error", "") or row.detail
            if row.started and not row.seconds:
                row.seconds = moment - row.started
            return f"{row.name} failed: {details.get('error', '')}"
        return None

    def table(self, now: float) -> Table:
        table = Table(show_header=True, header_style="bold", box=None)
        for column in ("state", "status", "time", "detail"):
            table.add_column(column)
        for row in self.rows.values():
            seconds = row.seconds if row.status != "running" else now - row.started
            visits = f" x{row.visits}" if row.visits > 1 else ""
            table.add_row(row.name, f"[{STYLE.get(row.status, '')}]{row.status}[/]", f"{seconds:6.1f} s{visits}",
                          row.detail.replace("arn:aws:states:::", ""))  # fmt: skip
        return table


def follow_execution(engine: Engine, execution_arn: str, live: bool = True) -> ExecutionView:
    """Polls the history until the execution ends; a live table on a terminal, lines otherwise."""
    view = ExecutionView()
    last_id = 0
    show_live = live and console.is_terminal
    context = Live(view.table(time.time()), console=console, refresh_per_second=4) if show_live else contextlib.nullcontext()
    with context as display:
        while True:
            for event in engine.get_execution_history(execution_arn, after_id=last_id)["events"]:
                last_id = event["id"]
                line = view.apply(event)
                if line and live and not show_live:
                    console.print(line)
            if display is not None:
                display.update(view.table(time.time()))
            if engine.describe_execution(execution_arn)["status"] != "RUNNING":
                for event in engine.get_execution_history(execution_arn, after_id=last_id)["events"]:
                    view.apply(event)
                if display is not None:
                    display.update(view.table(time.time()))
                return view
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar fed by `progress(done, total)` callbacks (None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _state_outputs(engine: Engine, execution_arn: str) -> dict[str, Any]:
    """The output of the last exit of every top-level state, parsed."""
    outputs: dict[str, Any] = {}
    for event in engine.get_execution_history(execution_arn)["events"]:
        if event["type"].endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            with contextlib.suppress(TypeError, ValueError):
                outputs[details["name"]] = json.loads(details.get("output") or "null")
    return outputs


def _reason(cause: str | None) -> str:
    """A .sync job's cause is its whole Describe* response: show its FailureReason."""
    try:
        parsed = json.loads(cause or "")
    except ValueError:
        return (cause or "")[:400]
    if isinstance(parsed, dict):
        for key in ("FailureReason", "errorMessage", "Cause"):
            if parsed.get(key):
                return str(parsed[key])[:400]
    return (cause or "")[:400]


def print_summary(engine: Engine, description: dict[str, Any], run_input: dict[str, str], config: PipelineConfig) -> None:
    """Metrics, gate decisions, the production endpoint's address, artifacts, time per state."""
    from workflow.local.pipeline import state_durations
    from workflow.local.s3 import S3Root

    arn = description["executionArn"]
    history = engine.get_execution_history(arn)["events"]
    outputs = _state_outputs(engine, arn)
    s3 = S3Root.default()
    out = Console(soft_wrap=True)
    status = description["status"]
    colour = "green" if status == "SUCCEEDED" else "red"
    elapsed = (description.get("stopDate") or description["startDate"]) - description["startDate"]
    out.print(f"\n[bold]{description['name']}[/]: [{colour}]{status}[/] in {elapsed.total_seconds():.0f} s")
    if description.get("error"):
        view = ExecutionView()
        for event in history:
            view.apply(event)
        unfinished = [row.name for row in view.rows.values() if row.status in ("failed", "running")]
        where = f" in state {unfinished[-1]}" if unfinished else ""
        out.print(f"  error{where}: {description['error']}: {_reason(description.get('cause'))}")

    evaluation = (outputs.get("Evaluate") or {}).get("evaluation", {}).get("Payload")
    if evaluation:
        out.print(f"  validation: accuracy {evaluation['accuracy']:.4f}, log loss {evaluation['log_loss']:.4f}"
                  f" on {evaluation.get('evaluated')} images ({evaluation.get('failed_invocations', 0)} failed invocations)")  # fmt: skip
        if evaluation.get("has_production"):
            production = evaluation.get("production") or {}
            out.print(f"  production: accuracy {production.get('accuracy', float('nan')):.4f}, log loss"
                      f" {production.get('log_loss', float('nan')):.4f} -> better: {evaluation.get('better_than_production')}")  # fmt: skip
        else:
            out.print("  production: none yet (first deployment: thresholds only)")
    entered = {event["stateEnteredEventDetails"]["name"] for event in history if event["type"].endswith("StateEntered")}
    gate_text = []
    for gate, rejected, following in GATES:
        if rejected in entered:
            gate_text.append(f"{gate} rejected")
        elif following in entered:
            gate_text.append(f"{gate} passed")
    if gate_text:
        out.print("  gates: " + ", ".join(gate_text))
    load = (outputs.get("MergeLoadTest") or {}).get("load_test", {}).get("Payload")
    if load:
        out.print(f"  load test: {load['requests']} requests, {load['throughput_rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms,"
                  f" p99 {load['p99_ms']:.1f} ms, errors {load['error_rate']:.2%} -> SLO met: {load['slo_met']}")  # fmt: skip
    if "RecordProductionMetrics" in outputs:
        from workflow.local.runtime import runtime_url

        url = runtime_url() or "(runtime router not running: `ddcicd endpoints list` starts it)"
        out.print(f"  production endpoint: {config.endpoint.production_name} at {url}/endpoints/{config.endpoint.production_name}/invocations")
    training = (outputs.get("Train") or {}).get("training") or {}
    artifacts = {
        "model": (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "evaluation": evaluation and evaluation.get("metrics_uri"),
        "confusion matrix": evaluation and evaluation.get("confusion_matrix_uri"),
        "load test": load and run_input.get("LoadTestUri"),
        "processed data": run_input.get("ProcessedDataUri") if "Process" in outputs else None,
    }
    shown = {label: uri for label, uri in artifacts.items() if uri}
    if shown:
        out.print("  artifacts:")
        for label, uri in shown.items():
            out.print(f"    {label:<17} {s3.path(uri)}")
    durations = state_durations(history)
    if durations:
        out.print("  time per state: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in durations.items() if seconds >= 0.05))
    out.print(f"  history: ddcicd executions history {description['name']}    console: ddcicd console")
