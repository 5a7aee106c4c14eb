"""`ddcicd redrive ID`: resume a FAILED, ABORTED or TIMED_OUT local execution from where it failed.

The engine is built by the same factory as `ddcicd run` (workflow.local.services), so the
resumed Task states reach the same local SageMaker, S3 and Lambda stand-ins. An execution
whose engine process was killed shows as ABORTED and can be redriven too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from workflow.errors import EXIT_INTERRUPTED, CliError, RunFailed

if TYPE_CHECKING:
    from workflow.engine import Engine


@click.command()
@click.argument("execution")
@click.option("--no-follow", is_flag=True, help="Do not print events while the execution runs.")
def redrive(execution: str, no_follow: bool) -> None:
    """Redrive a local execution (by name or ARN) and wait for it to end."""
    from workflow.commands.executions import echo_events, open_engine
    from workflow.engine import EngineError
    from workflow.local.services import local_engine
    from workflow.state_runs import follow_execution

    open_engine()  # a clear error when there is no store yet
    engine = local_engine()
    try:
        before = engine.describe_execution(execution)
        _warn_if_decided(engine, before["executionArn"])
        last_id = engine.get_execution_history(before["executionArn"], reverse_order=True)["events"][0]["id"]
        engine.redrive_execution(before["executionArn"])
    except EngineError as error:
        raise CliError(str(error)) from error
    try:
        if not no_follow:
            follow_execution(engine, before["executionArn"], echo_events, after_id=last_id)
        result = engine.wait(before["executionArn"])
    except KeyboardInterrupt:  # stop the run this process is driving, then leave it redrivable
        click.echo("\ninterrupted: stopping the execution ...", err=True)
        engine.stop_execution(before["executionArn"], error="KeyboardInterrupt", cause="stopped with Ctrl-C")
        engine.wait(before["executionArn"], timeout=60)
        click.echo(f"execution {before['name']} stopped; resume it with: ddcicd redrive {before['name']}", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    click.echo(f"{result['name']}: {result['status']} (redrive #{result['redriveCount']})")
    if result["status"] != "SUCCEEDED":
        from workflow.commands.run import explain_ending

        raise RunFailed(explain_ending(engine, before["executionArn"]))


def _warn_if_decided(engine: "Engine", execution_arn: str) -> None:
    """A redrive re-enters where the run stopped: after a decision, that is its Fail state, so it fails again."""
    from workflow.run_record import DECISION, outcome, read_run

    if engine.describe_execution(execution_arn)["status"] != "FAILED":
        return
    ending = outcome(read_run(engine, execution_arn))
    if ending.kind == DECISION:
        click.echo(f"note: {ending.execution_name} ended by a decision ({ending.error}); a redrive ends the same way"
                   " and promotes nothing. Start a new run to try again.", err=True)
