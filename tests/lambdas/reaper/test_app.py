"""The reaper Lambda against moto: real boto3 calls, executions that really end FAILED.

Events are shaped as AWS documents them (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html
for the status change, https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html
for the schedule). moto runs the state machine (a Fail state), so the executions end FAILED on
their own; their staging resources are created as the pipeline's CreateModel,
CreateEndpointConfig and CreateEndpoint states create them, with the names of their input.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

from lambdas import runtime
from lambdas.errors import InvalidEvent
from lambdas.reaper.app import handler, reap
from lambdas.reaper.events import PRODUCTION_ENDPOINT_VARIABLE, RETENTION_HOURS_VARIABLE, STATE_MACHINE_VARIABLE
from workflow.config import PipelineConfig
from workflow.naming import execution_input

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/ddcicd-sagemaker"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/image-classification:1"
FAULT = {"StartAt": "Evaluate", "States": {"Evaluate": {"Type": "Fail", "Error": "Lambda.Unknown", "Cause": "a fault"}}}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DDCICD_SAGEMAKER_RUNTIME_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    runtime.session.cache_clear()  # the handler's boto3 session, made under this test's settings
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="ddcicd", definition=json.dumps(FAULT), roleArn=ROLE)["stateMachineArn"]
        monkeypatch.setenv(STATE_MACHINE_VARIABLE, machine)
        monkeypatch.setenv(PRODUCTION_ENDPOINT_VARIABLE, "ddcicd-production")
        monkeypatch.setenv(RETENTION_HOURS_VARIABLE, "24")
        yield {"sfn": sfn, "sagemaker": boto3.client("sagemaker", region_name=REGION), "machine": machine}
    runtime.session.cache_clear()


def create_staging(sagemaker: Any, names: dict[str, str]) -> None:
    sagemaker.create_model(ModelName=names["ModelName"], ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sagemaker.create_endpoint_config(EndpointConfigName=names["StagingEndpointConfigName"], ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": names["ModelName"], "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName=names["StagingEndpointName"], EndpointConfigName=names["StagingEndpointConfigName"])


def faulted_run(aws: dict[str, Any], name: str) -> dict[str, Any]:
    """An execution with the pipeline's input that ends FAILED, its staging resources left behind."""
    run_input = execution_input(PipelineConfig(), name, "s3://bucket/ddcicd/datasets/d/")
    create_staging(aws["sagemaker"], run_input)
    arn = aws["sfn"].start_execution(stateMachineArn=aws["machine"], name=name, input=json.dumps(run_input))["executionArn"]
    for _ in range(100):
        description = aws["sfn"].describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert description["status"] == "FAILED", description
    time.sleep(0.01)  # the next run starts strictly after this one ended
    return {**run_input, "arn": arn, "description": description}


def status_change(run: dict[str, Any], machine: str) -> dict[str, Any]:
    """The event EventBridge delivers when an execution ends FAILED (fields as AWS documents them)."""
    description = run["description"]
    return {
        "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175", "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "account": "123456789012", "time": "2019-02-26T19:42:21Z", "region": REGION,
        "resources": [run["arn"]],
        "detail": {
            "executionArn": run["arn"], "stateMachineArn": machine, "name": description["name"], "status": "FAILED",
            "startDate": int(description["startDate"].timestamp() * 1000),
            "stopDate": int(description["stopDate"].timestamp() * 1000),
            "input": description["input"], "output": None, "inputDetails": {"included": True}, "outputDetails": None,
            "error": "Lambda.Unknown", "cause": "a fault", "redriveCount": 0, "redriveStatus": "REDRIVABLE",
        },
    }  # fmt: skip


SCHEDULED = {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
             "source": "aws.events", "account": "123456789012", "time": "2015-10-08T16:53:06Z", "region": REGION,
             "resources": ["arn:aws:events:eu-west-1:123456789012:rule/ddcicd-reaper-hourly"], "detail": {}}  # fmt: skip


def existing(sagemaker: Any) -> set[str]:
    return ({item["EndpointName"] for item in sagemaker.list_endpoints()["Endpoints"]}
            | {item["EndpointConfigName"] for item in sagemaker.list_endpoint_configs()["EndpointConfigs"]}
            | {item["ModelName"] for item in sagemaker.list_models()["Models"]})  # fmt: skip


