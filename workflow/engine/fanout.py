"""Parallel and Map states, in both query languages: branches and iterations as child flows.

Work that can block (Task, Wait) runs in threads, up to MaxConcurrency; Pass-only
fan-outs run in order, which is faster and keeps their history deterministic. Results of
the branches and iterations of top-level states are checkpointed (through the Recorder)
so that a redrive re-runs only the ones that did not succeed.
"""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from workflow.engine.context import Outcome, StateRun
from workflow.engine.errors import ErrorName, ExecutionStopped, RuntimeFailure, SiblingFailed, StatesError
from workflow.engine.jsonata import evaluate_template, expression_of, type_name
from workflow.engine.paths import PathError
from workflow.engine.retry import with_retry_and_catch
from workflow.engine.states import StateMachineDefinition
from workflow.engine.values import Json, dumps, shown


# Parallel: Branches[], InputPath, Parameters (JSONPath) or Arguments (JSONata), Retry, Catch,
# ResultSelector, ResultPath, OutputPath / Output, Assign
def run_parallel(run: StateRun) -> Outcome:
    state, flow, interpreter = run.state, run.flow, run.interpreter
    effective = run.input if state.jsonata else run.select(state.input_path, run.input)
    key, reusable = _begin_fan_out(run)

    def attempt() -> Json:
        if state.jsonata:
            branch_input = effective if state.arguments is None else evaluate_template(state.arguments, "Arguments",
                                                                                       run.bindings())
        else:
            branch_input = effective if state.parameters is None else run.template(state.parameters, effective)
        run.emit("ParallelStateStarted")
        done = reusable()
        failed = threading.Event()  # a branch failed: the others stop

        def run_branch(index: int) -> Json:
            branch_key = f"{key}#{index}"
            if branch_key in done:
                return done[branch_key]
            branch_flow = flow.child(branch_key, aborted=failed)
            try:
                output = interpreter.run_machine(state.branches[index], branch_input, branch_flow)
            except StatesError as error:
                if error.state_type == "Task":  # AWS marks the branch's failed Task as aborted
                    interpreter.emit(branch_flow, "TaskStateAborted")
                raise
            finally:
                flow.last_event = max(flow.last_event, branch_flow.last_event)
            _checkpoint(run, branch_key, output)
            return output

        results = _fan_out(run, run_branch, len(state.branches), None, _needs_threads(state.branches), failed)
        run.emit("ParallelStateSucceeded")
        return results

    return with_retry_and_catch(run, attempt, lambda: run.emit("ParallelStateFailed"))


