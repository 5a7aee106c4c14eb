"""`ddcicd executions list|describe|history`: the local engine's executions, read from its store.

These commands only read $DDCICD_HOME/engine.sqlite3 (see workflow/home.py), so they work
while another process is running an execution, and they never import the pipeline or
its heavy dependencies. `echo_events` is the one-line-per-event form that
`history --follow` and `ddcicd redrive` hand to workflow.state_runs.follow_execution.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from workflow.errors import CliError

if TYPE_CHECKING:
    from workflow.engine import Engine

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def open_engine() -> "Engine":
    """A read-mostly engine over the local store; a missing store is a usage error."""
    from workflow.engine import Engine
    from workflow.home import engine_store_path

    path = engine_store_path()
    if not path.exists():
        raise CliError(f"no local executions: {path} does not exist (start one with `ddcicd run`, or set DDCICD_HOME)")
    return Engine(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _lookup(engine: "Engine", execution: str) -> dict[str, Any]:
    from workflow.engine import EngineError

    try:
        return engine.describe_execution(execution)
    except EngineError as error:
        raise CliError(str(error)) from error


def describe_event(event: dict[str, Any]) -> str:
    """One line for a history event: the state name, error or a short output."""
    details = next((value for key, value in event.items() if key.endswith("EventDetails")), None) or {}
    if "name" in details and "index" in details:
        return f"{details['name']}[{details['index']}]"
    if "name" in details:
        return str(details["name"])
    if "error" in details:
        cause = str(details.get("cause") or "")
        return f"{details['error']}: {cause[:160]}" if cause else str(details["error"])
    if "redriveCount" in details:
        return f"redrive #{details['redriveCount']}"
    if "resource" in details:
        return f"{details.get('resourceType', '')}:{details['resource']}".lstrip(":")
    return ""


def echo_events(events: list[dict[str, Any]]) -> None:
    """Prints events as `HH:MM:SS Type detail`, one a line (what following an execution shows)."""
    for event in events:
        click.echo(f"{event['timestamp'].astimezone():%H:%M:%S} {event['type']:<28} {describe_event(event)}")


@click.group()
def executions() -> None:
    """Executions of the local Step Functions engine ($DDCICD_HOME/engine.sqlite3)."""


@executions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the executions as a JSON array.")
@click.option("--status", type=click.Choice(["RUNNING", *TERMINAL]), help="Only executions with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many, newest first.")
def list_command(as_json: bool, status: str | None, limit: int) -> None:
    """List executions, newest first."""
    engine = open_engine()
    found = engine.list_executions(status_filter=status, max_results=limit)
    if as_json:
        click.echo(json.dumps(found, default=_json_default, indent=1))
        return
    if not found:
        click.echo("no executions")
        return
    click.echo(f"{'NAME':<40} {'STATUS':<10} {'STARTED':<19} {'STOPPED':<19} REDRIVES")
    for item in found:
        click.echo(f"{item['name']:<40} {item['status']:<10} {_when(item['startDate']):<19} {_when(item['stopDate']):<19}"
                   f" {item['redriveCount']}")


@executions.command("describe")
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print DescribeExecution's fields as JSON.")
def describe_command(execution: str, as_json: bool) -> None:
    """Show one execution (by name or ARN): status, dates, error, output."""
    description = _lookup(open_engine(), execution)
    if as_json:
        click.echo(json.dumps(description, default=_json_default, indent=1))
        return
    for key in ("name", "executionArn", "stateMachineArn", "status", "startDate", "stopDate", "redriveCount",
                "redriveDate", "redriveStatus", "error", "cause", "input", "output"):
        if key in description:
            value = description[key]
            click.echo(f"{key + ':':<17} {_when(value) if isinstance(value, datetime) else value}")


@executions.command("history")
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print GetExecutionHistory's events as JSON.")
@click.option("--follow", is_flag=True, help="Keep printing new events until the execution ends.")
def history_command(execution: str, as_json: bool, follow: bool) -> None:
    """Show an execution's history events (AWS event types), oldest first."""
    engine = open_engine()
    arn = _lookup(engine, execution)["executionArn"]
    if as_json:
        click.echo(json.dumps(engine.get_execution_history(arn)["events"], default=_json_default, indent=1))
        return
    if follow:
        from workflow.state_runs import follow_execution

        follow_execution(engine, arn, echo_events)
        return
    for event in engine.get_execution_history(arn)["events"]:
        click.echo(f"{event['id']:>4} {_when(event['timestamp'])} {event['type']:<28} {describe_event(event)}")
