"""The interpreter through the Engine API: Retry/Catch, timeouts, Map/Parallel, stop, history shape."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from workflow.engine import Engine, EngineError, SystemClock, VirtualClock
from workflow.engine.errors import StateMachineDoesNotExist

FIXTURES = Path(__file__).parent / "fixtures"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:{}"


def task(name: str, **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": FUNCTION_ARN.format(name), **fields}


def history_types(engine: Engine, arn: str) -> list[str]:
    return [event["type"] for event in engine.get_execution_history(arn)["events"]]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1_700_000_000)


def make_engine(tmp_path: Path, clock: Any, **functions: Any) -> Engine:
    return Engine(tmp_path / "engine.sqlite3", clock=clock, functions=functions)


def test_every_state_type_runs_on_a_virtual_clock(tmp_path: Path, clock: VirtualClock) -> None:
    engine = make_engine(tmp_path, clock, known=lambda event, context: event)
    arn = engine.create_state_machine("all", json.loads((FIXTURES / "all_state_types.json").read_text()))
    result = engine.run_execution(arn, {"name": "Ada"})
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == {"greeting": "hello Ada"}
    assert clock.now() >= 1_700_000_005  # the 5 s Wait passed in virtual time
    types = history_types(engine, result["executionArn"])
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert types.count("MapIterationSucceeded") == 3 and "ParallelStateSucceeded" in types


def test_retry_backs_off_and_exposes_the_retry_count(tmp_path: Path, clock: VirtualClock) -> None:
    seen: list[int] = []

    def flaky(event: dict, context: Any) -> dict:
        seen.append(event["retry"])
        if len(seen) < 3:
            raise ConnectionError("transient")
        return {"ok": True}

    engine = make_engine(tmp_path, clock, flaky=flaky)
    definition = {"StartAt": "Call", "States": {"Call": task(
        "flaky", Parameters={"retry.$": "$$.State.RetryCount"}, End=True,
        Retry=[{"ErrorEquals": ["ConnectionError"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 3}])}}
    result = engine.run_execution(engine.create_state_machine("retry", definition))
    assert result["status"] == "SUCCEEDED"
    assert seen == [0, 1, 2]
    assert clock.now() == 1_700_000_000 + 1 + 2
    assert history_types(engine, result["executionArn"]).count("LambdaFunctionFailed") == 2


def test_a_python_exception_becomes_lambdas_error_and_is_caught(tmp_path: Path, clock: VirtualClock) -> None:
    def broken(event: Any, context: Any) -> None:
        raise ValueError(f"bad input {event['x']}")

    engine = make_engine(tmp_path, clock, broken=broken)
    definition = {"StartAt": "Call", "States": {
        "Call": task("broken", Catch=[{"ErrorEquals": ["ValueError"], "ResultPath": "$.error", "Next": "Handled"}], End=True),
        "Handled": {"Type": "Pass", "End": True}}}
    result = engine.run_execution(engine.create_state_machine("catch", definition), {"x": 7})
    output = json.loads(result["output"])
    assert output["error"]["Error"] == "ValueError"
    cause = json.loads(output["error"]["Cause"])
    assert cause["errorMessage"] == "bad input 7" and cause["errorType"] == "ValueError"
    assert len(cause["requestId"]) == 36
    assert any("test_engine.py" in frame and "broken" in frame for frame in cause["stackTrace"])


def test_uncaught_task_failure_fails_the_execution_with_error_and_cause(tmp_path: Path, clock: VirtualClock) -> None:
    engine = make_engine(tmp_path, clock)
    definition = {"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                                         "Parameters": {"FunctionName": "missing"}, "End": True}}}
    result = engine.run_execution(engine.create_state_machine("missing", definition))
    assert result["status"] == "FAILED"
    assert result["error"] == "Lambda.ResourceNotFoundException"
    assert "function:missing:$LATEST" in result["cause"]
    assert history_types(engine, result["executionArn"])[-2:] == ["TaskFailed", "ExecutionFailed"]


def test_task_timeout_with_a_real_clock(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(event: Any, context: Any) -> str:
        release.wait(10)
        return "late"

    engine = make_engine(tmp_path, SystemClock(), slow=slow)
    definition = {"StartAt": "Call", "States": {"Call": task("slow", TimeoutSeconds=1, End=True)}}
    try:
        result = engine.run_execution(engine.create_state_machine("timeout", definition))
    finally:
        release.set()
    assert (result["status"], result["error"]) == ("FAILED", "States.Timeout")
    assert "LambdaFunctionTimedOut" in history_types(engine, result["executionArn"])


def test_state_machine_timeout_ends_timed_out(tmp_path: Path, clock: VirtualClock) -> None:
    engine = make_engine(tmp_path, clock)
    definition = {"StartAt": "W", "TimeoutSeconds": 10, "States": {"W": {"Type": "Wait", "Seconds": 100, "End": True}}}
    result = engine.run_execution(engine.create_state_machine("slow", definition))
    assert (result["status"], result["error"]) == ("TIMED_OUT", "States.Timeout")
    assert history_types(engine, result["executionArn"])[-1] == "ExecutionTimedOut"


def test_stop_execution_aborts_a_background_run(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, SystemClock())
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
    arn = engine.start_execution(engine.create_state_machine("stoppable", definition))
    while "WaitStateEntered" not in history_types(engine, arn):
        time.sleep(0.01)
    engine.stop_execution(arn, error="User.Stop", cause="changed my mind")
    result = engine.wait(arn, timeout=10)
    assert (result["status"], result["error"], result["cause"]) == ("ABORTED", "User.Stop", "changed my mind")
    assert result["redriveStatus"] == "REDRIVABLE"


def test_map_runs_task_iterations_concurrently_up_to_max_concurrency(tmp_path: Path) -> None:
    active, peak, lock = [0], [0], threading.Lock()

    def work(event: int, context: Any) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return event * 10

    engine = make_engine(tmp_path, SystemClock(), work=work)
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2, "End": True, "ItemProcessor": {
        "StartAt": "T", "States": {"T": task("work", End=True)}}}}}
    result = engine.run_execution(engine.create_state_machine("fan", definition), [1, 2, 3, 4, 5])
    assert json.loads(result["output"]) == [10, 20, 30, 40, 50]
    assert peak[0] == 2


@pytest.mark.parametrize(("tolerated", "status"), [(1, "SUCCEEDED"), (0, "FAILED")])
def test_map_tolerated_failures(tmp_path: Path, clock: VirtualClock, tolerated: int, status: str) -> None:
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", "ToleratedFailureCount": tolerated, "End": True, "ItemProcessor": {
        "StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Boom"}],
                                         "Default": "Ok"},
                                   "Boom": {"Type": "Fail", "Error": "Item.Bad", "Cause": "two"},
                                   "Ok": {"Type": "Pass", "End": True}}}}}}
    engine = make_engine(tmp_path, clock)
    result = engine.run_execution(engine.create_state_machine("tolerant", definition), [1, 2, 3])
    assert result["status"] == status
    if status == "SUCCEEDED":
        assert json.loads(result["output"]) == [1, {"Error": "Item.Bad", "Cause": "two"}, 3]
    else:
        assert result["error"] == "States.ExceedToleratedFailureThreshold"


@pytest.mark.parametrize("field", ["MaxConcurrencyPath", "ToleratedFailureCountPath"])
def test_a_map_field_path_to_nothing_fails_the_execution_with_states_runtime(tmp_path: Path, clock: VirtualClock,
                                                                              field: str) -> None:
    definition = {"StartAt": "M", "States": {"M": {"Type": "Map", field: "$.missing", "ItemsPath": "$.items", "End": True,
                                                   "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}}}
    engine = make_engine(tmp_path, clock)
    result = engine.run_execution(engine.create_state_machine("paths", definition), {"items": [1, 2]})
    assert result["status"] == "FAILED" and result["error"] == "States.Runtime"
    assert f"The {field} field refers to a path that does not exist: $.missing" in result["cause"]


def test_history_events_have_aws_shapes(tmp_path: Path, clock: VirtualClock) -> None:
    engine = make_engine(tmp_path, clock)
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Assign": {"seen.$": "$.v"}, "End": True}}}
    result = engine.run_execution(engine.create_state_machine("shape", definition), {"v": 1}, name="first-run")
    events = engine.get_execution_history(result["executionArn"])["events"]
    assert [event["id"] for event in events] == [1, 2, 3, 4]
    assert [event["previousEventId"] for event in events] == [0, 0, 2, 3]
    assert events[0]["executionStartedEventDetails"]["input"] == '{"v":1}'
    exited = events[2]["stateExitedEventDetails"]
    assert exited["name"] == "P" and exited["assignedVariables"] == {"seen": "1"}
    listed = engine.list_executions("shape")
    assert [(item["name"], item["status"]) for item in listed] == [("first-run", "SUCCEEDED")]
    assert engine.describe_execution("first-run")["executionArn"].endswith(":execution:shape:first-run")


def test_execution_names_are_unique_per_state_machine(tmp_path: Path, clock: VirtualClock) -> None:
    engine = make_engine(tmp_path, clock)
    arn = engine.create_state_machine("once", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    engine.run_execution(arn, name="only")
    with pytest.raises(EngineError, match="'only' already exists"):
        engine.run_execution(arn, name="only")


def test_two_engines_in_one_process_do_not_take_each_others_runs_for_orphans(tmp_path: Path) -> None:
    release = threading.Event()
    first = make_engine(tmp_path, SystemClock(), wait=lambda event, context: release.wait(10))
    arn = first.create_state_machine("shared", {"StartAt": "T", "States": {"T": task("wait", End=True)}})
    execution = first.start_execution(arn)
    try:
        second = make_engine(tmp_path, SystemClock())
        assert second.describe_execution(execution)["status"] == "RUNNING"
    finally:
        release.set()
    assert first.wait(execution, timeout=10)["status"] == "SUCCEEDED"


def test_a_handler_mutating_its_event_cannot_change_the_definition(tmp_path: Path, clock: VirtualClock) -> None:
    def vandal(event: dict, context: Any) -> dict:
        event["config"]["threshold"] = 0
        return event

    engine = make_engine(tmp_path, clock, vandal=vandal)
    definition = {"StartAt": "Constant", "States": {
        "Constant": {"Type": "Pass", "Result": {"config": {"threshold": 0.8}}, "Next": "Call"},
        "Call": task("vandal", ResultPath="$.returned", End=True)}}
    arn = engine.create_state_machine("constants", definition)
    first = json.loads(engine.run_execution(arn)["output"])
    second = json.loads(engine.run_execution(arn)["output"])
    assert first["config"] == second["config"] == {"threshold": 0.8}


def test_a_start_follows_the_state_machine_deleted_or_re_created_since_the_last(tmp_path: Path) -> None:
    """StartExecution keeps each state machine's ARN and type between calls; the insert checks both, so a
    machine deleted since is StateMachineDoesNotExist, and one re-created as EXPRESS starts express executions."""
    engine = Engine(tmp_path / "engine.sqlite3")
    plain = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    arn = engine.create_state_machine("m", plain)
    assert ":execution:m:first" in engine.run_execution(arn, {}, "first")["executionArn"]
    engine.delete_state_machine(arn)
    with pytest.raises(StateMachineDoesNotExist):
        engine.start_execution(arn, {}, "second")
    engine.create_state_machine("m", plain, type="EXPRESS")
    assert ":express:m:third:" in engine.run_execution(arn, {}, "third")["executionArn"]