def staging_names(run: dict[str, Any]) -> set[str]:
    return {run["StagingEndpointName"], run["StagingEndpointConfigName"], run["ModelName"]}


def test_a_fault_event_reaps_older_faulted_runs_and_keeps_the_new_one_for_a_redrive(aws: dict[str, Any]) -> None:
    older = faulted_run(aws, "ddcicd-20261201-020000-aaaa")
    newer = faulted_run(aws, "ddcicd-20261201-020100-bbbb")

    result = handler(status_change(newer, aws["machine"]), None)

    assert existing(aws["sagemaker"]) == staging_names(newer)
    assert result["trigger"] == f"Step Functions Execution Status Change: {newer['arn']}"
    assert [line.split(" of ")[0] for line in result["deleted"]] == [
        f"deleted endpoint {older['StagingEndpointName']}", f"deleted endpoint-config {older['StagingEndpointConfigName']}",
        f"deleted model {older['ModelName']}"]  # fmt: skip
    assert all(": a newer run started at " in line for line in result["deleted"])
    assert result["kept_executions"] == ["ddcicd-20261201-020100-bbbb"]


def test_the_hourly_schedule_reaps_runs_past_the_retention_period_only(aws: dict[str, Any]) -> None:
    run = faulted_run(aws, "ddcicd-20261201-020000-cccc")
    ended = run["description"]["stopDate"]

    assert reap(SCHEDULED, ended + timedelta(hours=23))["deleted"] == []
    assert existing(aws["sagemaker"]) == staging_names(run)
    result = reap(SCHEDULED, ended + timedelta(hours=24, seconds=1))
    assert len(result["deleted"]) == 3 and result["deleted"][0].endswith("ended 24 h ago (retention 24 h)")
    assert existing(aws["sagemaker"]) == set()
    again = reap(SCHEDULED, ended + timedelta(hours=25))  # idempotent: already gone is fine
    assert (again["deleted"], again["already_gone"]) == ([], 3)


def test_production_and_the_model_it_serves_are_never_deleted(aws: dict[str, Any]) -> None:
    promoted = faulted_run(aws, "ddcicd-20261201-020000-dddd")  # promoted, then faulted in the clean-up
    sagemaker = aws["sagemaker"]
    sagemaker.create_endpoint_config(EndpointConfigName="ddcicd-20261201-020000-dddd-production-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": promoted["ModelName"], "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName="ddcicd-production", EndpointConfigName="ddcicd-20261201-020000-dddd-production-config")

    result = reap(SCHEDULED, datetime.now(promoted["description"]["stopDate"].tzinfo) + timedelta(days=3))

    assert existing(sagemaker) == {"ddcicd-production", "ddcicd-20261201-020000-dddd-production-config", promoted["ModelName"]}
    assert result["kept"] == [f"kept model {promoted['ModelName']} of ddcicd-20261201-020000-dddd "
                              f"(FAILED {promoted['description']['stopDate'].isoformat(timespec='seconds')}): "
                              "production endpoint ddcicd-production uses it"]  # fmt: skip
    assert sagemaker.describe_endpoint(EndpointName="ddcicd-production")["EndpointStatus"] == "InService"


def test_events_it_cannot_act_on_are_refused_by_name(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    run = faulted_run(aws, "ddcicd-20261201-020000-eeee")
    other = status_change(run, aws["machine"].replace(":ddcicd", ":someone-else"))
    with pytest.raises(InvalidEvent, match="the event is about .*:someone-else; this function reaps .*:ddcicd only"):
        handler(other)
    with pytest.raises(InvalidEvent, match="expected a Step Functions Execution Status Change or a Scheduled Event, "
                                           "got source 'aws.s3', detail-type 'Object Created'"):
        handler({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})
    with pytest.raises(InvalidEvent, match="the event must be a JSON object, got list"):
        handler([])
    monkeypatch.setenv(RETENTION_HOURS_VARIABLE, "a day")
    with pytest.raises(InvalidEvent, match="DDCICD_RETENTION_HOURS='a day' must be a number of hours >= 0"):
        handler(SCHEDULED)
    monkeypatch.delenv(STATE_MACHINE_VARIABLE)
    with pytest.raises(InvalidEvent, match="the function's environment lacks DDCICD_STATE_MACHINE_ARN"):
        handler(SCHEDULED)
    assert existing(aws["sagemaker"]) == staging_names(run)
