"""deploy: job code, Lambdas, state machine and autoscaling, against moto; idempotent on rerun."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from workflow.aws.autoscaling import DIMENSION, register_autoscaling
from workflow.aws.clients import AwsContext, AwsError
from workflow.aws.deploy import code_sha256, deploy
from workflow.cli import cli
from workflow.config import load_config
from workflow.definition import render_definition

STEPS = Path(__file__).resolve().parents[3] / "steps"


def test_deploy_creates_code_lambdas_and_state_machine(context: AwsContext, lambda_zips: dict[str, Path]) -> None:
    report = deploy(context, lambda_zips)
    config = context.config

    listing = context.client("s3").list_objects_v2(Bucket=config.aws.bucket, Prefix="pipeline/code/steps/")
    assert {item["Key"].rsplit("/", 1)[1] for item in listing["Contents"]} == {path.name for path in STEPS.glob("*.py")}
    tarball = context.client("s3").get_object(Bucket=config.aws.bucket, Key="pipeline/code/sourcedir.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        assert archive.extractfile("steps/train.py").read() == (STEPS / "train.py").read_bytes()  # type: ignore[union-attr]
    assert report.code_uri == f"s3://{config.aws.bucket}/pipeline/code/"

    functions = context.client("lambda")
    assert report.functions == {name: "created" for name in ("ddcicd-evaluate", "ddcicd-load-test", "ddcicd-load-test-merge",
                                                             "ddcicd-submission", "ddcicd-reaper")}  # fmt: skip
    merge = functions.get_function_configuration(FunctionName="ddcicd-load-test-merge")
    assert merge["Handler"] == "lambdas.load_test.app.merge_handler"
    assert merge["Role"] == config.aws.lambda_role_arn
    assert merge["Runtime"] == "python3.12"
    assert (merge["Timeout"], merge["MemorySize"]) == (900, 512)  # the catalogue's, no override configured
    assert merge["CodeSha256"] == code_sha256(lambda_zips["load_test"])
    evaluate = functions.get_function_configuration(FunctionName="ddcicd-evaluate")
    assert (evaluate["Handler"], evaluate["MemorySize"]) == ("lambdas.evaluate.app.handler", 1536)
    submission = functions.get_function_configuration(FunctionName="ddcicd-submission")
    assert submission["CodeSha256"] == code_sha256(lambda_zips["submission"])

    sfn = context.client("stepfunctions")
    machine = sfn.describe_state_machine(stateMachineArn=report.state_machine_arn)
    assert report.state_machine_created
    assert machine["name"] == config.name
    assert machine["roleArn"] == config.aws.stepfunctions_role_arn
    definition = json.loads(machine["definition"])
    assert definition == render_definition(config, context.account)
    evaluate_state = definition["States"]["Evaluate"]
    assert evaluate_state["Parameters"]["FunctionName"] == evaluate["FunctionArn"]
    assert report.autoscaling.startswith("waiting for the first promotion")


def test_second_deploy_updates_in_place(context: AwsContext, lambda_zips: dict[str, Path], tmp_path: Path,
                                        overrides: list[str]) -> None:  # fmt: skip
    first = deploy(context, lambda_zips)
    again = deploy(context, lambda_zips)
    assert set(again.functions.values()) == {"unchanged"}
    assert (again.state_machine_arn, again.state_machine_created) == (first.state_machine_arn, False)

    # A changed zip and a changed setting: code and configuration are updated.
    changed = tmp_path / "evaluate.zip"
    changed.write_bytes(lambda_zips["evaluate"].read_bytes() + b"\0")
    gate = load_config(None, [*overrides, "lambdas.timeout_seconds=600", "quality_gate.min_accuracy=0.5"])
    report = deploy(AwsContext.from_config(gate), {**lambda_zips, "evaluate": changed})
    assert set(report.functions.values()) == {"updated"}
    functions = context.client("lambda")
    assert functions.get_function_configuration(FunctionName="ddcicd-evaluate")["CodeSha256"] == code_sha256(changed)
    assert functions.get_function_configuration(FunctionName="ddcicd-load-test")["Timeout"] == 600
    machines = context.client("stepfunctions").list_state_machines()["stateMachines"]
    assert len(machines) == 1
    definition = json.loads(context.client("stepfunctions").describe_state_machine(stateMachineArn=first.state_machine_arn)["definition"])
    assert definition == render_definition(gate, context.account)


def test_deploy_without_a_zip_names_the_missing_one(context: AwsContext, lambda_zips: dict[str, Path]) -> None:
    with pytest.raises(AwsError, match=r"no Lambda zip for \['load_test', 'reaper', 'submission'\]"):
        deploy(context, {"evaluate": lambda_zips["evaluate"]})


def lambda_arns(node: Any) -> set[str]:
    """Every Lambda function ARN in an ASL document (FunctionName parameters and function Resources)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and ":lambda:" in value and ":function:" in value and key in ("FunctionName", "Resource"):
                found.add(value)
            found |= lambda_arns(value)
    elif isinstance(node, list):
        for value in node:
            found |= lambda_arns(value)
    return found


