"""Redrive: resume FAILED/ABORTED executions from the failed state, also after the engine was SIGKILLed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from workflow.engine import Engine, EngineError, VirtualClock
from workflow.engine.errors import ExecutionNotRedrivable

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]


def events_after_redrive(engine: Engine, arn: str) -> list[dict[str, Any]]:
    events = engine.get_execution_history(arn)["events"]
    start = next(index for index, event in enumerate(events) if event["type"] == "ExecutionRedriven")
    return events[start:]


def test_redrive_after_the_engine_process_was_killed(tmp_path: Path) -> None:
    store, marker = tmp_path / "engine.sqlite3", tmp_path / "started"
    process = subprocess.Popen([sys.executable, str(FIXTURES / "killable_run.py"), str(store), str(marker)],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, "the engine process ended before its Task started"
            assert time.monotonic() < deadline, "the Task never started"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)

    received: list[Any] = []

    def fast(event: dict, context: Any) -> dict:
        received.append(event)
        return {"finished": "after redrive"}

    engine = Engine(store, functions={"slow": fast})
    killed = engine.describe_execution("victim")
    assert killed["status"] == "ABORTED"  # the dead owner was noticed
    assert "ended while the execution was running" in killed["cause"]

    engine.redrive_execution("victim", wait=True)
    result = engine.describe_execution("victim")
    assert result["status"] == "SUCCEEDED", result
    assert result["redriveCount"] == 1
    output = json.loads(result["output"])
    assert output == {"run": 1, "prepare": {"prepared": True}, "work": {"finished": "after redrive"}}
    assert received == [{"token": "kept-across-redrive", "input": {"run": 1, "prepare": {"prepared": True}}}]
    resumed = events_after_redrive(engine, result["executionArn"])
    assert resumed[0]["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert resumed[1]["type"] == "TaskStateEntered" and resumed[1]["stateEnteredEventDetails"]["name"] == "Work"
    assert "PassStateEntered" not in [event["type"] for event in resumed[1:3]]


def _breakable(calls: list[Any], broken: dict[str, Any], scale: int = 1) -> Callable[[int, Any], int]:
    """A function failing for the item `broken["item"]` names (None: no item), recording every call."""

    def maybe(event: int, context: Any) -> int:
        calls.append(event)
        if event == broken["item"]:
            raise RuntimeError(f"item {event} is broken")
        return event * scale
    return maybe


def test_redrive_of_a_map_reruns_only_the_failed_iterations(tmp_path: Path) -> None:
    calls: list[int] = []
    broken: dict[str, Any] = {"item": 2}
    maybe = _breakable(calls, broken, scale=100)
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"maybe": maybe})
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "End": True, "ItemProcessor": {
        "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:maybe",
                                         "End": True}}}}}}
    first = engine.run_execution(engine.create_state_machine("items", definition), [1, 2, 3, 4])
    assert (first["status"], first["error"]) == ("FAILED", "RuntimeError")
    assert calls == [1, 2]  # the Map stops at the first failure

    broken["item"] = None
    calls.clear()
    engine.redrive_execution(first["executionArn"], wait=True)
    result = engine.describe_execution(first["executionArn"])
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == [100, 200, 300, 400]
    assert calls == [2, 3, 4]  # item 1's result was kept


def test_only_failed_aborted_or_timed_out_executions_can_be_redriven(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    arn = engine.create_state_machine("ok", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    done = engine.run_execution(arn)
    with pytest.raises(ExecutionNotRedrivable, match="SUCCEEDED"):
        engine.redrive_execution(done["executionArn"])
    with pytest.raises(EngineError, match="does not exist"):
        engine.redrive_execution("no-such-execution")


def test_redriving_a_fail_state_fails_again_and_counts(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "F"}, "F": {"Type": "Fail", "Error": "Always"}}}
    first = engine.run_execution(engine.create_state_machine("fails", definition))
    engine.redrive_execution(first["executionArn"], wait=True)
    again = engine.describe_execution(first["executionArn"])
    assert (again["status"], again["error"], again["redriveCount"]) == ("FAILED", "Always", 1)
    types = [event["type"] for event in events_after_redrive(engine, first["executionArn"])]
    assert types == ["ExecutionRedriven", "FailStateEntered", "ExecutionFailed"]


def test_redrive_of_a_parallel_state_keeps_the_branch_that_succeeded(tmp_path: Path) -> None:
    calls: list[str] = []
    healthy = {"right": False}

    left_called = threading.Event()

    def left(event: Any, context: Any) -> str:
        calls.append("left")
        left_called.set()
        return "L"

    def right(event: Any, context: Any) -> str:
        calls.append("right")
        if not healthy["right"]:
            # fail only after the left branch has done its work: a failing branch stops its
            # siblings (as on AWS), so failing at once could stop L before it calls its function
            assert left_called.wait(30), "the left branch never called its function"
            time.sleep(0.5)  # and for L's branch to end (microseconds of bookkeeping after the call)
            raise TimeoutError("endpoint not ready")
        return "R"

    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"left": left, "right": right})
    arn_of = "arn:aws:lambda:us-east-1:000000000000:function:{}".format
    definition = {"StartAt": "Both", "States": {"Both": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "L", "States": {"L": {"Type": "Task", "Resource": arn_of("left"), "End": True}}},
        {"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": arn_of("right"), "End": True}}}]}}}
    first = engine.run_execution(engine.create_state_machine("both", definition))
    assert (first["status"], first["error"]) == ("FAILED", "TimeoutError")
    healthy["right"] = True
    calls.clear()
    engine.redrive_execution(first["executionArn"], wait=True)
    result = engine.describe_execution(first["executionArn"])
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == ["L", "R"]
    assert calls == ["right"]


def _flaky_once(calls: list[Any], failing: Any, after: Any = None) -> Any:
    """A function failing the first time it gets `failing`, recording every event it gets.

    With `after`, that failure waits until the function was called with `after` (a branch
    running beside it: a failing branch stops its siblings, so failing first could stop it
    before its call).
    """
    failed: list[Any] = []

    def handler(event: Any, context: Any) -> Any:
        calls.append(event)
        if event == failing and not failed:
            failed.append(event)
            deadline = time.monotonic() + 30
            while after is not None and after not in calls:
                assert time.monotonic() < deadline, f"never called with {after!r}"
                time.sleep(0.01)
            raise RuntimeError(f"{event} failed once")
        return event
    return handler


def test_a_retry_of_a_map_reruns_every_iteration_not_only_the_failed_one(tmp_path: Path) -> None:
    """Checkpoints are for redrive: a Retry of a Map state re-runs all its iterations, as AWS does."""
    calls: list[Any] = []
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"flaky": _flaky_once(calls, 2)})
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrency": 1, "End": True,
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1}],
        "ItemProcessor": {"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:flaky", "End": True}}}}}}
    result = engine.run_execution(engine.create_state_machine("retried-map", definition), [1, 2, 3])
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == [1, 2, 3]
    assert calls == [1, 2, 1, 2, 3]  # the retry ran item 1 again although it had succeeded
    started = [event for event in engine.get_execution_history(result["executionArn"])["events"]
               if event["type"] == "MapIterationStarted"]
    assert len(started) == 5


def test_a_retry_of_a_parallel_state_reruns_every_branch(tmp_path: Path) -> None:
    calls: list[Any] = []
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"flaky": _flaky_once(calls, "right", after="left")})
    task = "arn:aws:lambda:us-east-1:000000000000:function:flaky"
    definition = {"StartAt": "Both", "States": {"Both": {
        "Type": "Parallel", "End": True, "Retry": [{"ErrorEquals": ["RuntimeError"], "MaxAttempts": 1}],
        "Branches": [{"StartAt": "L", "States": {"L": {"Type": "Pass", "Result": "left", "Next": "LT"},
                                                   "LT": {"Type": "Task", "Resource": task, "End": True}}},
                     {"StartAt": "R", "States": {"R": {"Type": "Pass", "Result": "right", "Next": "RT"},
                                                   "RT": {"Type": "Task", "Resource": task, "End": True}}}]}}}
    result = engine.run_execution(engine.create_state_machine("retried-parallel", definition))
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == ["left", "right"]
    assert sorted(calls) == ["left", "left", "right", "right"]


def test_a_redrive_still_reuses_the_iterations_that_succeeded_when_the_map_has_a_retry(tmp_path: Path) -> None:
    calls: list[Any] = []
    broken: dict[str, Any] = {"item": 3}
    maybe = _breakable(calls, broken)
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"maybe": maybe})
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrency": 1, "End": True,
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}],
        "ItemProcessor": {"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:maybe", "End": True}}}}}}
    first = engine.run_execution(engine.create_state_machine("redriven-map", definition), [1, 2, 3])
    assert first["status"] == "FAILED"
    assert calls == [1, 2, 3, 1, 2, 3]  # the Retry re-ran everything
    broken["item"] = None
    calls.clear()
    engine.redrive_execution(first["executionArn"], wait=True)
    result = engine.describe_execution(first["executionArn"])
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == [1, 2, 3]
    assert calls == [3]  # the redrive reused the checkpoints of items 1 and 2
