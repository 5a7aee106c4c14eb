"""An execution read against the ASL it ran: gates, result writers and the production InService
state come from the definition, not from state names written into the views."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workflow.engine import Engine
from workflow.pricing import hourly_cost
from workflow.run_record import DECISION, FAULT, gates, in_service_state, outcome, read_run, writers

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.asl.json")), ids=lambda path: path.name)
def test_the_pipeline_definition_yields_its_gates_and_stages(golden: Path) -> None:
    definition = json.loads(golden.read_text())
    found = [(gate.name, gate.passed, gate.rejected) for gate in gates(definition)]
    promotion = "RequestApproval" if golden.name.startswith("approval") else "CreateProductionEndpointConfig"
    assert found == [("QualityGate", ("CreateModelPackageGroup",), "ModelRejected"), ("SloGate", (promotion,), "SloNotMet")]
    stages = {key: writers(definition, key) for key in ("processing", "training", "evaluation", "load_test")}
    assert stages == {"processing": ["Process"], "training": ["Train"], "evaluation": ["Evaluate"], "load_test": ["MergeLoadTest"]}
    assert in_service_state(definition, "ddcicd-production") == "RecordProductionMetrics"
    assert in_service_state(definition, "some-other-endpoint") is None


def test_a_choice_whose_default_only_loops_or_continues_is_not_a_gate() -> None:
    definition = {"StartAt": "Poll", "States": {
        "Poll": {"Type": "Choice", "Choices": [{"Variable": "$.done", "BooleanEquals": True, "Next": "Done"}], "Default": "Wait"},
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Poll"},
        "Route": {"Type": "Choice", "Choices": [{"Variable": "$.a", "BooleanEquals": True, "Next": "Done"}], "Default": "Other"},
        "Other": {"Type": "Pass", "Next": "Done"},
        "Done": {"Type": "Succeed"}}}  # fmt: skip
    assert gates(definition) == []


def test_a_gate_may_fail_through_a_choice_whose_every_branch_fails_which_is_no_gate() -> None:
    definition = {"StartAt": "Gate", "States": {
        "Gate": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Done"}], "Default": "Rejected"},
        "Rejected": {"Type": "Pass", "Next": "Registered"},
        "Registered": {"Type": "Choice", "Choices": [{"Variable": "$.arn", "IsPresent": True, "Next": "Reject"}], "Default": "Failed"},
        "Reject": {"Type": "Pass", "Next": "Failed"},
        "Failed": {"Type": "Fail"},
        "Done": {"Type": "Succeed"}}}  # fmt: skip
    assert [(gate.name, gate.passed, gate.rejected) for gate in gates(definition)] == [("Gate", ("Done",), "Rejected")]


def _boom(event: Any, context: Any) -> Any:
    raise RuntimeError("evaluation broke")


MACHINE = {"StartAt": "Read", "States": {
    "Read": {"Type": "Pass", "Result": {"rows": 1}, "ResultPath": "$.dataset", "Next": "Summarise"},
    "Summarise": {"Type": "Pass", "Result": {"rows": 2}, "ResultPath": "$.dataset", "Next": "Gate"},
    "Gate": {"Type": "Choice", "Choices": [{"Variable": "$.dataset.rows", "NumericGreaterThan": 1, "Next": "Score"}],
             "Default": "Rejected"},
    "Rejected": {"Type": "Pass", "Result": {"Error": "Rejected"}, "ResultPath": "$.error", "Next": "Failed"},
    "Failed": {"Type": "Fail", "Error": "Rejected"},
    "Score": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "boom"},
              "ResultPath": "$.evaluation", "Next": "Done"},
    "Done": {"Type": "Succeed"}}}  # fmt: skip


def test_a_record_reads_results_gates_and_the_failed_state(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", functions={"boom": _boom})
    arn = engine.run_execution(engine.create_state_machine("record", MACHINE), {"Uri": "s3://b/k"})["executionArn"]
    record = read_run(engine, arn)
    assert record.description["status"] == "FAILED" and record.execution_input == {"Uri": "s3://b/k"}
    assert record.writer("dataset") == "Summarise" and record.result("dataset") == {"rows": 2}  # the last writer wins
    assert [(item.gate.name, item.decision) for item in record.gates()] == [("Gate", "passed")]
    assert record.writer("evaluation") == "Score" and record.result("evaluation") is None  # it failed: no output
    assert record.failed_state() == "Score"
    assert record.writer("nothing") is None and record.result("nothing") is None


def test_a_record_reads_the_definition_version_the_execution_ran(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", functions={"boom": _boom})
    machine = engine.create_state_machine("record", MACHINE)
    arn = engine.run_execution(machine, {})["executionArn"]
    renamed = json.loads(json.dumps(MACHINE).replace('"Gate"', '"Checkpoint"'))
    engine.update_state_machine(machine, renamed)
    assert [gate.name for gate in gates(read_run(engine, arn).definition)] == ["Gate"]
    later = engine.run_execution(machine, {})["executionArn"]
    assert [gate.name for gate in gates(read_run(engine, later).definition)] == ["Checkpoint"]


def test_a_task_that_failed_is_a_fault_to_redrive_and_a_fail_state_a_decision(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", functions={"boom": _boom})
    machine = engine.create_state_machine("record", MACHINE)
    run_input = {"StagingEndpointName": "run-1-staging", "ModelName": "run-1-model"}
    fault = outcome(read_run(engine, engine.run_execution(machine, run_input, name="run-1")["executionArn"]))
    assert (fault.kind, fault.state, fault.error) == (FAULT, "Score", "RuntimeError")
    assert fault.staging == (("endpoint", "run-1-staging"), ("model", "run-1-model"))
    text = "\n".join(fault.lines())
    assert "FAILED in state Score: RuntimeError: evaluation broke" in text
    assert "ddcicd redrive run-1" in text and "ddcicd cleanup --execution run-1" in text
    assert "kept: endpoint run-1-staging; model run-1-model" in text
    assert "kept: staging endpoint x (InService)" in "\n".join(fault.lines(["staging endpoint x (InService)"]))
    rejecting = json.loads(json.dumps(MACHINE).replace('"NumericGreaterThan": 1', '"NumericGreaterThan": 5'))
    engine.update_state_machine(machine, rejecting)
    decided = outcome(read_run(engine, engine.run_execution(machine, run_input, name="run-2")["executionArn"]))
    assert (decided.kind, decided.state, decided.error) == (DECISION, "Failed", "Rejected")
    assert decided.staging == () and "would end the same way" in "\n".join(decided.lines())
    done = outcome(read_run(engine, engine.run_execution(engine.create_state_machine("ok", {
        "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}), {})["executionArn"]))  # fmt: skip
    assert done.kind == "succeeded" and done.lines() == []


def test_the_price_table_prices_known_instance_types_only() -> None:
    assert hourly_cost("ml.m5.large") == 0.115 and hourly_cost("ml.m5.large", 2) == 0.23
    assert hourly_cost("ml.unknown.size") is None
