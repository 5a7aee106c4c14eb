"""`ddcicd endpoints create|update|list|describe|delete`: local endpoints that outlive the command.

Each endpoint is --instances server processes behind the local SageMaker Runtime router;
its state lives under $DDCICD_HOME/endpoints (default ./.ddcicd).
"""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from workflow.errors import CliError, RunFailed

if TYPE_CHECKING:
    from workflow.local.endpoints import LocalEndpoints


def _local() -> LocalEndpoints:
    from workflow.local.endpoints import LocalEndpoints

    return LocalEndpoints()


def _deploy_names(name: str) -> str:
    """A unique model/config name for this deployment: <name>-YYYYMMDD-HHMMSS-xxxx (<= 63 chars)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{name[: 63 - len(stamp) - 6]}-{stamp}-{secrets.token_hex(2)}"


def _register(local: LocalEndpoints, name: str, model: str, instances: int) -> str:
    from workflow.local.endpoints import ValidationError

    deployment = _deploy_names(name)
    try:
        local.create_model(deployment, str(Path(model).resolve()))
        local.create_endpoint_config(deployment, [{"VariantName": "AllTraffic", "ModelName": deployment,
                                                   "InitialInstanceCount": instances}])
    except ValidationError as error:
        raise CliError(error.message) from None
    return deployment


def _wait(local: LocalEndpoints, name: str, leaving: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        description = local.describe_endpoint(name)
        if description["EndpointStatus"] != leaving:
            return description
        if time.monotonic() > deadline:
            raise RunFailed(f"endpoint {name} is still {leaving} after {timeout:g} s")
        time.sleep(0.2)


def _report(local: LocalEndpoints, description: dict[str, Any], what: str) -> None:
    from workflow.local.runtime import ensure_runtime

    name = description["EndpointName"]
    if description["EndpointStatus"] == "Failed":
        raise RunFailed(f"endpoint {name} failed: {description.get('FailureReason', 'no reason given')}")
    if description.get("FailureReason"):
        raise RunFailed(f"endpoint {name}: {description['FailureReason']}")
    url = ensure_runtime(local.root.parent)
    count = sum(variant["CurrentInstanceCount"] for variant in description["ProductionVariants"])
    click.echo(f"endpoint {name} {what}: {description['EndpointStatus']}, {count} instance(s); "
               f"invoke at {url}/endpoints/{name}/invocations")


@click.group()
def endpoints() -> None:
    """Local endpoints (server processes behind the local SageMaker Runtime)."""


@endpoints.command()
@click.argument("name")
@click.option("--model", "model", required=True, type=click.Path(exists=True, dir_okay=False), help="model.tar.gz")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 16), help="Server processes.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Return only once InService (or Failed).")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds to wait.")
def create(name: str, model: str, instances: int, wait: bool, timeout: float) -> None:
    """Create endpoint NAME serving MODEL."""
    from workflow.local.endpoints import ValidationError

    local = _local()
    if local.state_path(name).exists():
        raise CliError(f"endpoint {name} already exists; `ddcicd endpoints update {name} --model ...` replaces its model")
    deployment = _register(local, name, model, instances)
    try:
        local.create_endpoint(name, deployment)
    except ValidationError as error:
        raise CliError(error.message) from None
    if not wait:
        click.echo(f"endpoint {name} Creating")
        return
    _report(local, _wait(local, name, "Creating", timeout), "created")


@endpoints.command()
@click.argument("name")
@click.option("--model", "model", required=True, type=click.Path(exists=True, dir_okay=False), help="model.tar.gz")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 16), help="Server processes.")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds to wait.")
@click.option("--deployment-config", "deployment_config", default=None,
              help="UpdateEndpoint's DeploymentConfig as JSON (CANARY/LINEAR traffic shifting, rollback alarms).")
def update(name: str, model: str, instances: int, timeout: float, deployment_config: str | None) -> None:
    """Move endpoint NAME to MODEL, blue/green: no request fails during the switch.

    With --deployment-config, traffic moves in steps and the named alarms (local ones, under
    the home's cloudwatch/alarms/) move it back; `describe` shows the split meanwhile."""
    from workflow.local.endpoints import ValidationError

    try:
        parsed = None if deployment_config is None else json.loads(deployment_config)
    except json.JSONDecodeError as error:
        raise CliError(f"--deployment-config is not JSON: {error}") from None
    local = _local()
    deployment = _register(local, name, model, instances)
    try:
        local.update_endpoint(name, deployment, parsed)
    except ValidationError as error:
        raise CliError(error.message) from None
    _report(local, _wait(local, name, "Updating", timeout), "updated")


@endpoints.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="DescribeEndpoint documents plus instances, and the runtime URL.")
def list_endpoints(as_json: bool) -> None:
    """List endpoints and the local SageMaker Runtime URL (boto3 endpoint_url)."""
    from workflow.local.runtime import ensure_runtime, runtime_url

    local = _local()
    described = local.list_endpoints()
    url = ensure_runtime(local.root.parent) if described else runtime_url(local.root.parent)
    if as_json:
        click.echo(json.dumps({"RuntimeUrl": url, "Endpoints": described}, indent=2))
        return
    if not described:
        click.echo("no endpoints")
    for item in described:
        ports = ",".join(str(instance["Port"]) for instance in item["Instances"]) or "-"
        line = f"{item['EndpointName']:<24} {item['EndpointStatus']:<10} {item['EndpointConfigName']:<40} ports {ports}"
        if item.get("FailureReason"):
            line += f"  ({item['FailureReason']})"
        click.echo(line)
    click.echo(f"runtime: {url or 'not running'}")


@endpoints.command()
@click.argument("name")
def describe(name: str) -> None:
    """Print DescribeEndpoint for NAME as JSON, plus `Traffic`: each fleet's share of requests
    and its error rate and p99 over the last minute, and the last guarded rollout."""
    from workflow.local.endpoints import ValidationError

    try:
        local = _local()
        click.echo(json.dumps(dict(local.describe_endpoint(name), Traffic=local.traffic(name)), indent=2))
    except ValidationError as error:
        raise CliError(error.message) from None


@endpoints.command()
@click.argument("name")
def delete(name: str) -> None:
    """Stop NAME's processes and forget it."""
    from workflow.local.endpoints import ValidationError

    try:
        _local().delete_endpoint(name)
    except ValidationError as error:
        raise CliError(error.message) from None
    click.echo(f"endpoint {name} deleted")
