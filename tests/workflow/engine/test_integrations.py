"""Task integrations: handler paths, the Lambda response wrapper, and `.sync` jobs over real processes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workflow.engine import Engine, JobIntegration, SystemClock, TaskContext, VirtualClock


def test_handler_paths_are_imported_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fakelambdas"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("def handler(event, context):\n    return {'doubled': event['n'] * 2, 'name': context.function_name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"double": "fakelambdas.app:handler"})
    definition = {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:double", "Payload.$": "$"},
        "End": True}}}
    result = engine.run_execution(engine.create_state_machine("double", definition), {"n": 21})
    output = json.loads(result["output"])
    assert output["Payload"] == {"doubled": 42, "name": "double"}
    assert (output["StatusCode"], output["ExecutedVersion"]) == (200, "$LATEST")
    assert output["SdkHttpMetadata"]["HttpStatusCode"] == 200
    assert output["SdkResponseMetadata"]["RequestId"] == output["SdkHttpMetadata"]["HttpHeaders"]["x-amzn-RequestId"]


class ProcessJobs:
    """A job service whose jobs are real child processes: `python -c CODE`."""

    poll_seconds = 0.05

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped: list[str] = []

    def start(self, action: str, parameters: Any, context: TaskContext) -> Any:
        name = parameters["JobName"]
        self.processes[name] = subprocess.Popen([sys.executable, "-c", parameters["Code"]])
        return {"JobArn": f"arn:local:job/{name}"}

    def describe(self, action: str, parameters: Any, started: Any, context: TaskContext) -> tuple[str, Any]:
        process = self.processes[parameters["JobName"]]
        code = process.poll()
        if code is None:
            return "RUNNING", {"JobStatus": "InProgress"}
        status = "SUCCEEDED" if code == 0 else "FAILED"
        return status, {"JobName": parameters["JobName"], "JobStatus": "Completed" if code == 0 else "Failed", "ExitCode": code}

    def stop(self, action: str, parameters: Any, started: Any, context: TaskContext) -> None:
        self.stopped.append(parameters["JobName"])
        self.processes[parameters["JobName"]].kill()
        self.processes[parameters["JobName"]].wait()


def job_engine(tmp_path: Path, jobs: ProcessJobs) -> Engine:
    engine = Engine(tmp_path / "engine.sqlite3", clock=SystemClock())
    engine.integrations.register(r"arn:aws:states:::localjobs:runJob(\.sync)?", JobIntegration(jobs))
    return engine


def job_machine(code: str, sync: bool = True, timeout: int | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": "arn:aws:states:::localjobs:runJob" + (".sync" if sync else ""),
                             "Parameters": {"JobName": "job1", "Code": code}, "End": True}
    if timeout:
        state["TimeoutSeconds"] = timeout
    return {"StartAt": "Run", "States": {"Run": state}}


def test_sync_job_is_polled_until_it_succeeds(tmp_path: Path) -> None:
    jobs = ProcessJobs()
    engine = job_engine(tmp_path, jobs)
    result = engine.run_execution(engine.create_state_machine("sync", job_machine("import time; time.sleep(0.3)")))
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"JobName": "job1", "JobStatus": "Completed", "ExitCode": 0}
    types = [event["type"] for event in engine.get_execution_history(result["executionArn"])["events"]]
    assert types[2:6] == ["TaskScheduled", "TaskStarted", "TaskSubmitted", "TaskSucceeded"]


def test_failed_sync_job_raises_task_failed_with_the_description(tmp_path: Path) -> None:
    engine = job_engine(tmp_path, ProcessJobs())
    result = engine.run_execution(engine.create_state_machine("fails", job_machine("raise SystemExit(3)")))
    assert (result["status"], result["error"]) == ("FAILED", "States.TaskFailed")
    assert json.loads(result["cause"])["ExitCode"] == 3


def test_sync_job_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    jobs = ProcessJobs()
    engine = job_engine(tmp_path, jobs)
    result = engine.run_execution(engine.create_state_machine("late", job_machine("import time; time.sleep(30)", timeout=1)))
    assert (result["status"], result["error"]) == ("FAILED", "States.Timeout")
    assert jobs.stopped == ["job1"]
    assert jobs.processes["job1"].returncode is not None


def test_without_sync_the_start_response_is_the_result(tmp_path: Path) -> None:
    engine = job_engine(tmp_path, ProcessJobs())
    result = engine.run_execution(engine.create_state_machine("async", job_machine("pass", sync=False)))
    assert json.loads(result["output"]) == {"JobArn": "arn:local:job/job1"}