@pytest.mark.parametrize("options", [[], ["batch_score.enabled=true"], ["training.algorithm=pytorch"],
                                     ["training.algorithm=pytorch", "batch_score.enabled=true"]])  # fmt: skip
def test_every_function_the_deployed_definition_calls_is_deployed(
    options: list[str], overrides: list[str], lambda_zips: dict[str, Path]
) -> None:
    """Whatever the options, each Lambda ARN in the ASL names a function `aws deploy` created."""
    context = AwsContext.from_config(load_config(None, [*overrides, *options]))
    report = deploy(context, lambda_zips)
    called = lambda_arns(report.definition)
    expected = {"ddcicd-evaluate", "ddcicd-load-test", "ddcicd-load-test-merge"}
    if "batch_score.enabled=true" in options:
        expected.add("ddcicd-submission")
    assert {arn.rsplit(":", 1)[1] for arn in called} == expected
    deployed = {function["FunctionArn"] for function in context.client("lambda").list_functions()["Functions"]}
    assert called - deployed == set()


def create_production_endpoint(context: AwsContext) -> None:
    sagemaker = context.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=context.config.aws.sagemaker_role_arn,
                           PrimaryContainer={"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:1"})  # fmt: skip
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    ])  # fmt: skip
    sagemaker.create_endpoint(EndpointName=context.config.endpoint.production_name, EndpointConfigName="c")


def test_autoscaling_is_registered_once_production_exists(overrides: list[str]) -> None:
    config = load_config(None, [*overrides, "endpoint.autoscaling_min=2", "endpoint.autoscaling_max=6",
                                "endpoint.autoscaling_invocations_per_instance=750"])  # fmt: skip
    context = AwsContext.from_config(config)
    assert register_autoscaling(context).resource_id is None
    create_production_endpoint(context)
    for _ in range(2):  # idempotent
        outcome = register_autoscaling(context)
        assert (outcome.resource_id, outcome.registered) == ("endpoint/ddcicd-production/variant/AllTraffic", True)
    scaling = context.client("application-autoscaling")
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["ScalableDimension"]) == ("endpoint/ddcicd-production/variant/AllTraffic", DIMENSION)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 6)
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert tracking["TargetValue"] == 750.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_autoscaling_is_released_when_the_configured_instance_type_changes(overrides: list[str]) -> None:
    """UpdateEndpoint cannot change the instance type of a scalable target: deregister first."""
    context = AwsContext.from_config(load_config(None, overrides))
    create_production_endpoint(context)
    assert register_autoscaling(context).registered
    bigger = AwsContext.from_config(load_config(None, [*overrides, "endpoint.instance_type=ml.c5.xlarge"]))
    outcome = register_autoscaling(bigger)
    assert not outcome.registered
    assert outcome.message.startswith("released: ml.m5.large deployed, ml.c5.xlarge configured")
    assert bigger.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert not register_autoscaling(bigger).registered  # nothing left to release: still fine


