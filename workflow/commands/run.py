"""`ddcicd run`: the main job, the whole state machine on the local engine, with a live view."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from workflow.errors import EXIT_INTERRUPTED, CliError, RunFailed

if TYPE_CHECKING:
    from workflow.engine import Engine


@click.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="Pipeline config (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. training.hyperparameters.epochs=3")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path),
              help="A dataset in the Kaggle layout; default: the synthetic one for this config (made once).")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No live view; print the summary only.")
def run(config_path: Path | None, overrides: tuple[str, ...], data: Path | None, quiet: bool) -> None:
    """Run the pipeline end to end on the local engine (no AWS account needed)."""
    from workflow.config import ConfigError, load_config
    from workflow.local.pipeline import DatasetError, start_pipeline
    from workflow.local.services import local_engine
    from workflow.run_view import print_summary, progress_bar, watch_execution

    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        raise CliError(str(error)) from error
    if data is not None and not data.is_dir():
        raise CliError(f"--data {data}: no such directory")
    engine = local_engine(config)
    with progress_bar("synthesising the default dataset", enabled=not quiet and data is None) as progress:
        try:
            started = start_pipeline(engine, config, data, progress)
        except DatasetError as error:
            raise CliError(str(error)) from error
    click.echo(f"execution {started.execution_name} started (dataset {started.dataset})", err=True)
    try:
        watch_execution(engine, started.execution_arn, live=not quiet)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping the execution ...", err=True)
        engine.stop_execution(started.execution_arn, error="KeyboardInterrupt", cause="stopped with Ctrl-C")
        engine.wait(started.execution_arn, timeout=60)
        description = engine.describe_execution(started.execution_arn)
        click.echo(f"execution {started.execution_name} is {description['status']}; resume it with:", err=True)
        click.echo(f"  ddcicd redrive {started.execution_name}", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    description = engine.wait(started.execution_arn)
    print_summary(engine, started.execution_arn, config)
    if description["status"] != "SUCCEEDED":
        raise RunFailed(explain_ending(engine, started.execution_arn))


def explain_ending(engine: "Engine", execution_arn: str) -> str:
    """Prints how a run that did not succeed ended (fault or decision, what is kept, what to
    run next) and returns the one-line error for stderr. `ddcicd redrive` prints the same."""
    from workflow.local.pipeline import kept_locally
    from workflow.run_record import DECISION, outcome, read_run
    from workflow.state_runs import readable_cause

    ending = outcome(read_run(engine, execution_arn))
    kept = kept_locally(ending)
    for line in ending.lines(kept):
        click.echo(f"  {line}")
    hint = "a decision: a redrive will not change it" if ending.kind == DECISION else f"resume: {ending.redrive_command}"
    return (f"execution {ending.execution_name} ended {ending.status} in state {ending.state}: {ending.error or ''}:"
            f" {readable_cause(ending.cause, 200)} ({hint}; inspect: ddcicd executions history {ending.execution_name})")
