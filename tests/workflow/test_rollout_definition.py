"""The promotion's guarded rollout in the ASL, and the stack's alarms it names."""
from __future__ import annotations

from pathlib import Path

from cfnlint.decode import decode

from workflow.config import load_config
from workflow.definition import render_definition
from workflow.definition.endpoints import deployment_config, rollout_alarms

ROOT = Path(__file__).resolve().parents[2]


def test_all_at_once_has_no_deployment_config_and_the_old_rollback_decision() -> None:
    states = render_definition(load_config())["States"]
    assert "DeploymentConfig" not in states["UpdateProductionEndpoint"]["Parameters"]
    assert "ProductionUpdateRolledBack" in states and "PromotionRolledBack" not in states


def test_linear_carries_the_step_and_the_alarms_and_a_rollback_ends_as_promotion_rolled_back() -> None:
    config = load_config(overrides=["endpoint.rollout.mode=LINEAR", "endpoint.rollout.step_percent=25",
                                    "endpoint.rollout.bake_seconds=120", "endpoint.rollout.termination_wait_seconds=60"])
    states = render_definition(config)["States"]
    for name in ("UpdateProductionEndpoint", "UpdateProductionEndpointAgain"):
        policy = states[name]["Parameters"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
        assert policy["TrafficRoutingConfiguration"] == {
            "Type": "LINEAR", "WaitIntervalInSeconds": 120, "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25}}
        assert policy["TerminationWaitInSeconds"] == 60
    alarms = states["UpdateProductionEndpoint"]["Parameters"]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert alarms == [{"AlarmName": "ddcicd-rollout-errors"}, {"AlarmName": "ddcicd-rollout-p99"}]
    rolled_back = states["PromotionRolledBack"]
    assert rolled_back["Result"]["Error"] == "PromotionRolledBack" and rolled_back["Next"] == "CandidateRegistered"  # marks the version Rejected, then cleans up
    choices = states["IsProductionEndpointInService"]["Choices"]
    assert [choice["Next"] for choice in choices][:2] == ["RecordProductionMetrics", "PromotionRolledBack"]


def test_the_stack_creates_the_alarms_the_definition_names_with_the_configs_defaults() -> None:
    template, problems = decode(str(ROOT / "infra" / "pipeline.yaml"))
    assert not problems
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    stack = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            properties = resource["Properties"]
            stack[properties["AlarmName"]["Fn::Sub"].replace("${ProjectName}", parameters["ProjectName"])] = properties
    config = load_config()
    assert deployment_config(config) is None
    for alarm in rollout_alarms(config):
        properties = stack[alarm["AlarmName"]]
        assert properties["MetricName"] == alarm["MetricName"] and properties["Namespace"] == "AWS/SageMaker"
        assert properties.get("Statistic") == alarm.get("Statistic")
        assert properties.get("ExtendedStatistic") == alarm.get("ExtendedStatistic")
        for key in ("Threshold", "Period", "EvaluationPeriods", "DatapointsToAlarm"):
            assert float(parameters[properties[key]["Ref"]]) == float(alarm[key]), key
        dimensions = {item["Name"]: item["Value"] for item in properties["Dimensions"]}
        assert dimensions["VariantName"] == "AllTraffic"
        assert dimensions["EndpointName"]["Fn::Sub"].replace("${ProjectName}", "ddcicd") == config.endpoint.production_name
