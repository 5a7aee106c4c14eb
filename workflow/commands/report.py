"""`ddcicd report EXECUTION [--out FILE]`: the run report of a local execution as one HTML file."""
from __future__ import annotations

from pathlib import Path

import click

from workflow.errors import CliError


@click.command()
@click.argument("execution")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it [default: ./<execution name>-report.html].")
def report(execution: str, out: Path | None) -> None:
    """Write the run report of EXECUTION (name or ARN): data, training, metrics, gates, load test, timings."""
    from workflow.commands.executions import open_engine
    from workflow.console.report import write_report
    from workflow.engine import EngineError

    engine = open_engine()
    try:
        description = engine.describe_execution(execution)
    except EngineError as error:
        raise CliError(str(error)) from error
    target = out or Path(f"{description['name']}-report.html")
    try:
        write_report(engine, description["executionArn"], target)
    except OSError as error:
        raise CliError(f"cannot write the report to {target}: {error.strerror or error}") from None
    click.echo(str(target))
