"""HeartbeatSeconds(Path) and TimeoutSeconds(Path) on the wall clock: callback tasks and `.sync` jobs.

A callback's heartbeat is SendTaskHeartbeat
(https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskHeartbeat.html); a
`.sync` job's heartbeat is a poll that shows the job has moved on (workflow/engine/jobs.py).
Missing it is States.HeartbeatTimeout, which Retry and Catch see as a timeout
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). Jobs here
are real child processes; heartbeats are 1 s so each test takes a second or two.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from workflow.engine import Engine, JobIntegration, SystemClock, TaskContext, VirtualClock
from workflow.engine.messaging import Mailbox

QUEUE = "https://sqs.us-east-1.amazonaws.com/000000000000/work"
# A job that writes one progress line every 0.1 s for STEPS steps, then exits 0 (or, with HANG, hangs).
JOB = """
import sys, time
steps, hang, progress = int(sys.argv[1]), sys.argv[2] == "hang", sys.argv[3]
for step in range(steps):
    with open(progress, "a") as out:
        out.write(f"step {step}\\n")
    time.sleep(0.1)
if hang:
    time.sleep(60)
"""


class ProgressJobs:
    """Jobs as child processes that report progress in a file, which `progress` reads."""

    poll_seconds = 0.1

    def __init__(self, directory: Path, report_progress: bool = True) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stopped: list[int] = []
        if report_progress:
            self.progress = self._progress

    def start(self, action: str, parameters: Any, context: TaskContext) -> Any:
        steps, mode = parameters["Steps"][len(self.processes)], parameters.get("Mode", "finish")
        path = self.directory / f"progress-{len(self.processes)}.txt"
        self.processes.append(subprocess.Popen([sys.executable, "-c", JOB, str(steps), mode, str(path)]))
        return {"JobId": str(len(self.processes) - 1)}

    def describe(self, action: str, parameters: Any, started: Any, context: TaskContext) -> tuple[str, Any]:
        code = self.processes[int(started["JobId"])].poll()
        if code is None:
            return "RUNNING", {"JobId": started["JobId"], "Status": "InProgress"}
        return ("SUCCEEDED" if code == 0 else "FAILED"), {"JobId": started["JobId"], "Status": "Done", "ExitCode": code}

    def _progress(self, action: str, parameters: Any, started: Any, context: TaskContext) -> Any:
        path = self.directory / f"progress-{started['JobId']}.txt"
        return path.stat().st_size if path.exists() else 0

    def stop(self, action: str, parameters: Any, started: Any, context: TaskContext) -> None:
        process = self.processes[int(started["JobId"])]
        self.stopped.append(int(started["JobId"]))
        process.kill()
        process.wait()


def job_engine(tmp_path: Path, jobs: ProgressJobs) -> Engine:
    engine = Engine(tmp_path / "engine.sqlite3", clock=SystemClock())
    engine.integrations.register(r"arn:aws:states:::localjobs:runJob(\.sync)?", JobIntegration(jobs))
    return engine


def job_machine(steps: list[int], mode: str = "finish", **task_fields: Any) -> dict[str, Any]:
    task = {"Type": "Task", "Resource": "arn:aws:states:::localjobs:runJob.sync",
            "Parameters": {"Steps": steps, "Mode": mode}, "End": True, **task_fields}
    return {"StartAt": "Run", "States": {"Run": task}}


def history(engine: Engine, arn: str) -> list[dict[str, Any]]:
    return engine.get_execution_history(arn)["events"]


def test_a_job_that_keeps_reporting_progress_outlives_its_heartbeat(tmp_path: Path) -> None:
    jobs = ProgressJobs(tmp_path)
    engine = job_engine(tmp_path, jobs)
    began = time.monotonic()
    result = engine.run_execution(engine.create_state_machine("long", job_machine([15], HeartbeatSeconds=1)))
    assert result["status"] == "SUCCEEDED", result
    assert time.monotonic() - began > 1.4  # longer than HeartbeatSeconds: the progress kept it alive
    scheduled = next(event for event in history(engine, result["executionArn"]) if event["type"] == "TaskScheduled")
    assert scheduled["taskScheduledEventDetails"]["heartbeatInSeconds"] == 1


def test_a_job_that_stops_progressing_fails_with_a_heartbeat_timeout_and_is_stopped(tmp_path: Path) -> None:
    jobs = ProgressJobs(tmp_path)
    engine = job_engine(tmp_path, jobs)
    began = time.monotonic()
    result = engine.run_execution(engine.create_state_machine("hung", job_machine([3], "hang", HeartbeatSeconds=1)))
    elapsed = time.monotonic() - began
    assert (result["status"], result["error"]) == ("FAILED", "States.HeartbeatTimeout")
    assert 1.0 < elapsed < 10, elapsed
    assert jobs.stopped == [0] and jobs.processes[0].returncode is not None
    timed_out = [event for event in history(engine, result["executionArn"]) if event["type"] == "TaskTimedOut"]
    assert timed_out[0]["taskTimedOutEventDetails"] == {"error": "States.HeartbeatTimeout", "resource": "runJob.sync",
                                                        "resourceType": "localjobs"}


def test_without_a_progress_marker_an_unchanging_description_is_no_heartbeat(tmp_path: Path) -> None:
    jobs = ProgressJobs(tmp_path, report_progress=False)
    engine = job_engine(tmp_path, jobs)
    result = engine.run_execution(engine.create_state_machine("quiet", job_machine([30], HeartbeatSecondsPath="$.beat")),
                                  {"beat": 1})
    assert (result["status"], result["error"]) == ("FAILED", "States.HeartbeatTimeout")
    assert jobs.stopped == [0]


def test_a_heartbeat_timeout_is_retried_as_a_timeout_and_caught_by_name(tmp_path: Path) -> None:
    jobs = ProgressJobs(tmp_path)
    engine = job_engine(tmp_path, jobs)
    definition = job_machine([3, 2], "hang", HeartbeatSeconds=1, ResultPath="$.run",
                             Retry=[{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                             Catch=[{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.caught", "Next": "Caught"}])
    definition["States"]["Run"].pop("End")
    definition["States"]["Run"]["Next"] = "Caught"
    definition["States"]["Caught"] = {"Type": "Pass", "End": True}
    result = engine.run_execution(engine.create_state_machine("retried", definition), {})
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == {"caught": {"Error": "States.HeartbeatTimeout", "Cause": ""}}
    assert jobs.stopped == [0, 1]  # both attempts hung; each was stopped
    types = [event["type"] for event in history(engine, result["executionArn"])]
    assert types.count("TaskScheduled") == 2 and types.count("TaskTimedOut") == 2


def test_timeout_seconds_path_bounds_a_job_that_keeps_progressing(tmp_path: Path) -> None:
    jobs = ProgressJobs(tmp_path)
    engine = job_engine(tmp_path, jobs)
    result = engine.run_execution(engine.create_state_machine("bounded", job_machine(
        [100], HeartbeatSeconds=1, TimeoutSecondsPath="$.limit")), {"limit": 2})
    assert (result["status"], result["error"]) == ("FAILED", "States.Timeout")
    assert jobs.stopped == [0]


def callback_machine(**task_fields: Any) -> dict[str, Any]:
    return {"StartAt": "Wait", "States": {"Wait": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": QUEUE, "MessageBody": {"token.$": "$$.Task.Token"}}, "End": True, **task_fields}}}


def waiting_token(engine: Engine, arn: str) -> str:
    deadline = time.monotonic() + 20
    while not (tasks := engine.waiting_tasks(arn)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return tasks[0].token


def test_callback_heartbeats_on_the_wall_clock_keep_the_task_waiting(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=SystemClock())
    arn = engine.start_execution(engine.create_state_machine("beating", callback_machine(HeartbeatSeconds=1)))
    token = waiting_token(engine, arn)
    began = time.monotonic()
    while time.monotonic() - began < 1.6:
        engine.send_task_heartbeat(token)
        time.sleep(0.3)
    engine.send_task_success(token, '"done"')
    result = engine.wait(arn, timeout=20)
    assert (result["status"], result["output"]) == ("SUCCEEDED", '"done"')


def test_a_callback_without_heartbeats_times_out_after_heartbeat_seconds(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=SystemClock())
    arn = engine.start_execution(engine.create_state_machine("silent", callback_machine(HeartbeatSeconds=1,
                                                                                          TimeoutSeconds=30)))
    waiting_token(engine, arn)
    began = time.monotonic()
    result = engine.wait(arn, timeout=20)
    assert (result["status"], result["error"]) == ("FAILED", "States.HeartbeatTimeout")
    assert time.monotonic() - began < 3


def test_a_callback_past_its_timeout_fails_even_with_heartbeats(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=SystemClock())
    arn = engine.start_execution(engine.create_state_machine("bounded", callback_machine(HeartbeatSeconds=1,
                                                                                           TimeoutSeconds=2)))
    token = waiting_token(engine, arn)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.3):
            try:
                engine.send_task_heartbeat(token)
            except Exception:  # noqa: BLE001 - the task has ended: TaskTimedOut
                return

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        result = engine.wait(arn, timeout=20)
    finally:
        stop.set()
        beater.join()
    assert (result["status"], result["error"]) == ("FAILED", "States.Timeout")


def test_a_jsonata_heartbeat_that_is_not_a_positive_number_fails_the_execution(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    definition = {"QueryLanguage": "JSONata", **callback_machine(HeartbeatSeconds="{% $states.input.beat %}")}
    definition["States"]["Wait"]["Arguments"] = definition["States"]["Wait"].pop("Parameters")
    definition["States"]["Wait"]["Arguments"]["MessageBody"] = {"token": "{% $states.context.Task.Token %}"}
    result = engine.run_execution(engine.create_state_machine("bad-beat", definition), {"beat": "soon"})
    assert (result["status"], result["error"]) == ("FAILED", "States.QueryEvaluationError")
    assert 'HeartbeatSeconds field must be a positive number, but the expression returned "soon"' in result["cause"]
    assert Mailbox(engine.store).messages(QUEUE) == []  # nothing was sent, no token issued
