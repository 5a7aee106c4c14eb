"""`ddcicd aws approve`: answer the task token of an execution's waiting approval, found in its history.

The approval is a callback Task (`....waitForTaskToken`) whose Parameters carry
`$$.Task.Token` somewhere (the pipeline puts it at Message.task_token). Step Functions
records the resolved Parameters in the Task's TaskScheduled event, so the token is read
from there, at the place the definition the execution ran puts `$$.Task.Token`:

    waiting = find_waiting_task(context, execution_arn)    # state name, token
    approve(context, execution_arn)                        # SendTaskSuccess
    approve(context, execution_arn, reject=True, reason="accuracy too low")  # SendTaskFailure ApprovalRejected
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from workflow.aws.clients import AwsContext, AwsError
from workflow.aws.executions import history

APPROVAL_REJECTED = "ApprovalRejected"  # the error a rejection sends (the definition catches it)
_TOKEN_REFERENCES = ("$$.Task.Token", "{% $states.context.Task.Token %}")
_ENDED = ("TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed")


@dataclass(frozen=True)
class WaitingTask:
    state: str
    token: str
    scheduled_event_id: int


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state of a definition, nested ones (Parallel branches, Map processors) included."""
    for name, state in (definition.get("States") or {}).items():
        yield name, state
        for branch in state.get("Branches") or []:
            yield from _states(branch)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _states(processor)


def token_paths(template: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Where a Parameters/Arguments template puts the task token.

    >>> list(token_paths({"Message": {"task_token.$": "$$.Task.Token"}}))
    [('Message', 'task_token')]
    """
    if isinstance(template, dict):
        for key, value in template.items():
            if isinstance(value, str) and value.strip() in _TOKEN_REFERENCES:
                yield (*path, key.removesuffix(".$"))
            else:
                yield from token_paths(value, (*path, key.removesuffix(".$")))


def _at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(document, str):
            try:
                document = json.loads(document)  # a Message that was serialised to text
            except ValueError:
                return None
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def find_waiting_task(context: AwsContext, execution_arn: str, events: list[dict[str, Any]] | None = None) -> WaitingTask:
    """The callback task the execution waits on now, with its token; AwsError when it waits on none."""
    sfn = context.client("stepfunctions")
    description = sfn.describe_execution(executionArn=execution_arn)
    if description["status"] != "RUNNING":
        raise AwsError(f"execution {description.get('name')} is {description['status']}: nothing waits for approval")
    definition = json.loads(sfn.describe_state_machine_for_execution(executionArn=execution_arn)["definition"])
    paths = {name: list(token_paths(state.get("Parameters") or state.get("Arguments"))) for name, state in _states(definition)}
    state: str | None = None
    open_tasks: dict[str, tuple[int, dict[str, Any]]] = {}
    for event in events if events is not None else history(context, execution_arn):
        kind = event["type"]
        if kind.endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
        elif kind == "TaskScheduled" and state and paths.get(state):
            open_tasks[state] = (event["id"], event["taskScheduledEventDetails"])
        elif kind in _ENDED or kind.endswith("StateExited") or kind == "ExecutionRedriven":
            name = (event.get("stateExitedEventDetails") or {}).get("name", state)
            open_tasks.pop(name or "", None)
            if kind == "ExecutionRedriven":
                open_tasks.clear()
    for name, (event_id, details) in reversed(list(open_tasks.items())):
        parameters = json.loads(details.get("parameters") or "{}")
        for path in paths[name]:
            token = _at(parameters, path)
            if isinstance(token, str) and token:
                return WaitingTask(name, token, event_id)
    raise AwsError(f"execution {description.get('name')} is not waiting for an approval (no open task-token task in its history)")


def approve(context: AwsContext, execution_arn: str, reject: bool = False, reason: str | None = None) -> WaitingTask:
    """SendTaskSuccess (approved) or SendTaskFailure with ApprovalRejected and the reason as the cause."""
    waiting = find_waiting_task(context, execution_arn)
    sfn = context.client("stepfunctions")
    if reject:
        sfn.send_task_failure(taskToken=waiting.token, error=APPROVAL_REJECTED, cause=reason or "rejected with ddcicd aws approve --reject")
    else:
        sfn.send_task_success(taskToken=waiting.token, output=json.dumps({"approved": True, "reason": reason or ""}))
    return waiting
