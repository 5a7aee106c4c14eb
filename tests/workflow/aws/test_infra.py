"""infra/: cfn-lint finds nothing, and the roles allow what the deployed pipeline calls."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from workflow.config import AwsSettings, PipelineConfig, load_config
from workflow.contracts.functions import FUNCTIONS
from workflow.definition import render_definition

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = sorted((ROOT / "infra").glob("*.yaml"))
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
# API calls whose IAM actions have other names.
IAM_ACTIONS = {"s3:CopyObject": {"s3:GetObject", "s3:PutObject"}, "lambda:Invoke": {"lambda:InvokeFunction"}}


def test_cfn_lint_finds_nothing() -> None:
    assert TEMPLATES
    result = subprocess.run([str(CFN_LINT), *map(str, TEMPLATES)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def role_actions(template: dict[str, Any], role: str) -> set[str]:
    actions: set[str] = set()
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def test_state_machine_role_allows_every_task_the_definition_calls() -> None:
    """Each Task Resource (sagemaker:createTrainingJob.sync, aws-sdk:s3:getObject, lambda:invoke)
    needs its IAM action on the Step Functions role, and nothing is granted by wildcard."""
    template, _ = decode(str(TEMPLATES[0]))
    allowed = role_actions(template, "StepFunctionsRole")
    assert not any(action.endswith("*") for action in allowed)
    definition = render_definition(PipelineConfig(batch_score={"enabled": True}))
    needed = set()
    for resource in task_resources(definition):
        service, _, call = resource.removeprefix("arn:aws:states:::").removeprefix("aws-sdk:").partition(":")
        call = call.removesuffix(".sync")
        api = f"{service}:{call[0].upper()}{call[1:]}"
        needed |= IAM_ACTIONS.get(api, {api})
        if resource.endswith(".sync"):  # .sync polls Describe* and stops the job when the execution stops
            needed |= {f"sagemaker:Describe{call.removeprefix('create')}", f"sagemaker:Stop{call.removeprefix('create')}"}
    assert needed - allowed == set(), json.dumps(sorted(needed - allowed))


def task_resources(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("Type") == "Task":
            found.add(node["Resource"])
        for value in node.values():
            found |= task_resources(value)
    elif isinstance(node, list):
        for value in node:
            found |= task_resources(value)
    return found


# S3 and STS calls whose IAM action has another name (or needs none).
CALL_TO_ACTION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "sts:GetCallerIdentity": None,  # needs no permission
}


def test_codebuild_role_allows_every_call_the_build_makes(context: Any, lambda_zips: dict[str, Path]) -> None:
    """Record each AWS call of `deploy`, `start` and a status read, as CodeBuild runs them, under moto."""
    from workflow.aws.autoscaling import register_autoscaling
    from workflow.aws.deploy import deploy
    from workflow.aws.executions import find_failure, list_executions, start_execution, wait_for_execution

    calls: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        calls.add(f"{model.service_model.signing_name}:{model.name}")

    context.session.events.register("before-call", record)
    deploy(context, lambda_zips)
    deploy(context, lambda_zips)  # the update path
    started = start_execution(context, f"s3://{context.config.aws.bucket}/pipeline/datasets/kaggle/")
    context.client("stepfunctions").stop_execution(executionArn=started.execution_arn)
    wait_for_execution(context, started.execution_arn, poll_seconds=0)
    find_failure(context, started.execution_arn)
    list_executions(context)
    context.client("sagemaker").create_model(ModelName="m", ExecutionRoleArn=context.config.aws.sagemaker_role_arn,
                                             PrimaryContainer={"Image": "1.dkr.ecr.eu-west-1.amazonaws.com/x:1"})  # fmt: skip
    context.client("sagemaker").create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])  # fmt: skip
    context.client("sagemaker").create_endpoint(EndpointName="ddcicd-production", EndpointConfigName="c")
    calls -= {"sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint", "states:StopExecution"}
    assert register_autoscaling(context).registered

    template, _ = decode(str(TEMPLATES[0]))
    allowed = role_actions(template, "CodeBuildRole")
    needed = {CALL_TO_ACTION.get(call, call) for call in calls} - {None}
    assert {"lambda:CreateFunction", "states:UpdateStateMachine", "application-autoscaling:PutScalingPolicy"} <= needed
    assert needed - allowed == set(), sorted(needed - allowed)


def test_stack_output_config_overrides_name_real_config_keys() -> None:
    """The `ConfigOverrides` output is pasted after `ddcicd aws ...`: every key must exist."""
    template, _ = decode(str(TEMPLATES[0]))
    text = template["Outputs"]["ConfigOverrides"]["Value"]["Fn::Sub"]
    pairs = re.findall(r"--set (\S+?)=(\S+)", text)
    keys = {key for key, _ in pairs}
    # the stack names the account's resources; a Step Functions endpoint elsewhere is a local choice
    assert keys == {f"aws.{name}" for name in AwsSettings.model_fields} - {"aws.prefix", "aws.stepfunctions_endpoint_url"}
    config = load_config(None, [f"{key}=placeholder" for key in keys])
    assert config.aws.bucket == "placeholder"


def test_the_roles_grant_every_catalogued_function_by_its_default_name() -> None:
    """Step Functions may invoke, and CodeBuild deploy, `function:${ProjectName}-*`: the defaults must match."""
    template, _ = decode(str(TEMPLATES[0]))
    project = template["Parameters"]["ProjectName"]["Default"]
    text = json.dumps(template)
    assert "function:${ProjectName}-*" in text
    assert all(function.default_name.startswith(f"{project}-") for function in FUNCTIONS)
    assert PipelineConfig().name == project