# Map: ItemsPath (JSONPath) or Items (JSONata), ItemSelector (or Parameters), ItemProcessor,
# MaxConcurrency(Path), ToleratedFailureCount(Path), ToleratedFailurePercentage(Path), Retry, Catch,
# ResultSelector, ResultPath, OutputPath / Output, Assign
def run_map(run: StateRun) -> Outcome:
    state, flow, interpreter = run.state, run.flow, run.interpreter
    bindings = run.bindings() if state.jsonata else {}
    effective = run.input if state.jsonata else run.select(state.input_path, run.input)
    max_concurrency = state.max_concurrency
    if state.jsonata:
        max_concurrency = run.jsonata_number(max_concurrency, "MaxConcurrency", bindings)
    if state.max_concurrency_path is not None:
        max_concurrency = _number_from_path(run, "MaxConcurrencyPath", state.max_concurrency_path, effective, int)
    items = _map_items(run, effective, bindings)
    distributed = state.processor_mode == "DISTRIBUTED"
    key, reusable = _begin_fan_out(run)

    def attempt() -> Json:
        run.emit("MapStateStarted", {"length": len(items)})
        tolerated_count = state.tolerated_failure_count
        tolerated_percentage = state.tolerated_failure_percentage
        if state.jsonata:
            tolerated_count = run.jsonata_number(tolerated_count, "ToleratedFailureCount", bindings)
            tolerated_percentage = run.jsonata_number(tolerated_percentage, "ToleratedFailurePercentage", bindings)
        if state.tolerated_failure_count_path is not None:
            tolerated_count = _number_from_path(run, "ToleratedFailureCountPath", state.tolerated_failure_count_path,
                                                effective, int)
        if tolerated_count is not None and tolerated_count < 0:
            raise RuntimeFailure("ToleratedFailureCount cannot be negative.")
        if state.tolerated_failure_percentage_path is not None:
            tolerated_percentage = _number_from_path(run, "ToleratedFailurePercentagePath",
                                                     state.tolerated_failure_percentage_path, effective, float)
        if tolerated_percentage is not None and not 0 <= tolerated_percentage <= 100:
            raise RuntimeFailure("ToleratedFailurePercentage must be between 0 and 100.")
        if distributed:
            info = interpreter.info
            partition = info.execution_arn.split(":")[1]
            run_arn = (f"arn:{partition}:states:{info.region}:{info.account}:mapRun:"
                       f"{info.state_machine_name}/{state.name if state.label is None else state.label}:{uuid.uuid4()}")
            run.emit("MapRunStarted", {"mapRunArn": run_arn})
        done = reusable()
        failed = threading.Event()  # the Map failed (past its tolerated failures): the other iterations stop
        failures: list[StatesError] = []
        failure_lock = threading.Lock()
        latest = [flow.last_event]

        def run_item(index: int) -> Json:
            item_key = f"{key}#{index}"
            item = {"Index": index, "Value": items[index]}
            iteration_flow = flow.child(item_key, item, silent=distributed, aborted=failed)
            if state.item_selector is not None and state.jsonata:
                item_input = evaluate_template(state.item_selector, "ItemSelector", run.in_flow(iteration_flow).bindings())
            elif state.item_selector is not None:
                item_input = run.in_flow(iteration_flow).template(state.item_selector, effective)
            else:
                item_input = items[index]
            if item_key in done:
                return done[item_key]
            iteration = {"index": index, "name": state.name}
            iteration_flow.last_event = flow.last_event  # AWS chains iterations one after the other
            interpreter.emit(iteration_flow, "MapIterationStarted", iteration)
            try:
                output = interpreter.run_machine(state.processor, item_input, iteration_flow)
            except StatesError as error:
                interpreter.emit(iteration_flow, "MapIterationFailed", iteration, advance=False)
                flow.last_event = max(flow.last_event, iteration_flow.last_event)
                with failure_lock:
                    failures.append(error)
                    if not _tolerated(len(failures), len(items), tolerated_count, tolerated_percentage):
                        raise
                return error.to_output()
            except ExecutionStopped:
                interpreter.emit(iteration_flow, "MapIterationAborted", iteration, advance=False)
                raise
            succeeded = interpreter.emit(iteration_flow, "MapIterationSucceeded", iteration, advance=False)
            flow.last_event = max(flow.last_event, iteration_flow.last_event)
            latest[0] = max(latest[0], succeeded)
            _checkpoint(run, item_key, output)
            return output

        try:
            results = _fan_out(run, run_item, len(items), max_concurrency or None, _needs_threads([state.processor]),
                               failed)
        except StatesError as error:
            if distributed:
                run.emit("MapRunFailed", error.to_details())
            if tolerated_count is not None or tolerated_percentage is not None:
                raise StatesError(ErrorName.EXCEED_TOLERATED_FAILURE_THRESHOLD,
                                  "The specified tolerance threshold was exceeded") from error
            raise
        if distributed:
            latest[0] = run.emit("MapRunSucceeded")
        last = max(latest[0], flow.last_event)
        run.emit("MapStateSucceeded", previous=last)
        flow.last_event = last  # MapStateExited points at the same event as MapStateSucceeded
        return results

    return with_retry_and_catch(run, attempt, lambda: run.emit("MapStateFailed"))


def _begin_fan_out(run: StateRun) -> tuple[str, Callable[[], dict[str, Json]]]:
    """The checkpoint key of a Map/Parallel run (e.g. "/Fan"), and what each attempt may reuse.

    A fresh run (not a redrive resuming it) forgets the branch results an earlier run of
    the same state left behind. Only the first attempt of a redrive reuses checkpoints; a
    Retry re-runs every branch or iteration, as AWS does, so it forgets what the failed
    attempt saved.
    """
    key = f"{run.flow.scope}/{run.state.name}"
    resume_keys = run.interpreter.resume_keys
    resumed = key in resume_keys
    resume_keys.discard(key)
    recorder, silent = run.interpreter.recorder, run.flow.silent
    if not resumed and not silent:
        recorder.clear_checkpoints(key + "#")
    attempts = [0]

    def reusable() -> dict[str, Json]:
        attempts[0] += 1
        if attempts[0] == 1:
            return recorder.checkpoints(key + "#") if resumed else {}
        if not silent:
            recorder.clear_checkpoints(key + "#")
        return {}

    return key, reusable