def test_autoscaling_refuses_max_below_min(overrides: list[str]) -> None:
    config = load_config(None, [*overrides, "endpoint.autoscaling_min=3", "endpoint.autoscaling_max=2"])
    with pytest.raises(AwsError, match=r"autoscaling_max \(2\) is below endpoint.autoscaling_min \(3\)"):
        register_autoscaling(AwsContext.from_config(config))


def test_deploy_command_reports_each_part_and_writes_the_definition(
    overrides: list[str], lambda_zips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "build" / "state-machine.json"
    result = CliRunner().invoke(cli, ["aws", "deploy", "--lambda-zips", str(lambda_zips["evaluate"].parent),
                                      "--definition-out", str(out), *(f"--set={item}" for item in overrides)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "lambda        ddcicd-evaluate: created" in result.output
    assert "state machine arn:aws:states:eu-west-1:123456789012:stateMachine:ddcicd: created" in result.output
    assert json.loads(out.read_text())["StartAt"] == "Process"


def test_deploy_command_with_missing_zips_is_a_one_line_error(overrides: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["aws", "deploy", "--lambda-zips", str(tmp_path), *(f"--set={item}" for item in overrides)])
    assert result.exit_code == 2
    assert f"--lambda-zips {tmp_path}: missing {tmp_path}/evaluate.zip" in result.output


def test_deploy_gives_the_reaper_its_role_settings_and_rules(context: AwsContext, lambda_zips: dict[str, Path],
                                                              overrides: list[str]) -> None:  # fmt: skip
    """The reaper runs with its own role, the config's retention and production name, and may be
    invoked by the two EventBridge rules of infra/pipeline.yaml (and nothing else)."""
    report = deploy(context, lambda_zips)
    functions = context.client("lambda")
    reaper = functions.get_function_configuration(FunctionName="ddcicd-reaper")
    assert (reaper["Handler"], reaper["Role"], reaper["Timeout"]) == (
        "lambdas.reaper.app.handler", context.config.cleanup.reaper_role_arn, 300)
    assert reaper["Environment"]["Variables"] == {"DDCICD_STATE_MACHINE_ARN": report.state_machine_arn,
                                                  "DDCICD_PRODUCTION_ENDPOINT": "ddcicd-production",
                                                  "DDCICD_RETENTION_HOURS": "24"}  # fmt: skip
    rules = ["arn:aws:events:eu-west-1:123456789012:rule/ddcicd-reaper-on-fault",
             "arn:aws:events:eu-west-1:123456789012:rule/ddcicd-reaper-hourly"]
    assert report.triggers == {rule: "allowed" for rule in rules}
    policy = json.loads(functions.get_policy(FunctionName="ddcicd-reaper")["Policy"])
    assert sorted(statement["Condition"]["ArnLike"]["AWS:SourceArn"] for statement in policy["Statement"]) == sorted(rules)
    assert {statement["Principal"]["Service"] for statement in policy["Statement"]} == {"events.amazonaws.com"}
    assert "ddcicd-evaluate" not in json.dumps(policy)

    shorter = AwsContext.from_config(load_config(None, [*overrides, "cleanup.retention_hours=2.5"]))
    again = deploy(shorter, lambda_zips)
    assert again.triggers == {rule: "unchanged" for rule in rules}
    assert again.functions["ddcicd-reaper"] == "updated" and again.functions["ddcicd-evaluate"] == "unchanged"
    assert functions.get_function_configuration(FunctionName="ddcicd-reaper")["Environment"]["Variables"]["DDCICD_RETENTION_HOURS"] == "2.5"
