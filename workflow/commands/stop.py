"""`ddcicd stop ID`: stop a RUNNING local execution (StopExecution); it ends ABORTED and can be redriven."""
from __future__ import annotations

import click

from workflow.errors import CliError


@click.command()
@click.argument("execution")
@click.option("--error", "error_name", default="Stopped", show_default=True, help="Error name recorded on the execution.")
@click.option("--cause", default="stopped with ddcicd stop", show_default=True, help="Cause recorded on the execution.")
def stop(execution: str, error_name: str, cause: str) -> None:
    """Stop a running local execution (by name or ARN)."""
    from workflow.commands.executions import open_engine
    from workflow.engine import EngineError

    engine = open_engine()
    try:
        arn = engine.describe_execution(execution)["executionArn"]
        engine.stop_execution(arn, error=error_name, cause=cause)
    except EngineError as error:
        raise CliError(str(error)) from error
    click.echo(f"stop requested for {arn}")
