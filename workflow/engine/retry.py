"""Retry and Catch around the work of a Task, Parallel or Map state.

A `StatesError` from the work is matched against the state's Retriers in order (the first
whose ErrorEquals names the error, `States.ALL`, or `States.TaskFailed` for any error but
a timeout); while it has attempts left the work runs again after
IntervalSeconds * BackoffRate ** attempt (capped by MaxDelaySeconds, jittered with FULL).
Then the Catchers: the first match sends the error output {"Error", "Cause"} to its Next
state. States.Runtime and States.QueryEvaluationError are neither retried nor caught.
"""
from __future__ import annotations

import random
from typing import Callable

from workflow.engine.context import Outcome, StateRun
from workflow.engine.errors import UNCATCHABLE, ErrorName, StatesError
from workflow.engine.states import Catcher, Retrier
from workflow.engine.values import Json


def with_retry_and_catch(run: StateRun, attempt: Callable[[], Json], on_failure: Callable[[], None] | None = None) -> Outcome:
    """Runs `attempt` with the state's Retry policy, then its Catch; `on_failure` marks the final failure.

    The result goes through ResultSelector, ResultPath, OutputPath and Assign (JSONPath)
    or Output and Assign over `$states.result` (JSONata).
    """
    state = run.state
    counts = [0] * len(state.retry)
    while True:
        try:
            result = attempt()
            if state.jsonata:
                return run.jsonata_finish(state, run.bindings(result=result), result, state.next)
            if state.result_selector is not None:
                result = run.template(state.result_selector, result)
            return run.finish(result)
        except StatesError as error:
            if error.error in UNCATCHABLE:
                if on_failure is not None:
                    on_failure()
                raise
            retrier_index = _matching(state.retry, error.error)
            if retrier_index is not None:
                retrier = state.retry[retrier_index]
                if counts[retrier_index] < retrier.max_attempts:
                    run.interpreter.sleep(_retry_delay(retrier, counts[retrier_index]))
                    counts[retrier_index] += 1
                    if "RetryCount" in run.state_context:
                        run.state_context["RetryCount"] = sum(counts)
                    continue
            if on_failure is not None:
                on_failure()
            catcher_index = _matching(state.catch, error.error)
            if catcher_index is None:
                raise
            catcher = state.catch[catcher_index]
            error_output = error.to_output()
            if state.jsonata:
                return run.jsonata_finish(catcher, run.bindings(errorOutput=error_output), error_output, catcher.next)
            assigned = run.assignments(catcher.assign, error_output)
            return Outcome(run.apply_result_path(catcher, error_output), catcher.next, assigned)


def error_matches(names: tuple[str, ...], error: str | None) -> bool:
    """Whether an ErrorEquals list names `error`: exactly, through States.ALL, or States.TaskFailed (not a timeout).

    A heartbeat timeout is a timeout: States.Timeout names "a Task state [that] either ran
    longer than the TimeoutSeconds value, or failed to send a heartbeat for a period longer
    than the HeartbeatSeconds value", so it matches States.HeartbeatTimeout too, and
    States.TaskFailed matches neither
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
    """
    if error is None:
        return False
    for name in names:
        if name == error:
            return True
        if name == ErrorName.ALL and error != ErrorName.RUNTIME:
            return True
        if name == ErrorName.TIMEOUT and error == ErrorName.HEARTBEAT_TIMEOUT:
            return True
        if name == ErrorName.TASK_FAILED and error not in (ErrorName.TIMEOUT, ErrorName.HEARTBEAT_TIMEOUT, ErrorName.RUNTIME):
            return True
    return False


def _matching(entries: tuple[Retrier, ...] | tuple[Catcher, ...], error: str | None) -> int | None:
    for index, entry in enumerate(entries):
        if error_matches(entry.error_equals, error):
            return index
    return None


def _retry_delay(retrier: Retrier, attempt: int) -> float:
    delay = retrier.interval_seconds * (retrier.backoff_rate ** attempt)
    if retrier.max_delay_seconds is not None:
        delay = min(delay, retrier.max_delay_seconds)
    if retrier.jitter_strategy == "FULL":
        delay = random.uniform(0, delay)
    return delay
