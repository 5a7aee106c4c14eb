"""The Recorder is the one writer of history: ids stay consecutive and every ending is recorded with its status."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from workflow.engine import Engine, ExecutionStatus, VirtualClock
from workflow.engine.errors import ExecutionDoesNotExist
from workflow.engine.history import HistoryStore
from workflow.engine.recorder import details_key

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:{}"


def test_event_ids_stay_consecutive_through_a_failure_and_its_redrive(tmp_path: Path) -> None:
    calls: list[Any] = []

    def flaky(event: Any, context: Any) -> Any:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return {"ok": True}

    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(1_700_000_000), functions={"flaky": flaky})
    definition = {"StartAt": "Fan", "States": {
        "Fan": {"Type": "Map", "ItemsPath": "$.items", "Next": "Call",
                "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Pass", "End": True}}}},
        "Call": {"Type": "Task", "Resource": FUNCTION_ARN.format("flaky"), "End": True}}}
    arn = engine.create_state_machine("flaky", definition)
    failed = engine.run_execution(arn, {"items": [1, 2]})
    assert (failed["status"], failed["error"]) == ("FAILED", "RuntimeError")
    assert type(failed["status"]) is str  # the API keeps plain strings, as boto3 returns them

    engine.redrive_execution(failed["executionArn"], wait=True)
    result = engine.describe_execution(failed["executionArn"])
    assert result["status"] == ExecutionStatus.SUCCEEDED == "SUCCEEDED"

    events = HistoryStore(tmp_path / "engine.sqlite3").events(result["executionArn"])
    assert [event.id for event in events] == list(range(1, len(events) + 1))
    assert all(0 <= event.previous_event_id < event.id for event in events)
    types = [event.type for event in events]
    assert types[0] == "ExecutionStarted" and types.count("ExecutionRedriven") == 1
    assert types[-1] == "ExecutionSucceeded" and "ExecutionFailed" in types
    redriven = types.index("ExecutionRedriven")
    assert {event.redrive for event in events[:redriven]} == {0}
    assert {event.redrive for event in events[redriven:]} == {1}  # each event carries its redrive generation
    assert types[redriven + 1:redriven + 3] == ["TaskStateEntered", "LambdaFunctionScheduled"]  # the Map is not re-run


@pytest.mark.parametrize(("event_type", "key"), [
    ("ExecutionStarted", "executionStartedEventDetails"),
    ("MapIterationSucceeded", "mapIterationSucceededEventDetails"),
    ("LambdaFunctionTimedOut", "lambdaFunctionTimedOutEventDetails"),
    ("TaskStateEntered", "stateEnteredEventDetails"),
    ("ParallelStateExited", "stateExitedEventDetails"),
])
def test_details_keys_follow_the_aws_names(event_type: str, key: str) -> None:
    assert details_key(event_type) == key


def test_a_stop_requested_from_another_process_is_recorded_with_its_error_and_cause(tmp_path: Path) -> None:
    store_path = tmp_path / "engine.sqlite3"
    process = subprocess.Popen([sys.executable, str(FIXTURES / "stoppable_run.py"), str(store_path)],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the execution never reached its Wait state"
            assert process.poll() is None, "the engine process ended early"
            if store_path.exists():
                try:
                    arn = HistoryStore(store_path).execution("held").arn
                    if "WaitStateEntered" in [event.type for event in HistoryStore(store_path).events(arn)]:
                        break
                except ExecutionDoesNotExist:
                    pass
            time.sleep(0.05)
        Engine(store_path).stop_execution(arn, error="Operator.Stop", cause="maintenance window")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    engine = Engine(store_path)
    result = engine.describe_execution(arn)
    assert (result["status"], result["error"], result["cause"]) == ("ABORTED", "Operator.Stop", "maintenance window")
    last = engine.get_execution_history(arn)["events"][-1]
    assert last["type"] == "ExecutionAborted"
    assert last["executionAbortedEventDetails"] == {"error": "Operator.Stop", "cause": "maintenance window"}
