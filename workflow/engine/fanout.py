"""Parallel and Map states: branches and iterations as child flows.

`FanOutStates` is mixed into the Interpreter; it uses its emit/select/template/run_machine
and Retry/Catch handling. Work that can block (Task, Wait) runs in threads, up to
MaxConcurrency; Pass-only fan-outs run in order, which is faster and keeps their history
deterministic. Results of the branches and iterations of top-level states are checkpointed
so that a redrive re-runs only the ones that did not succeed.
"""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from workflow.engine.errors import ExecutionStopped, StatesError
from workflow.engine.flows import Flow, RuntimeFailure, error_details
from workflow.engine.jsonata import QUERY_EVALUATION_ERROR, evaluate_template, expression_of, type_name
from workflow.engine.paths import PathError, dumps
from workflow.engine.states import State, StateMachineDefinition

if TYPE_CHECKING:
    from workflow.engine.interpreter import Interpreter

Json = Any


class FanOutStates:
    """The Parallel and Map state handlers (a mixin of Interpreter)."""

    # ------------------------------------------------------------------ Parallel: Branches[], Parameters
    def _state_parallel(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        effective = raw_input if state.jsonata else self.select(state.input_path, raw_input, state_context, flow)
        key = self._begin_fan_out(state, flow)

        def attempt() -> Json:
            if state.jsonata:
                branch_input = effective if state.arguments is None else evaluate_template(
                    state.arguments, "Arguments", self.bindings(flow, state_context, raw_input))
            else:
                branch_input = effective if state.parameters is None else self.template(state.parameters, effective, state_context, flow)
            self.emit(flow, "ParallelStateStarted")
            done = self._checkpoints(key)

            def run_branch(index: int) -> Json:
                branch_key = f"{key}#{index}"
                if branch_key in done:
                    return done[branch_key]
                branch_flow = flow.child(branch_key)
                try:
                    output = self.run_machine(state.branches[index], branch_input, branch_flow)
                except StatesError as error:
                    if getattr(error, "state_type", None) == "Task":  # AWS marks the branch's failed Task as aborted
                        self.emit(branch_flow, "TaskStateAborted")
                    raise
                finally:
                    flow.last_event = max(flow.last_event, branch_flow.last_event)
                self._checkpoint(branch_key, output, flow)
                return output

            results = self._fan_out(run_branch, len(state.branches), None, _needs_threads(state.branches))
            self.emit(flow, "ParallelStateSucceeded")
            return results

        return self.with_retry_and_catch(state, raw_input, flow, state_context, attempt,
                                         lambda: self.emit(flow, "ParallelStateFailed"))

    # ------------------------------------------------------------------ Map: ItemsPath, ItemSelector, ItemProcessor, MaxConcurrency, ToleratedFailure*
    def _state_map(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        bindings = self.bindings(flow, state_context, raw_input) if state.jsonata else {}
        effective = raw_input if state.jsonata else self.select(state.input_path, raw_input, state_context, flow)
        max_concurrency = state.max_concurrency
        if state.jsonata:
            max_concurrency = self.jsonata_number(max_concurrency, "MaxConcurrency", bindings)
        if state.max_concurrency_path is not None:
            max_concurrency = self._number_from_path("MaxConcurrencyPath", state.max_concurrency_path, effective, state_context, flow, int)
        items = self._map_items(state, effective, state_context, flow, bindings)
        distributed = state.processor_mode == "DISTRIBUTED"
        key = self._begin_fan_out(state, flow)

        def attempt() -> Json:
            self.emit(flow, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)})
            tolerated_count = state.tolerated_failure_count
            tolerated_percentage = state.tolerated_failure_percentage
            if state.jsonata:
                tolerated_count = self.jsonata_number(tolerated_count, "ToleratedFailureCount", bindings)
                tolerated_percentage = self.jsonata_number(tolerated_percentage, "ToleratedFailurePercentage", bindings)
            if state.tolerated_failure_count_path is not None:
                tolerated_count = self._number_from_path("ToleratedFailureCountPath", state.tolerated_failure_count_path,
                                                         effective, state_context, flow, int)
            if tolerated_count is not None and tolerated_count < 0:
                raise RuntimeFailure("ToleratedFailureCount cannot be negative.")
            if state.tolerated_failure_percentage_path is not None:
                tolerated_percentage = self._number_from_path("ToleratedFailurePercentagePath", state.tolerated_failure_percentage_path,
                                                              effective, state_context, flow, float)
            if tolerated_percentage is not None and not 0 <= tolerated_percentage <= 100:
                raise RuntimeFailure("ToleratedFailurePercentage must be between 0 and 100.")
            if distributed:
                partition = self.info.execution_arn.split(":")[1]
                run_arn = (f"arn:{partition}:states:{self.info.region}:{self.info.account}:mapRun:"
                           f"{self.info.state_machine_name}/{state.raw.get('Label', state.name)}:{uuid.uuid4()}")
                self.emit(flow, "MapRunStarted", "mapRunStartedEventDetails", {"mapRunArn": run_arn})
            done = self._checkpoints(key)
            failures: list[StatesError] = []
            failure_lock = threading.Lock()
            latest = [flow.last_event]

            def run_item(index: int) -> Json:
                item_key = f"{key}#{index}"
                item = {"Index": index, "Value": items[index]}
                iteration_flow = flow.child(item_key, item, silent=distributed)
                if state.item_selector is not None and state.jsonata:
                    item_input = evaluate_template(state.item_selector, "ItemSelector",
                                                   self.bindings(iteration_flow, state_context, raw_input))
                elif state.item_selector is not None:
                    item_input = self.template(state.item_selector, effective, state_context, iteration_flow)
                else:
                    item_input = items[index]
                if item_key in done:
                    return done[item_key]
                iteration = {"index": index, "name": state.name}
                iteration_flow.last_event = flow.last_event  # AWS chains iterations one after the other
                self.emit(iteration_flow, "MapIterationStarted", "mapIterationStartedEventDetails", iteration)
                try:
                    output = self.run_machine(state.processor, item_input, iteration_flow)
                except StatesError as error:
                    self.emit(iteration_flow, "MapIterationFailed", "mapIterationFailedEventDetails", iteration, advance=False)
                    flow.last_event = max(flow.last_event, iteration_flow.last_event)
                    with failure_lock:
                        failures.append(error)
                        if not _tolerated(len(failures), len(items), tolerated_count, tolerated_percentage):
                            raise
                    return error.to_output()
                except ExecutionStopped:
                    self.emit(iteration_flow, "MapIterationAborted", "mapIterationAbortedEventDetails", iteration, advance=False)
                    raise
                succeeded = self.emit(iteration_flow, "MapIterationSucceeded", "mapIterationSucceededEventDetails", iteration,
                                      advance=False)
                flow.last_event = max(flow.last_event, iteration_flow.last_event)
                latest[0] = max(latest[0], succeeded)
                self._checkpoint(item_key, output, flow)
                return output

            concurrency = max_concurrency or None
            try:
                results = self._fan_out(run_item, len(items), concurrency, _needs_threads([state.processor]))
            except StatesError as error:
                if distributed:
                    self.emit(flow, "MapRunFailed", "mapRunFailedEventDetails", error_details(error))
                if tolerated_count is not None or tolerated_percentage is not None:
                    raise StatesError("States.ExceedToleratedFailureThreshold",
                                      "The specified tolerance threshold was exceeded") from error
                raise
            if distributed:
                latest[0] = self.emit(flow, "MapRunSucceeded")
            last = max(latest[0], flow.last_event)
            self.emit(flow, "MapStateSucceeded", previous=last)
            flow.last_event = last  # MapStateExited points at the same event as MapStateSucceeded
            return results

        return self.with_retry_and_catch(state, raw_input, flow, state_context, attempt,
                                         lambda: self.emit(flow, "MapStateFailed"))

    def _begin_fan_out(self: "Interpreter", state: State, flow: Flow) -> str:
        """The checkpoint key of a Map/Parallel run; a fresh run (not a redrive resuming it)
        forgets the branch results an earlier run of the same state left behind."""
        key = f"{flow.scope}/{state.name}"
        resumed = key in self.resume_keys
        self.resume_keys.discard(key)
        if self.store is not None and not resumed and not flow.silent:
            self.recorder.flush()
            self.store.clear_checkpoints(self.info.execution_arn, key + "#")
        return key

    def _map_items(self: "Interpreter", state: State, effective: Json, state_context: dict[str, Json], flow: Flow,
                   bindings: dict[str, Json]) -> list[Json]:
        """The array to iterate: ItemsPath (JSONPath), Items (JSONata) or the input itself."""
        if state.jsonata and state.has_items:
            items = evaluate_template(state.items, "Items", bindings)
            if not isinstance(items, list):
                text = expression_of(state.items) or dumps(state.items)
                raise RuntimeFailure(f"The JSONata expression '{text}' specified for the field 'Items' returned an unexpected"
                                     f" result type. Expected 'array', but was '{type_name(items)}' for value: {dumps(items)}",
                                     QUERY_EVALUATION_ERROR, "Items")
            return items
        items = effective if state.jsonata else self.select(state.items_path, effective, state_context, flow)
        if not isinstance(items, list):
            raise RuntimeFailure(f"Map state input must be an array but was: {dumps(items)}",
                                 QUERY_EVALUATION_ERROR if state.jsonata else "States.Runtime", "Items")
        return items

    def _number_from_path(self: "Interpreter", field_name: str, path_text: str, data: Json, state_context: dict[str, Json], flow: Flow,
                          kind: type) -> Any:
        try:
            value = self.lookup(path_text, data, state_context, flow)
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
            shown = value if isinstance(value, str) else dumps(value)
            raise RuntimeFailure(f'The {field_name} field refers to value "{shown}" which is not a valid {label}: {path_text}')
        return kind(number)

    def _fan_out(self: "Interpreter", work: Callable[[int], Json], count: int, concurrency: int | None, threaded: bool) -> list[Json]:
        """Runs work(0..count-1); in threads when the work can block (Task/Wait) and concurrency allows."""
        if count == 0:
            return []
        if not threaded or concurrency == 1 or count == 1:
            return [work(index) for index in range(count)]
        workers = min(count, concurrency or count, 64)
        stop_siblings = threading.Event()

        def guarded(index: int) -> Json:
            if stop_siblings.is_set():
                raise ExecutionStopped("sibling failed")
            return work(index)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sfn-iteration") as pool:
            futures = [pool.submit(guarded, index) for index in range(count)]
            results: list[Json] = []
            first_error: BaseException | None = None
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as error:  # noqa: BLE001 - collected and re-raised below
                    if first_error is None:
                        first_error = error
                        stop_siblings.set()
                    results.append(None)
        if first_error is not None:
            if isinstance(first_error, ExecutionStopped) and not self.cancel.is_set():
                raise StatesError("States.Runtime", "iteration aborted")
            raise first_error
        return results

    def _checkpoints(self: "Interpreter", key: str) -> dict[str, Json]:
        if self.store is None:
            return {}
        return self.store.checkpoints(self.info.execution_arn, key + "#")

    def _checkpoint(self: "Interpreter", key: str, output: Json, flow: Flow) -> None:
        if not flow.silent and key.count("#") == 1:  # iterations/branches of top-level states only
            self.recorder.checkpoint(key, output)


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
