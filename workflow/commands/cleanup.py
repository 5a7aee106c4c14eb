"""`ddcicd cleanup`: delete the staging resources of abandoned faulted runs; `--all` stops every local process.

    ddcicd cleanup                        # faulted runs superseded by a newer run, or past cleanup.retention_hours
    ddcicd cleanup --older-than 0         # every faulted run (2h, 90m, 1d; a bare number is hours)
    ddcicd cleanup --execution NAME       # that faulted run only
    ddcicd cleanup --all                  # and stop every local process of the home, production included

Prints a line per resource removed or kept (and appends them to $DDCICD_HOME/cleanup.log).
Production is never touched by the staging clean-up; only `--all` stops its processes.
"""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workflow.errors import CliError

if TYPE_CHECKING:
    from workflow.config import PipelineConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90m` -> 90 minutes; `2h`, `1.5d`, `30s`; a bare number is hours (like cleanup.retention_hours)."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration: use e.g. 0, 30m, 2h or 1d (a bare number is hours)",
                                 param_hint="--older-than")  # fmt: skip
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@click.command("cleanup")
@click.option("--older-than", "older_than", metavar="DURATION",
              help="Reap faulted runs that ended at least this long ago (default: config cleanup.retention_hours).")
@click.option("--execution", metavar="ID", help="Reap this faulted execution only (name or ARN).")
@click.option("--all", "everything", is_flag=True, help="Also stop every local process of the home, production included.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="Pipeline config (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. cleanup.retention_hours=2")
def cleanup(older_than: str | None, execution: str | None, everything: bool, config_path: Path | None,
            overrides: tuple[str, ...]) -> None:
    """Delete staging endpoints, configs and models of abandoned faulted runs (never production)."""
    from workflow.config import ConfigError, load_config
    from workflow.home import ddcicd_home, engine_store_path

    retention = parse_duration(older_than) if older_than is not None else None
    if execution is not None and older_than is not None:
        raise CliError("--execution and --older-than do not go together: --execution reaps that run whatever its age")
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        raise CliError(str(error)) from error
    home = ddcicd_home()
    if engine_store_path().exists():
        _reap(config, retention, execution, home)
    elif execution is not None:
        raise CliError(f"no local executions: {engine_store_path()} does not exist")
    else:
        click.echo(f"no local executions in {home}: no staging resources to clean up")
    if everything:
        from workflow.local.processes import stop_all

        stopped = stop_all(home)
        for name in stopped:
            click.echo(f"stopped {name}")
        click.echo(f"stopped {len(stopped)} local process(es) of {home}" if stopped else f"no local processes running in {home}")


def _reap(config: PipelineConfig, retention: timedelta | None, execution: str | None, home: Path) -> None:
    from workflow.engine import Engine, EngineError
    from workflow.home import engine_store_path
    from workflow.reaping import LOG_NAME, CleanupError, reap_local

    engine = Engine(engine_store_path(), region=config.aws.region)  # reads the store; runs nothing
    try:
        report = reap_local(engine, engine.state_machine_arn(config.name), config, retention=retention,
                            execution=execution, home=home)  # fmt: skip
    except (EngineError, CleanupError) as error:
        raise CliError(str(error)) from error
    for line in report.lines():
        click.echo(line)
    if not report.deleted:
        click.echo("nothing to remove: no abandoned staging resources")
    click.echo(f"production endpoint {report.production_endpoint}: untouched")
    if report.deleted or report.kept:
        click.echo(f"recorded in {home / LOG_NAME}")
