"""`ddcicd aws ...`: the same pipeline on a real account (Step Functions, SageMaker, Lambda).

    ddcicd aws upload-data --data ~/kaggle/state-farm     # once: the raw images to S3
    ddcicd aws deploy                                     # code, Lambdas, state machine, autoscaling
    ddcicd aws start --dataset state-farm --wait          # one execution, followed to the end
    ddcicd aws status [ID] | aws redrive ID | aws executions | aws approve ID [--reject --reason TEXT]
    ddcicd aws models list [--json] | aws models describe VERSION   # the Model Registry's versions
    ddcicd aws models deploy VERSION                 # production -> VERSION through endpoint.rollout
    ddcicd aws stack-parameters                      # infra/pipeline.yaml's overrides from the config

Step Functions can be another endpoint (`--stepfunctions-endpoint-url`, config
aws.stepfunctions_endpoint_url), e.g. `ddcicd engine serve`: the same commands then run
the pipeline on the local engine.

Settings come from the config file (`--config`, or $DDCICD_CONFIG) and `--set` overrides,
which CodeBuild feeds from its environment (see buildspec.yml). boto3 and the SDKs are
imported inside the commands only, so `ddcicd --help` stays light.
"""
from __future__ import annotations

import contextlib
import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from steps.atomic import write_atomically
from workflow.errors import CliError, RunFailed

if TYPE_CHECKING:
    from workflow.aws.clients import AwsContext
    from workflow.aws.executions import Failure

HISTORY_LINES = 12  # events printed after a failure


def _config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override a config key, e.g. aws.bucket=my-bucket")(command)  # fmt: skip
    return click.option("--config", "config_path", envvar="DDCICD_CONFIG", type=click.Path(dir_okay=False, path_type=Path),
                        help="Pipeline config (YAML); default $DDCICD_CONFIG.")(command)  # fmt: skip


def _with_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Load the config, make the AwsContext, and turn AWS errors into one-line CLI errors."""

    @functools.wraps(command)
    def wrapper(config_path: Path | None, overrides: tuple[str, ...], **options: Any) -> Any:
        from workflow.aws.clients import AwsContext
        from workflow.config import ConfigError, load_config

        endpoint = options.pop("stepfunctions_endpoint_url", None)
        if endpoint:
            overrides = (*overrides, f"aws.stepfunctions_endpoint_url={endpoint}")
        try:
            config = load_config(config_path, overrides)
        except ConfigError as error:
            raise CliError(str(error)) from error
        with _aws_errors():
            return command(AwsContext.from_config(config), **options)

    return _config_options(wrapper)


def _endpoint_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--stepfunctions-endpoint-url: Step Functions elsewhere (`ddcicd engine serve`), every other service on AWS."""
    return click.option("--stepfunctions-endpoint-url", metavar="URL",
                        help="Talk to Step Functions at URL, e.g. `ddcicd engine serve`'s (config aws.stepfunctions_endpoint_url).",
                        )(command)  # fmt: skip