def _checkpoint(run: StateRun, key: str, output: Json) -> None:
    if not run.flow.silent and key.count("#") == 1:  # iterations/branches of top-level states only
        run.interpreter.recorder.checkpoint(key, output)


def _map_items(run: StateRun, effective: Json, bindings: dict[str, Json]) -> list[Json]:
    """The array to iterate: ItemsPath (JSONPath), Items (JSONata) or the input itself."""
    state = run.state
    if state.jsonata and state.has_items:
        items = evaluate_template(state.items, "Items", bindings)
        if not isinstance(items, list):
            text = expression_of(state.items) or dumps(state.items)
            raise RuntimeFailure(f"The JSONata expression '{text}' specified for the field 'Items' returned an unexpected"
                                 f" result type. Expected 'array', but was '{type_name(items)}' for value: {dumps(items)}",
                                 ErrorName.QUERY_EVALUATION_ERROR, "Items")
        return items
    items = effective if state.jsonata else run.select(state.items_path, effective)
    if not isinstance(items, list):
        raise RuntimeFailure(f"Map state input must be an array but was: {dumps(items)}",
                             ErrorName.QUERY_EVALUATION_ERROR if state.jsonata else ErrorName.RUNTIME, "Items")
    return items


def _number_from_path(run: StateRun, field_name: str, path_text: str, data: Json, kind: type) -> Any:
    """MaxConcurrencyPath, ToleratedFailure*Path: a number (or a numeric string) of `kind`, else States.Runtime."""
    try:
        value = run.lookup(path_text, data)
    except PathError as error:
        raise RuntimeFailure(f"The {field_name} field refers to a path that does not exist: {path_text}") from error
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = kind(value)
        except ValueError:
            number = None
    if number is None or (kind is int and not float(number).is_integer()):
        label = "integer" if kind is int else "float"
        raise RuntimeFailure(f'The {field_name} field refers to value "{shown(value)}" which is not a valid {label}: {path_text}')
    return kind(number)


def _fan_out(run: StateRun, work: Callable[[int], Json], count: int, concurrency: int | None, threaded: bool,
             failed: threading.Event) -> list[Json]:
    """Runs work(0..count-1); in threads when the work can block (Task/Wait) and concurrency allows.

    The first failure sets `failed`: work not yet started does not start, and running work
    stops at its next check (the flows of the work carry `failed`; a callback Task waiting
    for its token or a .sync job's poll notices within a poll interval). The error raised
    is the failure itself, not a sibling's SiblingFailed.
    """
    if count == 0:
        return []
    if not threaded or concurrency == 1 or count == 1:
        return [work(index) for index in range(count)]
    workers = min(count, concurrency or count, 64)

    def guarded(index: int) -> Json:
        if failed.is_set():
            raise SiblingFailed("sibling failed")
        try:
            return work(index)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sfn-iteration") as pool:
        futures = [pool.submit(guarded, index) for index in range(count)]
        results: list[Json] = []
        errors: list[BaseException] = []
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as error:  # noqa: BLE001 - collected and re-raised below
                errors.append(error)
                results.append(None)
    if errors:
        cause = next((error for error in errors if not isinstance(error, SiblingFailed)), None)
        if cause is None:
            raise StatesError(ErrorName.RUNTIME, "iteration aborted")
        raise cause
    return results


def _tolerated(failures: int, total: int, count: int | None, percentage: float | None) -> bool:
    if count is None and percentage is None:
        return False
    if count is not None and failures <= count:
        return True
    if percentage is not None and total and failures * 100.0 / total <= percentage:
        return True
    return False


def _needs_threads(machines: tuple[StateMachineDefinition, ...] | list[StateMachineDefinition]) -> bool:
    """Only work that can block (Task, Wait) gains from threads; Pass-only fan-outs run in order."""
    return any(state.type in ("Task", "Wait") for machine in machines for state in machine.iter_states())
