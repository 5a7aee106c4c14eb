"""What `ddcicd run` shows: states as they run, then a summary.

The view reads only the engine's history (the same events GetExecutionHistory returns),
folded by workflow.state_runs, and the definition version the execution ran, so it would
show an execution started by another process just as well.

    Process        succeeded   41.2 s
    Train          running     62.0 s   sagemaker:createTrainingJob.sync
    ...
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from workflow.config import PipelineConfig
from workflow.engine import Engine
from workflow.run_record import in_service_state, read_run
from workflow.state_runs import HistoryFold, StateRun, follow_execution, readable_cause

console = Console(stderr=True)
POLL_SECONDS = 0.5
QUICK_SECONDS = 0.05
STYLE = {"running": "yellow", "succeeded": "green", "failed": "red", "caught": "magenta", "aborted": "red"}


def progress_line(run: StateRun) -> str:
    """One line for a state that just finished or failed (the view off a terminal)."""
    if run.status == "failed":
        return f"{run.name} failed: {run.error or ''}"
    return f"{run.name} {run.status} in {run.seconds:.1f} s"


def state_table(runs: dict[str, StateRun], now: float) -> Table:
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("state", "status", "time", "detail"):
        table.add_column(column)
    for run in runs.values():
        visits = f" x{run.visits}" if run.visits > 1 else ""
        detail = run.error if run.status == "failed" and run.error else run.resource or ""
        table.add_row(run.name, f"[{STYLE.get(run.status, '')}]{run.status}[/]", f"{run.seconds_at(now):6.1f} s{visits}", detail)
    return table


def watch_execution(engine: Engine, execution_arn: str, live: bool = True) -> dict[str, StateRun]:
    """Follows the execution to its end: a live table on a terminal, a line per finished state
    otherwise, nothing when `live` is False. Returns the states' runs."""
    fold = HistoryFold()
    show_live = live and console.is_terminal
    context = Live(state_table(fold.runs, time.time()), console=console, refresh_per_second=4) if show_live else contextlib.nullcontext()
    with context as display:

        def show(events: list[dict[str, Any]]) -> None:
            for event in events:
                finished = fold.apply(event)
                if finished is not None and live and not show_live:
                    console.print(progress_line(finished))
            if display is not None:
                display.update(state_table(fold.runs, time.time()))

        description = follow_execution(engine, execution_arn, show, poll_seconds=POLL_SECONDS)
        fold.finish(description["status"])
        if display is not None:
            display.update(state_table(fold.runs, time.time()))
    return fold.runs


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


def print_summary(engine: Engine, execution_arn: str, config: PipelineConfig) -> None:
    """Metrics, gate decisions, the production endpoint's address, artifacts, time per state."""
    from workflow.local.reader import Artifacts, runtime_url

    record = read_run(engine, execution_arn)
    description, run_input = record.description, record.execution_input
    out = Console(soft_wrap=True)
    status = description["status"]
    colour = "green" if status == "SUCCEEDED" else "red"
    elapsed = (description.get("stopDate") or description["startDate"]) - description["startDate"]
    out.print(f"\n[bold]{description['name']}[/]: [{colour}]{status}[/] in {elapsed.total_seconds():.0f} s")
    if description.get("error"):
        where = f" in state {record.failed_state()}" if record.failed_state() else ""
        out.print(f"  error{where}: {description['error']}: {readable_cause(description.get('cause'), 400)}")

    evaluation = record.payload("evaluation")
    if evaluation:
        out.print(f"  validation: accuracy {evaluation['accuracy']:.4f}, log loss {evaluation['log_loss']:.4f}"
                  f" on {evaluation.get('evaluated')} images ({evaluation.get('failed_invocations', 0)} failed invocations)")  # fmt: skip
        if evaluation.get("has_production"):
            production = evaluation.get("production") or {}
            out.print(f"  production: accuracy {production.get('accuracy', float('nan')):.4f}, log loss"
                      f" {production.get('log_loss', float('nan')):.4f} -> better: {evaluation.get('better_than_production')}")  # fmt: skip
        else:
            out.print("  production: none yet (first deployment: thresholds only)")
    gate_text = [f"{item.gate.name} {item.decision}" for item in record.gates() if item.decision != "not reached"]
    if gate_text:
        out.print("  gates: " + ", ".join(gate_text))
    load = record.payload("load_test")
    if load:
        out.print(f"  load test: {load['requests']} requests, {load['throughput_rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms,"
                  f" p99 {load['p99_ms']:.1f} ms, errors {load['error_rate']:.2%} -> SLO met: {load['slo_met']}")  # fmt: skip
    production_name = config.endpoint.production_name
    if record.exited(in_service_state(record.definition, production_name)):
        url = runtime_url() or "(runtime router not running: `ddcicd endpoints list` starts it)"
        out.print(f"  production endpoint: {production_name} at {url}/endpoints/{production_name}/invocations")
    training = record.result("training") or {}
    artifacts = {
        "model": (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "evaluation": evaluation and evaluation.get("metrics_uri"),
        "confusion matrix": evaluation and evaluation.get("confusion_matrix_uri"),
        "load test": load and run_input.get("LoadTestUri"),
        "processed data": run_input.get("ProcessedDataUri") if record.exited(record.writer("processing")) else None,
    }
    files = Artifacts()
    shown = {label: files.path(uri) or uri for label, uri in artifacts.items() if isinstance(uri, str) and uri}
    if shown:
        out.print("  artifacts:")
        for label, where in shown.items():
            out.print(f"    {label:<17} {where}")
    timed = [run for run in record.runs.values() if run.seconds >= QUICK_SECONDS]
    if timed:
        out.print("  time per state: " + ", ".join(f"{run.name} {run.seconds:.1f}s" for run in timed))
    out.print(f"  history: ddcicd executions history {description['name']}    console: ddcicd console")
