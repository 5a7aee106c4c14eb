"""infra/: cfn-lint finds nothing, and the roles allow what the deployed pipeline calls."""
from __future__ import annotations

import fnmatch
import functools
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from workflow.config import AwsSettings, PipelineConfig, load_config
from workflow.contracts.functions import FUNCTIONS
from workflow.definition import render_definition
from workflow.naming import execution_input

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
        call = call.removesuffix(".sync").removesuffix(".waitForTaskToken")
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
    "monitoring:DescribeAlarms": "cloudwatch:DescribeAlarms",  # CloudWatch signs as "monitoring"
}


def test_codebuild_role_allows_every_call_the_build_makes(overrides: list[str], lambda_zips: dict[str, Path]) -> None:
    """Record each AWS call of `deploy`, `start` and a status read, as CodeBuild runs them, under moto,
    with a guarded promotion (its alarms are checked first)."""
    from workflow.aws.clients import AwsContext
    from workflow.config import load_config
    from workflow.aws.autoscaling import register_autoscaling
    from workflow.aws.deploy import deploy
    from workflow.aws.executions import find_failure, list_executions, start_execution, wait_for_execution
    from workflow.definition.endpoints import rollout_alarms

    calls: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        calls.add(f"{model.service_model.signing_name}:{model.name}")

    context = AwsContext.from_config(load_config(None, [*overrides, "endpoint.rollout.mode=CANARY"]))
    context.session.events.register("before-call", record)  # before any client: each copies the session's events
    for alarm in rollout_alarms(context.config):
        context.client("cloudwatch").put_metric_alarm(**alarm)  # the stack's, as infra/pipeline.yaml makes them
    calls.clear()
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
    assert {"lambda:CreateFunction", "states:UpdateStateMachine", "application-autoscaling:PutScalingPolicy",
            "cloudwatch:DescribeAlarms"} <= needed
    assert needed - allowed == set(), sorted(needed - allowed)


def test_stack_output_config_overrides_name_real_config_keys() -> None:
    """The `ConfigOverrides` output is pasted after `ddcicd aws ...`: every key must exist."""
    template, _ = decode(str(TEMPLATES[0]))
    text = template["Outputs"]["ConfigOverrides"]["Value"]["Fn::Sub"]
    pairs = re.findall(r"--set (\S+?)=(\S+)", text)
    keys = {key for key, _ in pairs}
    # the stack names the account's resources; a Step Functions endpoint elsewhere is a local choice
    assert keys == ({f"aws.{name}" for name in AwsSettings.model_fields} - {"aws.stepfunctions_endpoint_url"}) | {"cleanup.reaper_role_arn"}
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


# ---------------------------------------------------------------- what each role may do, ARN by ARN

STACK = {"ProjectName": "ddcicd", "DataPrefix": "ddcicd", "AWS::Partition": "aws", "AWS::Region": "eu-west-1",
         "AWS::AccountId": "123456789012", "PipelineBucket": "ddcicd-bucket", "PipelineBucket.Arn": "arn:aws:s3:::ddcicd-bucket",
         "ApprovalTopic": "arn:aws:sns:eu-west-1:123456789012:ddcicd-approval"}  # fmt: skip
BUCKET_ARN = "arn:aws:s3:::ddcicd-bucket/"
SAGEMAKER_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:"


def resolve(value: Any) -> str:
    """A Resource as the stack above would deploy it: Sub, Ref and GetAtt of the names in STACK."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda match: STACK[match.group(1)], value["Fn::Sub"])
    if "Ref" in value:
        return STACK[value["Ref"]]
    if "Fn::GetAtt" in value:
        return f"arn:aws:iam::123456789012:role/{value['Fn::GetAtt'][0]}"
    raise AssertionError(f"cannot resolve {value}")


@functools.cache
def stack_template() -> dict[str, Any]:
    return decode(str(TEMPLATES[0]))[0]


def allows(role: str, action: str, arn: str) -> bool:
    """IAM's matching for the role's Allow statements (`*` spans any characters, `/` included)."""
    template = stack_template()
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if statement["Effect"] == "Allow" and action in actions and any(
                    fnmatch.fnmatchcase(arn, resolve(resource)) for resource in resources):
                return True
    return False


def object_arn(uri: str) -> str:
    """An object a writer of `uri` creates: the URI itself, or a key under it when it is a prefix."""
    bucket_key = uri.removeprefix("s3://").partition("/")[2]
    return BUCKET_ARN + bucket_key + ("output/part-0" if uri.endswith("/") else "")


def written_outputs(definition: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(state, execution input key, writing role) for every output location a Task names: the jobs'
    S3 outputs (written with the SageMaker role) and the Lambdas' `output_uri` (the functions' role)."""
    found = []
    for state_name, state in _tasks(definition):
        text = json.dumps(state.get("Parameters", {}))
        role = "LambdaExecutionRole" if state["Resource"].endswith("lambda:invoke") else "SageMakerExecutionRole"
        for field in ("S3Uri", "S3OutputPath", "output_uri"):
            for key in re.findall(rf'"{field}\.\$": "\$\$\.Execution\.Input\[\'(\w+)\'\]"', text):
                if field == "S3Uri" and key not in ("ProcessedDataUri", "CheckpointUri"):
                    continue  # an input channel, not an output
                found.append((state_name, key, role))
    return found


