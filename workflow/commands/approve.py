"""`ddcicd approve EXECUTION [--reject --reason TEXT]`: decide a promotion waiting for approval.

Works from any terminal while the run waits (`ddcicd run` or `ddcicd redrive` in another
one, or the console): the decision goes through the engine's store to the waiting task.
"""
from __future__ import annotations

import click

from workflow.errors import CliError


@click.command()
@click.argument("execution")
@click.option("--reject", is_flag=True, help="Reject the promotion: staging is cleaned up and the run ends ApprovalRejected.")
@click.option("--reason", help="Why (recorded as the rejection's cause; with --reject).")
def approve(execution: str, reject: bool, reason: str | None) -> None:
    """Approve (or reject) the promotion an execution (name or ARN) waits for."""
    from workflow.approval import ApprovalError, decide, pending_approval
    from workflow.commands.executions import open_engine

    if reason is not None and not reject:
        raise CliError("--reason goes with --reject (an approval needs no reason)")
    engine = open_engine()
    try:
        pending = pending_approval(engine, execution)
        if pending is not None:
            evaluation, load = pending.evaluation, pending.load_test
            click.echo(f"{pending.execution_name} waits in {pending.state_name} since {pending.requested:%Y-%m-%d %H:%M:%S %Z}"
                       + (f" (until {pending.deadline:%Y-%m-%d %H:%M:%S %Z})" if pending.deadline else ""))  # fmt: skip
            if evaluation:
                click.echo(f"  evaluation: accuracy {evaluation.get('accuracy')}, log loss {evaluation.get('log_loss')},"
                           f" better than production: {evaluation.get('better_than_production')}")  # fmt: skip
            if load:
                click.echo(f"  load test: p99 {load.get('p99_ms')} ms, errors {load.get('error_rate')},"
                           f" {load.get('throughput_rps')} req/s")  # fmt: skip
        decision = decide(engine, execution, approve=not reject, reason=reason)
    except ApprovalError as error:
        raise CliError(str(error)) from error
    verb = "approved" if decision.approved else "rejected"
    why = f": {decision.reason}" if not decision.approved else ""
    click.echo(f"{decision.execution_name}: {verb} by {decision.by} at {decision.at:%Y-%m-%d %H:%M:%S %Z}{why}")
