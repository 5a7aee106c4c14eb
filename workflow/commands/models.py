"""`ddcicd models list|describe VERSION|deploy VERSION`: the local model registry's versions.

    ddcicd models list              # versions, newest first: status, accuracy, log loss, p99, which one is in production
    ddcicd models describe 3        # DescribeModelPackage of version 3, as JSON
    ddcicd models deploy 2          # production -> version 2 (Approved only); a rollback is this one command

The registry is $DDCICD_HOME/model_registry.sqlite3 (workflow/local/model_registry.py); the
pipeline registers every candidate past its quality gate (workflow/definition/registry.py).
"""
from __future__ import annotations

import json
from typing import Any

import click

from workflow.errors import CliError


def _config(settings: tuple[str, ...], config_path: str | None) -> Any:
    from workflow.config import load_config

    from pathlib import Path

    return load_config(Path(config_path) if config_path else None, list(settings))


def _number(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


@click.group()
def models() -> None:
    """The pipeline's model versions (local SageMaker Model Registry)."""


_config_options = [
    click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Pipeline config file."),
    click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a config value."),
]


def _with_config(function: Any) -> Any:
    for option in reversed(_config_options):
        function = option(function)
    return function


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="The versions as JSON.")
@_with_config
def list_models(as_json: bool, config_path: str | None, settings: tuple[str, ...]) -> None:
    """Every version, newest first, with its metrics; * marks the one production serves."""
    from workflow.local.model_versions import versions

    print_versions(versions(_config(settings, config_path)), as_json)


def print_versions(found: list[dict[str, Any]], as_json: bool) -> None:
    """The versions table (or JSON) of `models list` and `aws models list`."""
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no model versions registered yet (a `ddcicd run` whose candidate passes the quality gate registers one)")
        return
    click.echo(f"  {'VERSION':>7}  {'STATUS':<21} {'ACCURACY':>8} {'LOG LOSS':>8} {'P99 MS':>8}  {'EXECUTION':<36} REASON")
    for item in found:
        mark = "*" if item["in_production"] else " "
        click.echo(f"{mark} {item['version']:>7}  {item['status']:<21} {_number(item['accuracy'], 4):>8} "
                   f"{_number(item['log_loss'], 4):>8} {_number(item['p99_ms'], 1):>8}  {item['execution_name']:<36} "
                   f"{item['approval_description']}")  # fmt: skip
    if not any(item["in_production"] for item in found):
        click.echo("(production serves none of these versions)")


@models.command()
@click.argument("version", type=click.IntRange(min=1))
@_with_config
def describe(version: int, config_path: str | None, settings: tuple[str, ...]) -> None:
    """DescribeModelPackage of VERSION, as JSON."""
    from workflow.local.model_versions import VersionError, describe_version

    try:
        click.echo(json.dumps(describe_version(_config(settings, config_path), version), indent=2))
    except VersionError as error:
        raise CliError(str(error)) from None


@models.command()
@click.argument("version", type=click.IntRange(min=1))
@click.option("--timeout", type=float, help="Seconds to wait for the end of the rollout [endpoint.rollout.max_seconds + 300].")
@_with_config
def deploy(version: int, timeout: float | None, config_path: str | None, settings: tuple[str, ...]) -> None:
    """Move production to approved VERSION through endpoint.rollout (canary/linear steps, rolled back by the
    alarms, as a promotion); newer approved versions become Rejected (rolled back)."""
    from workflow.local.model_versions import VersionError, deploy_version

    config = _config(settings, config_path)
    try:
        endpoint = deploy_version(config, version, timeout=timeout)
    except VersionError as error:
        raise CliError(str(error)) from None
    click.echo(f"production endpoint {endpoint['EndpointName']} serves model version {version} "
               f"({endpoint['EndpointConfigName']}): {endpoint['EndpointStatus']}")  # fmt: skip
