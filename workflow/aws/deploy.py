"""`ddcicd aws deploy`: make the account match this checkout, idempotently.

Four things, in order, each skipped when already up to date:

1. the job code: steps/*.py under `<CodeUri>steps/` (the processing container imports
   `steps` from there, as the local pipeline's stage_code() does), and the same files as
   `<CodeUri>sourcedir.tar.gz` for the PyTorch training container;
2. every Lambda function of workflow/contracts/functions.py (names from `config.lambdas`),
   so whatever the definition calls exists whichever options are on: each zip goes to S3
   first (zips with numpy and matplotlib exceed the 50 MB direct-upload limit), then
   CreateFunction or, when the deployed CodeSha256 differs, UpdateFunctionCode; settings
   (role, environment, ...) are updated when they differ. The reaper gets its own role and
   its settings in its environment, and the EventBridge rules of infra/pipeline.yaml that
   invoke it are allowed to (AddPermission);
3. the state machine, by name: CreateStateMachine, or UpdateStateMachine when it exists.
   boto3 rather than the Data Science SDK's Workflow.create(): that method logs and
   returns the old ARN when the name exists, without updating, and Workflow.update()
   needs a separate lookup; one create-or-update path with boto3 is simpler to test;
4. production autoscaling, once the production endpoint exists (see autoscaling.py).
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from workflow.aws.autoscaling import register_autoscaling
from workflow.aws.clients import AwsContext, AwsError, split_s3_uri
from workflow.contracts.algorithms import SOURCE_TARBALL
from workflow.contracts.functions import FUNCTIONS, PACKAGES, RUNTIME, LambdaFunction

STEPS_PACKAGE = Path(__file__).resolve().parents[2] / "steps"


@dataclass
class DeployReport:
    code_uri: str = ""
    state_machine_arn: str = ""
    state_machine_created: bool = False
    functions: dict[str, str] = field(default_factory=dict)  # name -> created|updated|unchanged
    triggers: dict[str, str] = field(default_factory=dict)  # EventBridge rule ARN -> allowed|unchanged
    autoscaling: str = ""
    definition: dict[str, Any] = field(default_factory=dict)


def lambda_packages() -> tuple[str, ...]:
    """The zips `deploy` needs: one per package of the catalogue."""
    return tuple(PACKAGES)


# ---------------------------------------------------------------- job code


def upload_code(context: AwsContext) -> str:
    """steps/*.py -> <CodeUri>steps/, and <CodeUri>sourcedir.tar.gz; returns CodeUri.

    The loose files are the processing job's code input (execution_input()'s CodeUri). The
    tarball is the same files in the layout SageMaker framework containers unpack into
    /opt/ml/code (`sagemaker_submit_directory`), for `training.algorithm: pytorch`.
    """
    code_uri = context.s3_uri("code") + "/"
    bucket, prefix = split_s3_uri(code_uri)
    s3 = context.client("s3")
    sources = sorted(STEPS_PACKAGE.glob("*.py"))
    for source in sources:
        s3.upload_file(str(source), bucket, f"{prefix}steps/{source.name}")
    s3.put_object(Bucket=bucket, Key=f"{prefix}{SOURCE_TARBALL}", Body=source_tarball(sources))
    return code_uri


def source_tarball(sources: list[Path]) -> bytes:
    """A deterministic tar.gz of steps/*.py (fixed times and owners): same code, same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(fileobj=zipped, mode="w") as archive:
        for source in sources:
            data = source.read_bytes()
            info = tarfile.TarInfo(f"steps/{source.name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ---------------------------------------------------------------- Lambda functions


def code_sha256(path: Path) -> str:
    """Lambda's CodeSha256: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def upload_zip(context: AwsContext, package: str, path: Path) -> tuple[str, str]:
    """Content-addressed key, so a redeploy of the same zip uploads nothing."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    bucket, key = split_s3_uri(context.s3_uri("lambdas", f"{package}-{digest}.zip"))
    s3 = context.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] not in {"404", "NoSuchKey", "NotFound"}:
            raise
        s3.upload_file(str(path), bucket, key)
    return bucket, key


def function_environment(context: AwsContext, function: LambdaFunction) -> dict[str, str]:
    """Settings a function reads from its environment: the reaper's come from the pipeline config."""
    if function.role != "reaper":
        return {}
    from lambdas.reaper.events import PRODUCTION_ENDPOINT_VARIABLE, RETENTION_HOURS_VARIABLE, STATE_MACHINE_VARIABLE

    return {
        STATE_MACHINE_VARIABLE: context.state_machine_arn(),
        PRODUCTION_ENDPOINT_VARIABLE: context.config.endpoint.production_name,
        RETENTION_HOURS_VARIABLE: f"{context.config.cleanup.retention_hours:g}",
    }


def _function_settings(context: AwsContext, function: LambdaFunction) -> dict[str, Any]:
    roles = {"pipeline": context.config.aws.lambda_role_arn, "reaper": context.config.cleanup.reaper_role_arn}
    settings: dict[str, Any] = {
        "Role": roles[function.role],
        "Handler": function.handler,
        "Runtime": RUNTIME,
        "Timeout": context.config.lambdas.timeout_of(function),
        "MemorySize": function.memory_mb,
    }
    environment = function_environment(context, function)
    if environment:
        settings["Environment"] = {"Variables": environment}
    return settings


def _differs(current: dict[str, Any], setting: str, value: Any) -> bool:
    if setting == "Environment":  # GetFunctionConfiguration may add an Error next to Variables
        return (current.get("Environment") or {}).get("Variables") != value["Variables"]
    return current.get(setting) != value


def deploy_function(context: AwsContext, function: LambdaFunction, zip_path: Path, location: tuple[str, str]) -> str:
    """Create or update one function; returns created, updated or unchanged."""
    functions = context.client("lambda")
    name = context.config.lambdas.name_of(function)
    settings = _function_settings(context, function)
    bucket, key = location
    try:
        current = functions.get_function_configuration(FunctionName=name)
    except functions.exceptions.ResourceNotFoundException:
        functions.create_function(
            FunctionName=name, Code={"S3Bucket": bucket, "S3Key": key}, Architectures=["x86_64"],
            Description=f"ddcicd {function.package} ({context.config.name})", Publish=False, **settings,
        )  # fmt: skip
        functions.get_waiter("function_active_v2").wait(FunctionName=name)
        return "created"
    outcome = "unchanged"
    if current.get("CodeSha256") != code_sha256(zip_path):
        functions.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key=key)
        functions.get_waiter("function_updated_v2").wait(FunctionName=name)
        outcome = "updated"
    changed = {setting: value for setting, value in settings.items() if _differs(current, setting, value)}
    if changed:
        functions.update_function_configuration(FunctionName=name, **changed)
        functions.get_waiter("function_updated_v2").wait(FunctionName=name)
        outcome = "updated"
    return outcome


def deploy_lambdas(context: AwsContext, zips: dict[str, Path]) -> dict[str, str]:
    """`zips`: package name -> built zip (workflow.aws.packaging.build_zip's output).

    Returns deployed function name -> created, updated or unchanged."""
    missing = sorted(set(lambda_packages()) - set(zips))
    if missing:
        raise AwsError(f"no Lambda zip for {missing}: build them with `python -m workflow.aws.packaging`")
    locations = {package: upload_zip(context, package, zips[package]) for package in lambda_packages()}
    return {
        context.config.lambdas.name_of(function): deploy_function(
            context, function, zips[function.package], locations[function.package]
        )
        for function in FUNCTIONS
    }


def rule_arn(context: AwsContext, trigger: str) -> str:
    """The EventBridge rule infra/pipeline.yaml names `<config name>-<trigger>`."""
    return f"arn:{context.partition}:events:{context.region}:{context.account}:rule/{context.config.name}-{trigger}"


def allow_triggers(context: AwsContext) -> dict[str, str]:
    """Let each function's EventBridge rules invoke it (the rules exist before the function does,
    so the stack cannot grant this). Returns rule ARN -> allowed or unchanged."""
    functions = context.client("lambda")
    outcomes = {}
    for function in FUNCTIONS:
        name = context.config.lambdas.name_of(function)
        for trigger in function.triggers:
            source = rule_arn(context, trigger)
            statement_id = f"eventbridge-{trigger}"
            try:
                policy = json.loads(functions.get_policy(FunctionName=name)["Policy"])
            except functions.exceptions.ResourceNotFoundException:  # no resource policy yet
                policy = {"Statement": []}
            if any(statement.get("Sid") == statement_id for statement in policy["Statement"]):
                outcomes[source] = "unchanged"
                continue
            functions.add_permission(FunctionName=name, StatementId=statement_id, Action="lambda:InvokeFunction",
                                     Principal="events.amazonaws.com", SourceArn=source, SourceAccount=context.account)
            outcomes[source] = "allowed"
    return outcomes


# ---------------------------------------------------------------- state machine


def find_state_machine(context: AwsContext, name: str) -> str | None:
    paginator = context.client("stepfunctions").get_paginator("list_state_machines")
    for page in paginator.paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    return None


def deploy_state_machine(context: AwsContext, definition: dict[str, Any]) -> tuple[str, bool]:
    """Create or update the state machine named config.name; returns (arn, created)."""
    sfn = context.client("stepfunctions")
    text = json.dumps(definition)
    role = context.config.aws.stepfunctions_role_arn
    arn = find_state_machine(context, context.config.name)
    if arn is None:
        created = sfn.create_state_machine(
            name=context.config.name, definition=text, roleArn=role, type="STANDARD",
            tags=[{"key": "project", "value": "ddcicd"}],
        )  # fmt: skip
        return created["stateMachineArn"], True
    sfn.update_state_machine(stateMachineArn=arn, definition=text, roleArn=role)
    return arn, False


# ---------------------------------------------------------------- all of it


def deploy(context: AwsContext, zips: dict[str, Path]) -> DeployReport:
    """Code, state machine (built for this account), Lambdas, then autoscaling if it can.

    With a CANARY or LINEAR rollout the stack's alarms must match the config first
    (workflow/aws/rollout_alarms.py): the definition names them, CloudWatch holds them.

    The state machine goes before the Lambdas because the reaper's environment names its ARN,
    which a Step Functions endpoint other than AWS's assigns; Step Functions does not check
    that the functions a definition calls exist yet.
    """
    from workflow.definition import render_definition

    from workflow.aws.rollout_alarms import check_rollout_alarms

    report = DeployReport()
    check_rollout_alarms(context)  # before anything changes: a guarded promotion names them
    report.code_uri = upload_code(context)
    report.definition = render_definition(context.config, context.account)
    report.state_machine_arn, report.state_machine_created = deploy_state_machine(context, report.definition)
    report.functions = deploy_lambdas(context, zips)
    report.triggers = allow_triggers(context)
    outcome = register_autoscaling(context)
    report.autoscaling = f"{outcome.resource_id}: {outcome.message}" if outcome.resource_id else outcome.message
    return report