@contextlib.contextmanager
def _aws_errors() -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, WaiterError

    from workflow.aws.clients import AwsError

    try:
        yield
    except NoCredentialsError as error:
        raise CliError(f"no AWS credentials ({error}): set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from error
    except ClientError as error:
        detail = error.response.get("Error", {})
        raise CliError(f"AWS {error.operation_name}: {detail.get('Code')}: {detail.get('Message')}") from error
    except WaiterError as error:
        raise CliError(f"AWS waiter {error.name}: {error.last_response.get('Error', error.reason)}") from error
    except BotoCoreError as error:
        raise CliError(f"AWS: {error}") from error
    except AwsError as error:
        raise CliError(str(error)) from error


def _write_json(path: Path, document: Any) -> None:
    """Atomically: CodeBuild may collect the artifact while a rerun writes it."""
    write_atomically(path, (json.dumps(document, indent=2, default=str) + "\n").encode(), fsync=False)


@click.group("aws")
def aws() -> None:
    """Deploy and run the pipeline on AWS (Step Functions, SageMaker, Lambda)."""


# ---------------------------------------------------------------- upload-data


@aws.command("upload-data")
@click.option("--data", "folder", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A dataset in the Kaggle layout (or processed RecordIO).")  # fmt: skip
@click.option("--name", help="Dataset name under <prefix>/datasets/ (default: the folder's name).")
@click.option("--workers", default=16, show_default=True, type=click.IntRange(1, 128), help="Parallel uploads.")
@_with_context
def upload_data_command(context: AwsContext, folder: Path, name: str | None, workers: int) -> None:
    """Upload a dataset to the bucket; files already there (same size and SHA-256) are skipped."""
    from workflow.aws.upload import upload_data
    from workflow.commands._progress import terminal_progress

    if not folder.is_dir():
        raise CliError(f"--data {folder}: no such directory")
    destination = context.s3_uri("datasets", name or folder.resolve().name) + "/"
    with terminal_progress(f"uploading to {destination}") as progress:
        report = upload_data(context, folder, destination, workers, progress)
    click.echo(f"{report.destination}: {report.uploaded} uploaded ({report.bytes_uploaded / 1e6:.1f} MB), "
               f"{report.skipped} already there")  # fmt: skip
    click.echo(f"start a run on it with: ddcicd aws start --dataset {name or folder.resolve().name} --wait", err=True)


# ---------------------------------------------------------------- deploy


@aws.command("deploy")
@_endpoint_option
@click.option("--lambda-zips", type=click.Path(file_okay=False, path_type=Path),
              help="Use prebuilt zips DIR/<package>.zip (python -m workflow.aws.packaging) instead of building them.")  # fmt: skip
@click.option("--definition-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the deployed ASL JSON here (a build artifact).")  # fmt: skip
@_with_context
def deploy_command(context: AwsContext, lambda_zips: Path | None, definition_out: Path | None) -> None:
    """Upload job code, create or update the Lambdas and the state machine, register autoscaling."""
    from workflow.aws.deploy import deploy, lambda_packages
    from workflow.aws.rollout_alarms import check_rollout_alarms

    check_rollout_alarms(context)  # fail before the minutes of building zips (deploy checks again)
    zips = _lambda_zips(lambda_zips, lambda_packages())
    report = deploy(context, zips)
    click.echo(f"job code      {report.code_uri}steps/")
    for function, outcome in report.functions.items():
        click.echo(f"lambda        {function}: {outcome}")
    click.echo(f"state machine {report.state_machine_arn}: {'created' if report.state_machine_created else 'updated'}")
    click.echo(f"autoscaling   {report.autoscaling}")
    if definition_out is not None:
        _write_json(definition_out, report.definition)
        click.echo(f"wrote {definition_out}", err=True)


def _lambda_zips(folder: Path | None, packages: tuple[str, ...]) -> dict[str, Path]:
    if folder is not None:
        zips = {package: folder / f"{package}.zip" for package in packages}
        missing = [str(path) for path in zips.values() if not path.is_file()]
        if missing:
            raise CliError(f"--lambda-zips {folder}: missing {', '.join(missing)} (build: python -m workflow.aws.packaging --out-dir {folder})")
        return zips
    from workflow.aws.packaging import build_zip

    click.echo("building Lambda zips (pip, for the Lambda platform) ...", err=True)
    try:
        return {package: build_zip(package) for package in packages}
    except RuntimeError as error:
        raise CliError(str(error)) from error


# ---------------------------------------------------------------- start, status, redrive


@aws.command("start")
@_endpoint_option
@click.option("--dataset", envvar="DDCICD_DATASET", help="A dataset uploaded with upload-data (name); default $DDCICD_DATASET.")
@click.option("--data-uri", help="Or any s3:// prefix in the Kaggle layout.")
@click.option("--wait", is_flag=True, help="Follow the execution to its end; exit 1 if it fails.")
@click.option("--poll", default=15.0, show_default=True, type=click.FloatRange(0.1), help="Seconds between status checks.")
@click.option("--summary-out", type=click.Path(dir_okay=False, path_type=Path), help="With --wait: write the execution summary JSON here.")
@_with_context
def start_command(context: AwsContext, dataset: str | None, data_uri: str | None, wait: bool, poll: float,
                  summary_out: Path | None) -> None:  # fmt: skip
    """Start an execution with the same input a local run gets."""
    from workflow.aws.executions import start_execution

    if bool(dataset) == bool(data_uri):
        raise CliError("give exactly one of --dataset NAME (uploaded with `ddcicd aws upload-data`) or --data-uri s3://...")
    raw_uri = data_uri or context.s3_uri("datasets", dataset or "") + "/"
    started = start_execution(context, raw_uri)
    click.echo(started.execution_arn)
    click.echo(f"execution {started.execution_name} started on {raw_uri}", err=True)
    if wait:
        _follow(context, started.execution_arn, poll, summary_out)


@aws.command("status")
@_endpoint_option
@click.argument("identifier", required=False, metavar="[ID]")
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON.")
@_with_context
def status_command(context: AwsContext, identifier: str | None, as_json: bool) -> None:
    """Status of an execution (name or ARN; default the latest), and why it failed if it did."""
    from workflow.aws.executions import describe_execution, find_failure, history, resolve_execution, summary

    execution_arn = resolve_execution(context, identifier)
    description = describe_execution(context, execution_arn)
    ended_badly = description["status"] in {"FAILED", "TIMED_OUT", "ABORTED"}
    events = history(context, execution_arn) if ended_badly else []
    failure = find_failure(context, execution_arn, events) if ended_badly else None
    if as_json:
        click.echo(json.dumps(summary(description, failure), indent=2, default=str))
        return
    _print_description(description)
    if failure is not None:
        _print_failure(failure, events)


@aws.command("redrive")
@_endpoint_option
@click.argument("identifier", metavar="ID")
@click.option("--wait", is_flag=True, help="Follow the redriven execution to its end.")
@click.option("--poll", default=15.0, show_default=True, type=click.FloatRange(0.1), help="Seconds between status checks.")
@_with_context
def redrive_command(context: AwsContext, identifier: str, wait: bool, poll: float) -> None:
    """Redrive a failed execution from the state that failed (RedriveExecution)."""
    from workflow.aws.executions import redrive_execution, resolve_execution

    execution_arn = resolve_execution(context, identifier)
    response = redrive_execution(context, execution_arn)
    click.echo(f"redriving {execution_arn} (at {response.get('redriveDate')})", err=True)
    if wait:
        _follow(context, execution_arn, poll, None)


@aws.command("executions")
@_endpoint_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@_with_context
def executions_command(context: AwsContext, limit: int, as_json: bool) -> None:
    """The state machine's executions, newest first."""
    from workflow.aws.executions import list_executions

    found = list_executions(context, limit)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    for execution in found:
        stop = execution.get("stopDate")
        click.echo(f"{execution['name']}  {execution['status']:<9}  {execution['startDate']:%Y-%m-%d %H:%M:%S}  "
                   f"{'' if stop is None else f'{stop:%H:%M:%S}'}")  # fmt: skip
    if not found:
        click.echo(f"no executions of {context.config.name} yet", err=True)


@aws.command("approve")
@_endpoint_option
@click.argument("identifier", metavar="EXECUTION")
@click.option("--reject", is_flag=True, help="Reject: the run cleans up and ends FAILED with ApprovalRejected.")
@click.option("--reason", help="Why (sent as the rejection's cause, or with the approval).")
@_with_context
def approve_command(context: AwsContext, identifier: str, reject: bool, reason: str | None) -> None:
    """Approve (or reject) the promotion an execution waits for: SendTaskSuccess/SendTaskFailure with its task token."""
    from workflow.aws.approval import approve
    from workflow.aws.executions import resolve_execution

    execution_arn = resolve_execution(context, identifier)
    waiting = approve(context, execution_arn, reject, reason)
    verdict = "rejected" if reject else "approved"
    click.echo(f"{verdict} {waiting.state} of {execution_arn.rsplit(':', 1)[-1]}")


# ---------------------------------------------------------------- following and explaining


def _follow(context: AwsContext, execution_arn: str, poll: float, summary_out: Path | None) -> None:
    """Wait, print each state as it starts, write the summary, register autoscaling on success."""
    from workflow.aws.autoscaling import register_autoscaling
    from workflow.aws.executions import find_failure, history, summary, wait_for_execution

    began = time.monotonic()

    def entered(state: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - began), 60)
        click.echo(f"  {minutes:3d}:{seconds:02d}  {state}", err=True)

    try:
        description = wait_for_execution(context, execution_arn, poll, on_state=entered)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; the execution keeps running: ddcicd aws status {execution_arn}", err=True)
        raise SystemExit(130) from None
    succeeded = description["status"] == "SUCCEEDED"
    events = [] if succeeded else history(context, execution_arn)
    failure = None if succeeded else find_failure(context, execution_arn, events)
    if summary_out is not None:
        _write_json(summary_out, summary(description, failure))
    _print_description(description)
    if not succeeded:
        name = description.get("name")
        if failure is None:
            raise RunFailed(f"execution {name} {description['status']} (ddcicd aws status {name})")
        _print_failure(failure, events)
        next_step = (f"resume: ddcicd aws redrive {name}" if failure.redrivable
                     else "the state machine caught it and cleaned up; fix the cause and start a new run: ddcicd aws start")  # fmt: skip
        where = f" in {failure.state}" if failure.state else ""
        raise RunFailed(f"execution {name} {description['status']}{where}: {failure.error} ({next_step})")
    outcome = register_autoscaling(context)
    if outcome.registered:
        settings = context.config.endpoint
        click.echo(f"autoscaling   {outcome.resource_id}: {settings.autoscaling_min}..{settings.autoscaling_max} instances", err=True)


def _print_description(description: dict[str, Any]) -> None:
    redriven = description.get("redriveCount") or 0
    suffix = f" (redriven {redriven}x)" if redriven else ""
    click.echo(f"execution {description.get('name')}: {description['status']}{suffix}")


def _print_failure(failure: Failure, events: list[dict[str, Any]]) -> None:
    where = f"in state {failure.state}" if failure.state else "before any state"
    click.echo(f"failed {where}: {failure.error} ({failure.event_type})")
    if failure.cause:
        click.echo(f"  cause: {failure.cause[:2000]}")
    click.echo("last events:")
    for event in events[-HISTORY_LINES:]:
        details = next((value for key, value in event.items() if key.endswith("EventDetails") and isinstance(value, dict)), {})
        label = details.get("name") or details.get("error") or details.get("resourceType") or ""
        click.echo(f"  {event['timestamp']:%H:%M:%S}  {event['type']:<28} {label}")


# ---------------------------------------------------------------- models


@aws.group("models")
def aws_models() -> None:
    """The pipeline's model versions in SageMaker Model Registry (as `ddcicd models`)."""


@aws_models.command("list")
@click.option("--json", "as_json", is_flag=True, help="The versions as JSON.")
@_with_context
def models_list_command(context: AwsContext, as_json: bool) -> None:
    """Every version, newest first, with its metrics; * marks the one production serves."""
    from workflow.aws.models import versions
    from workflow.commands.models import print_versions

    print_versions(versions(context), as_json)


@aws_models.command("describe")
@click.argument("version", type=click.IntRange(min=1))
@_with_context
def models_describe_command(context: AwsContext, version: int) -> None:
    """DescribeModelPackage of VERSION, as JSON."""
    from workflow.aws.models import describe_version

    click.echo(json.dumps(describe_version(context, version), indent=2, default=str))


@aws_models.command("deploy")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--timeout", type=float, help="Seconds to wait for the end of the rollout [endpoint.rollout.max_seconds + 900].")
@_with_context
def models_deploy_command(context: AwsContext, version: int, timeout: float | None) -> None:
    """Move production to approved VERSION through endpoint.rollout (canary/linear, rolled back by the alarms)."""
    from workflow.aws.models import deploy_version

    endpoint = deploy_version(context, version, timeout)
    click.echo(f"production endpoint {endpoint['EndpointName']} serves model version {version} "
               f"({endpoint['EndpointConfigName']}): {endpoint['EndpointStatus']}")  # fmt: skip


@aws.command("stack-parameters")
@_with_context
def stack_parameters_command(context: AwsContext) -> None:
    """infra/pipeline.yaml's --parameter-overrides that match the config (project, prefix, rollout alarms)."""
    from workflow.aws.rollout_alarms import overrides_text

    click.echo(overrides_text(context.config))