def _tasks(node: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        for name, state in (node.get("States") or {}).items():
            if state.get("Type") == "Task":
                found.append((name, state))
        for value in node.values():
            found += _tasks(value)
    elif isinstance(node, list):
        for value in node:
            found += _tasks(value)
    return found


def test_jobs_and_functions_may_write_their_own_outputs_and_nothing_else() -> None:
    """Every output the definition names is writable by its writer's role and by no other role."""
    config = PipelineConfig(batch_score={"enabled": True})
    outputs = written_outputs(render_definition(config))
    run = execution_input(config, "ddcicd-20261201-030000-abcd", "s3://ddcicd-bucket/ddcicd/datasets/state-farm/")
    assert {key for _, key, _ in outputs} == {"ProcessedDataUri", "ModelOutputUri", "CheckpointUri", "TransformOutputUri",
                                              "EvaluationUri", "LoadTestUri", "SubmissionUri"}
    writers = ("SageMakerExecutionRole", "LambdaExecutionRole", "StepFunctionsRole", "ReaperRole")
    for state, key, role in outputs:
        target = object_arn(run[key].replace("s3://ddcicd-local/", "s3://ddcicd-bucket/"))
        assert allows(role, "s3:PutObject", target), (state, key, role, target)
        assert [other for other in writers if other != role and allows(other, "s3:PutObject", target)] == [], (state, key)
    png = object_arn(run["EvaluationUri"].replace("evaluation.json", "confusion_matrix.png").replace("ddcicd-local", "ddcicd-bucket"))
    assert allows("LambdaExecutionRole", "s3:PutObject", png)


@pytest.mark.parametrize("key", ["ddcicd/code/steps/train.py", "ddcicd/code/sourcedir.tar.gz", "ddcicd/lambdas/evaluate-0123abcd.zip",
                                 "ddcicd/datasets/state-farm/imgs/train/c0/img_1.jpg", "ddcicd/production/metrics.json",
                                 "builds/ddcicd/state-machine.json"])
def test_no_job_or_function_may_change_code_lambda_zips_datasets_or_production(key: str) -> None:
    """Only the build writes what later runs execute or compare against (the state machine records production's metrics)."""
    target = BUCKET_ARN + key
    for role in ("SageMakerExecutionRole", "LambdaExecutionRole", "ReaperRole"):
        assert not allows(role, "s3:PutObject", target), (role, key)
    assert allows("StepFunctionsRole", "s3:PutObject", target) == (key == "ddcicd/production/metrics.json")
    assert allows("CodeBuildRole", "s3:PutObject", target)
    assert not allows("SageMakerExecutionRole", "s3:GetObject", BUCKET_ARN + "ddcicd/lambdas/evaluate-0123abcd.zip")


def test_the_reaper_may_delete_staging_resources_and_never_production() -> None:
    staging = "ddcicd-20261201-030000-abcd"
    assert allows("ReaperRole", "sagemaker:DeleteEndpoint", f"{SAGEMAKER_ARN}endpoint/{staging}-staging")
    assert allows("ReaperRole", "sagemaker:DeleteEndpointConfig", f"{SAGEMAKER_ARN}endpoint-config/{staging}-staging-config")
    assert allows("ReaperRole", "sagemaker:DeleteModel", f"{SAGEMAKER_ARN}model/{staging}-model")
    production = PipelineConfig().endpoint.production_name
    assert not allows("ReaperRole", "sagemaker:DeleteEndpoint", f"{SAGEMAKER_ARN}endpoint/{production}")
    assert not allows("ReaperRole", "sagemaker:DeleteEndpointConfig", f"{SAGEMAKER_ARN}endpoint-config/{staging}-production-config")
    assert not allows("ReaperRole", "sagemaker:DeleteEndpoint", f"{SAGEMAKER_ARN}endpoint/someone-elses-staging")
    for role in ("LambdaExecutionRole", "SageMakerExecutionRole", "CodeBuildRole"):
        assert not allows(role, "sagemaker:DeleteModel", f"{SAGEMAKER_ARN}model/{staging}-model")
    assert role_actions(decode(str(TEMPLATES[0]))[0], "ReaperRole") & {"s3:PutObject", "s3:GetObject", "lambda:InvokeFunction"} == set()


def test_the_reaper_role_allows_every_call_the_reaper_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the reaper's AWS calls under moto while it reaps one run and protects production."""
    import boto3
    from moto import mock_aws

    from lambdas import runtime
    from lambdas.reaper.app import reap

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
                        "DDCICD_PRODUCTION_ENDPOINT": "ddcicd-production", "DDCICD_RETENTION_HOURS": "0"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    runtime.session.cache_clear()
    calls: set[str] = set()
    with mock_aws():
        sfn, sagemaker = boto3.client("stepfunctions"), boto3.client("sagemaker")
        role = "arn:aws:iam::123456789012:role/x"
        machine = sfn.create_state_machine(name="ddcicd", roleArn=role, definition=json.dumps(
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}))["stateMachineArn"]  # fmt: skip
        monkeypatch.setenv("DDCICD_STATE_MACHINE_ARN", machine)
        run = execution_input(PipelineConfig(), "ddcicd-20261201-030000-abcd", "s3://b/ddcicd/datasets/d/")
        sagemaker.create_model(ModelName=run["ModelName"], ExecutionRoleArn=role, PrimaryContainer={"Image": "1.dkr.ecr.eu-west-1.amazonaws.com/x:1"})
        for config_name, endpoint in ((run["StagingEndpointConfigName"], run["StagingEndpointName"]), ("ddcicd-x-production-config", "ddcicd-production")):
            sagemaker.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": run["ModelName"], "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
            sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
        execution = sfn.start_execution(stateMachineArn=machine, name=run["StagingEndpointName"][:-8], input=json.dumps(run))
        sfn.stop_execution(executionArn=execution["executionArn"])
        runtime.session().events.register("before-call", lambda model, **_: calls.add(f"{model.service_model.signing_name}:{model.name}"))
        result = reap({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, datetime.now(timezone.utc))
    runtime.session.cache_clear()
    assert len(result["deleted"]) == 2 and len(result["kept"]) == 1  # the model is production's
    assert {"sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpointConfig", "states:DescribeExecution"} <= calls
    allowed = role_actions(decode(str(TEMPLATES[0]))[0], "ReaperRole")
    assert calls - allowed == set(), sorted(calls - allowed)


def test_log_groups_keep_logs_for_the_retention_period() -> None:
    """Every catalogued function, the SageMaker jobs, production and the build log to a group with RetentionInDays."""
    template, _ = decode(str(TEMPLATES[0]))
    groups = {resolve(resource["Properties"]["LogGroupName"]): resource["Properties"]["RetentionInDays"]
              for resource in template["Resources"].values() if resource["Type"] == "AWS::Logs::LogGroup"}
    expected = {f"/aws/lambda/{function.default_name}" for function in FUNCTIONS} | {
        "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TransformJobs",
        f"/aws/sagemaker/Endpoints/{PipelineConfig().endpoint.production_name}", "/aws/codebuild/ddcicd"}
    assert set(groups) == expected
    assert all(retention == {"Ref": "LogRetentionDays"} for retention in groups.values())
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30
    assert template["Parameters"]["DataPrefix"]["Default"] == AwsSettings().prefix


def test_the_reapers_rules_are_the_ones_deploy_lets_invoke_it() -> None:
    """ReaperOnFault and ReaperHourly target `<ProjectName>-reaper` by the names REAPER.triggers gives them."""
    from workflow.contracts.functions import REAPER

    template, _ = decode(str(TEMPLATES[0]))
    rules = {resolve(resource["Properties"]["Name"]): resource["Properties"]
             for resource in template["Resources"].values() if resource["Type"] == "AWS::Events::Rule" and "Name" in resource["Properties"]}
    assert set(rules) == {f"ddcicd-{trigger}" for trigger in REAPER.triggers}
    for rule in rules.values():
        assert [resolve(target["Arn"]) for target in rule["Targets"]] == [
            f"arn:aws:lambda:eu-west-1:123456789012:function:{REAPER.default_name}"]
    pattern = rules["ddcicd-reaper-on-fault"]["EventPattern"]
    assert (pattern["source"], pattern["detail-type"]) == (["aws.states"], ["Step Functions Execution Status Change"])
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert [resolve(arn) for arn in pattern["detail"]["stateMachineArn"]] == ["arn:aws:states:eu-west-1:123456789012:stateMachine:ddcicd"]
    assert rules["ddcicd-reaper-hourly"]["ScheduleExpression"] == "rate(1 hour)"


def test_the_state_machine_may_publish_to_the_approval_topic_only() -> None:
    template, _ = decode(str(TEMPLATES[0]))
    statements = [statement for policy in template["Resources"]["StepFunctionsRole"]["Properties"]["Policies"]
                  for statement in policy["PolicyDocument"]["Statement"] if "sns:Publish" in json.dumps(statement["Action"])]
    assert [(statement["Action"], statement["Resource"]) for statement in statements] == [("sns:Publish", {"Ref": "ApprovalTopic"})]
    assert template["Outputs"]["ApprovalTopicArn"]["Value"] == {"Ref": "ApprovalTopic"}
    # config approval.topic_arn defaults to the `<name>-approval` topic in the run's region and account
    assert resolve(template["Resources"]["ApprovalTopic"]["Properties"]["TopicName"]) == f"{PipelineConfig().name}-approval"
    assert not any(allows(role, "sns:Publish", STACK["ApprovalTopic"]) for role in
                   ("SageMakerExecutionRole", "LambdaExecutionRole", "ReaperRole", "CodeBuildRole"))
