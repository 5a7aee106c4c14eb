"""X-Amz-Target operation name -> the function that answers it; one entry point, `call`.

    reply = call(backend, "DescribeExecution", {"executionArn": arn}, Caller("us-east-1", "000000000000"))

Operations that Step Functions has but this engine does not (aliases, versions, map runs,
TestState) are not listed, so they answer UnknownOperationException like any unknown name.
"""
from __future__ import annotations

from typing import Any, Callable

from workflow.engine.api import executions, machines, tagging, tasks
from workflow.engine.api.backend import Backend
from workflow.engine.api.errors import ApiError, from_engine
from workflow.engine.api.requests import Caller, Request
from workflow.engine.errors import EngineError

Operation = Callable[[Backend, Request], dict[str, Any]]

OPERATIONS: dict[str, Operation] = {
    "CreateStateMachine": machines.create_state_machine,
    "UpdateStateMachine": machines.update_state_machine,
    "DescribeStateMachine": machines.describe_state_machine,
    "ListStateMachines": machines.list_state_machines,
    "DeleteStateMachine": machines.delete_state_machine,
    "DescribeStateMachineForExecution": machines.describe_state_machine_for_execution,
    "ValidateStateMachineDefinition": machines.validate_state_machine_definition,
    "StartExecution": executions.start_execution,
    "StartSyncExecution": executions.start_sync_execution,
    "StopExecution": executions.stop_execution,
    "DescribeExecution": executions.describe_execution,
    "ListExecutions": executions.list_executions,
    "GetExecutionHistory": executions.get_execution_history,
    "RedriveExecution": executions.redrive_execution,
    "SendTaskSuccess": tasks.send_task_success,
    "SendTaskFailure": tasks.send_task_failure,
    "SendTaskHeartbeat": tasks.send_task_heartbeat,
    "CreateActivity": tasks.create_activity,
    "DeleteActivity": tasks.delete_activity,
    "DescribeActivity": tasks.describe_activity,
    "ListActivities": tasks.list_activities,
    "GetActivityTask": tasks.get_activity_task,
    "TagResource": tagging.tag_resource,
    "UntagResource": tagging.untag_resource,
    "ListTagsForResource": tagging.list_tags_for_resource,
}


def call(backend: Backend, operation: str, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """Runs one operation; every failure leaves as an ApiError (AWS's name, message and status)."""
    handler = OPERATIONS.get(operation)
    if handler is None:
        raise ApiError("UnknownOperationException", f"Unknown operation {operation!r}")
    try:
        return handler(backend, Request(body, caller))
    except EngineError as error:
        raise from_engine(error) from error
