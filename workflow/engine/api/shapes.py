"""Engine results -> the members of AWS's response shapes (JSON 1.0: timestamps are epoch seconds).

The engine answers with dicts in boto3's style (AWS keys, `datetime` values); these
functions pick the members each response shape has and turn datetimes into numbers, so
what goes over the wire is exactly what AWS's service model describes.

    execution_description(engine.describe_execution(arn))
    {"executionArn": "...", "status": "SUCCEEDED", "startDate": 1764555600.123, ...}
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from workflow.engine.values import Json

# History event details members that carry execution data (dropped when includeExecutionData is false).
_DATA_MEMBERS = ("input", "inputDetails", "output", "outputDetails")


def epoch(value: datetime | float | None) -> float | None:
    """A timestamp as the JSON protocol sends it: seconds since the epoch, milliseconds kept."""
    if value is None:
        return None
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    return round(seconds, 3)


def _present(shape: dict[str, Any]) -> dict[str, Any]:
    """Drops absent members: AWS sends no nulls."""
    return {key: value for key, value in shape.items() if value is not None}


def state_machine_description(machine: dict[str, Json]) -> dict[str, Json]:
    """DescribeStateMachine."""
    return _present({
        "stateMachineArn": machine["stateMachineArn"], "name": machine["name"], "status": "ACTIVE",
        "definition": machine["definition"], "roleArn": machine["roleArn"], "type": machine["type"],
        "creationDate": epoch(machine["creationDate"]), "revisionId": str(machine["revision"]),
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": False},
        "tracingConfiguration": {"enabled": False},
    })


def state_machine_list_item(machine: dict[str, Json]) -> dict[str, Json]:
    """ListStateMachines' StateMachineListItem."""
    return {"stateMachineArn": machine["stateMachineArn"], "name": machine["name"], "type": machine["type"],
            "creationDate": epoch(machine["creationDate"])}


def execution_description(execution: dict[str, Json], included_data: str = "ALL_DATA") -> dict[str, Json]:
    """DescribeExecution (also the body of StartSyncExecution's reply, which has a subset)."""
    metadata_only = included_data == "METADATA_ONLY"
    redrivable = execution["redriveStatus"] == "REDRIVABLE"
    shape = {
        "executionArn": execution["executionArn"], "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"], "status": execution["status"], "startDate": epoch(execution["startDate"]),
        "stopDate": epoch(execution.get("stopDate")),
        "input": None if metadata_only else execution.get("input"),
        "inputDetails": {"included": not metadata_only},
        "output": None if metadata_only else execution.get("output"),
        "outputDetails": {"included": not metadata_only} if "output" in execution else None,
        "error": execution.get("error"), "cause": execution.get("cause"),
        "redriveCount": execution.get("redriveCount", 0), "redriveDate": epoch(execution.get("redriveDate")),
        "redriveStatus": execution["redriveStatus"],
        "redriveStatusReason": None if redrivable else f"Execution is {execution['status']} and cannot be redriven",
    }
    if ":express:" in execution["executionArn"]:  # AWS redrives standard workflows only
        shape["redriveStatus"], shape["redriveStatusReason"] = "NOT_REDRIVABLE", "Express executions cannot be redriven"
    return _present(shape)


def sync_execution(execution: dict[str, Json]) -> dict[str, Json]:
    """StartSyncExecution: DescribeExecution's members that its reply shape has, plus billing details."""
    described = execution_description(execution)
    members = ("executionArn", "stateMachineArn", "name", "startDate", "stopDate", "status", "error", "cause", "input",
               "inputDetails", "output", "outputDetails")
    shape = {key: described[key] for key in members if key in described}
    duration_ms = int(round((shape["stopDate"] - shape["startDate"]) * 1000))
    shape["billingDetails"] = {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": max(100, -(-duration_ms // 100) * 100)}
    return shape


def execution_list_item(execution: dict[str, Json]) -> dict[str, Json]:
    """ListExecutions' ExecutionListItem."""
    return _present({
        "executionArn": execution["executionArn"], "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"], "status": execution["status"], "startDate": epoch(execution["startDate"]),
        "stopDate": epoch(execution.get("stopDate")), "redriveCount": execution.get("redriveCount", 0),
        "redriveDate": epoch(execution.get("redriveDate")),
    })


def history_event(event: dict[str, Json], include_data: bool = True) -> dict[str, Json]:
    """GetExecutionHistory's HistoryEvent; without execution data, the details lose input and output."""
    shaped = {"timestamp": epoch(event["timestamp"]), "type": event["type"], "id": event["id"],
              "previousEventId": event["previousEventId"]}
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            shaped[key] = value if include_data else {name: item for name, item in value.items() if name not in _DATA_MEMBERS}
    return shaped


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags.items()]
