"""The other real clients, unchanged: the AWS CLI against `ddcicd engine serve` (a real process), the Data Science SDK."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
import requests
from botocore.config import Config

from tests.workflow.engine.api.conftest import ACCOUNT, REGION, ROLE, pass_machine
from workflow.engine.api import ApiServer

AWS_CLI = Path(sys.executable).with_name("aws")
ROOT = Path(__file__).resolve().parents[4]


def credentials_environment(home: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment.update(AWS_ACCESS_KEY_ID=ACCOUNT, AWS_SECRET_ACCESS_KEY="any", AWS_DEFAULT_REGION=REGION,
                       AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent", DDCICD_HOME=str(home),
                       PYTHONPATH=str(ROOT))  # fmt: skip
    return environment


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`ddcicd engine serve --port 0` as a real process; yields (its URL, an environment for clients)."""
    environment = credentials_environment(tmp_path / "home")
    process = subprocess.Popen([sys.executable, "-m", "workflow.cli", "engine", "serve", "--port", "0"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), process.stderr.read()  # type: ignore[union-attr]
        yield url, environment
    finally:
        process.terminate()
        process.wait(10)


def aws(url: str, environment: dict[str, str], *arguments: str) -> Any:
    done = subprocess.run([str(AWS_CLI), "stepfunctions", *arguments, "--endpoint-url", url, "--output", "json"],
                          env=environment, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.mark.skipif(not AWS_CLI.exists(), reason=f"the AWS CLI is not installed at {AWS_CLI}")
def test_the_aws_cli_drives_ddcicd_engine_serve(served: tuple[str, dict[str, str]]) -> None:
    url, environment = served
    created = aws(url, environment, "create-state-machine", "--name", "cli", "--role-arn", ROLE,
                  "--definition", pass_machine({"from": "cli"}))  # fmt: skip
    assert created["stateMachineArn"] == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:cli"
    started = aws(url, environment, "start-execution", "--state-machine-arn", created["stateMachineArn"], "--name", "first",
                  "--input", '{"x": 1}')  # fmt: skip
    for _ in range(50):
        described = aws(url, environment, "describe-execution", "--execution-arn", started["executionArn"])
        if described["status"] != "RUNNING":
            break
    assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"from": "cli"})
    listed = aws(url, environment, "list-executions", "--state-machine-arn", created["stateMachineArn"])
    assert [item["name"] for item in listed["executions"]] == ["first"]
    history = aws(url, environment, "get-execution-history", "--execution-arn", started["executionArn"], "--reverse-order")
    assert history["events"][0]["type"] == "ExecutionSucceeded"
    failed = subprocess.run([str(AWS_CLI), "stepfunctions", "describe-execution", "--execution-arn",
                             f"arn:aws:states:{REGION}:{ACCOUNT}:execution:cli:missing", "--endpoint-url", url],
                            env=environment, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert failed.returncode != 0
    assert "(ExecutionDoesNotExist) when calling the DescribeExecution operation" in failed.stderr


def test_the_data_science_sdk_creates_updates_and_runs_a_workflow(server: ApiServer) -> None:
    from stepfunctions.steps import Chain, Pass
    from stepfunctions.workflow import Workflow

    client = boto3.client("stepfunctions", endpoint_url=server.url, region_name=REGION, aws_access_key_id=ACCOUNT,
                          aws_secret_access_key="any", config=Config(retries={"max_attempts": 1}))  # fmt: skip
    workflow = Workflow("sdk-flow", Chain([Pass("Hello", result={"greeting": "hi"})]), role=ROLE, client=client)
    arn = workflow.create()
    assert arn == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:sdk-flow"
    assert Workflow("sdk-flow", Chain([Pass("Other")]), role=ROLE, client=client).create() == arn  # exists: the SDK reads the ARN from the error
    workflow.update(definition=Chain([Pass("Hello", result={"greeting": "hello"}), Pass("Bye", result_path="$.bye")]))
    execution = workflow.execute(name="sdk-run", inputs={"who": "world"})
    assert execution.get_output(wait=True) == {"greeting": "hello", "bye": {"greeting": "hello"}}
    events = execution.list_events()
    assert [event["type"] for event in events][:2] == ["ExecutionStarted", "PassStateEntered"]
    assert events[-1]["type"] == "ExecutionSucceeded"
    assert [listed["name"] for listed in Workflow.list_workflows(client=client)] == ["sdk-flow"]
    runs = workflow.list_executions()
    assert [run.execution_arn for run in runs] == [execution.execution_arn]
    assert runs[0].status == "SUCCEEDED"


def test_the_console_shows_what_the_api_ran_on_the_same_store(served: tuple[str, dict[str, str]]) -> None:
    """`ddcicd console` beside `ddcicd engine serve`, both real processes over one DDCICD_HOME."""
    url, environment = served
    client = boto3.client("stepfunctions", endpoint_url=url, region_name=REGION, aws_access_key_id=ACCOUNT, aws_secret_access_key="any")
    machine = client.create_state_machine(name="seen", definition=pass_machine({"seen": True}), roleArn=ROLE)["stateMachineArn"]
    execution = client.start_execution(stateMachineArn=machine, name="by-api")["executionArn"]
    console = subprocess.Popen([sys.executable, "-m", "workflow.cli", "console", "--port", "0"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = console.stdout.readline().strip()  # type: ignore[union-attr]  # "console: http://127.0.0.1:PORT/?token=..."
        assert line.startswith("console: http://127.0.0.1:"), console.stderr.read()  # type: ignore[union-attr]
        base = line.split()[1].split("/?")[0]
        listed = requests.get(f"{base}/api/executions", params={"stateMachineArn": machine}, timeout=10).json()
        assert [item["executionArn"] for item in listed] == [execution]
        assert listed[0]["status"] in ("RUNNING", "SUCCEEDED")
    finally:
        console.terminate()
        console.wait(10)
