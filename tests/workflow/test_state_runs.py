"""Per-state status folded from real engine histories."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workflow.state_runs import state_runs
from workflow.engine import Engine


def _runs(engine: Engine, arn: str) -> dict[str, Any]:
    description = engine.describe_execution(arn)
    return state_runs(engine.get_execution_history(arn)["events"], description["status"])


def _boom(event: Any, context: Any) -> Any:
    raise ValueError("boom")


def test_caught_failure_is_told_apart_from_success(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", functions={"boom": _boom})
    arn = engine.create_state_machine("caught", {"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "boom"},
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}], "End": True},
        "Recover": {"Type": "Pass", "End": True}}})  # fmt: skip
    result = engine.run_execution(arn, {})
    runs = _runs(engine, result["executionArn"])
    assert result["status"] == "SUCCEEDED"
    assert runs["Call"].status == "caught" and runs["Call"].error == "ValueError"
    assert runs["Recover"].status == "succeeded"
    assert runs["Call"].resource == "lambda:invoke"


def test_map_iterations_and_visits(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    arn = engine.create_state_machine("mapped", {"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Pass", "End": True}}},
                 "End": True}}})  # fmt: skip
    result = engine.run_execution(arn, [1, 2, 3, 4])
    runs = _runs(engine, result["executionArn"])
    assert runs["Each"].status == "succeeded" and runs["Each"].visits == 1
    assert json.loads(runs["Each"].output) == [1, 2, 3, 4]
    assert runs["Item"].status == "succeeded" and runs["Item"].visits == 4 and runs["Item"].active == 0


def test_failed_state_then_redriven_shows_the_last_attempt(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("")

    def flaky(event: Any, context: Any) -> Any:
        if flag.exists():
            raise RuntimeError("still broken")
        return {"ok": True}

    engine = Engine(tmp_path / "engine.sqlite3", functions={"flaky": flaky})
    arn = engine.create_state_machine("redrive", {"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Next": "Call"},
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "flaky"}, "End": True}}})  # fmt: skip
    failed = engine.run_execution(arn, {})["executionArn"]
    before = _runs(engine, failed)
    assert before["First"].status == "succeeded"
    assert before["Call"].status == "failed" and before["Call"].cause and "still broken" in before["Call"].cause
    flag.unlink()
    engine.redrive_execution(failed, wait=True)
    after = _runs(engine, failed)
    assert after["Call"].status == "succeeded" and after["Call"].visits == 2 and after["Call"].error is None
    assert after["First"].visits == 1  # redrive resumes at the failed state


def test_stopped_execution_marks_the_running_state_aborted(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    arn = engine.create_state_machine("stopped", {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 60, "End": True}}})
    execution = engine.start_execution(arn, {})
    while not engine.get_execution_history(execution)["events"][1:]:
        pass
    engine.stop_execution(execution)
    description = engine.wait(execution, timeout=30)
    assert description["status"] == "ABORTED"
    runs = _runs(engine, execution)
    assert runs["Hold"].status == "aborted" and runs["Hold"].seconds >= 0
