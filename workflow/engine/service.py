"""`Engine`: the Step Functions-like API over the interpreter and the history store.

    engine = Engine(".ddcicd/engine.sqlite3", functions={"evaluate": "lambdas.evaluate.app:handler"})
    arn = engine.create_state_machine("pipeline", definition_json)
    result = engine.run_execution(arn, {"key": "value"})          # to completion, this thread
    execution_arn = engine.start_execution(arn, {"key": "value"})  # in a background thread
    engine.describe_execution(execution_arn)["status"]

Names follow the AWS API (create_state_machine, start_execution, describe_execution,
get_execution_history, stop_execution, redrive_execution); results are dicts with AWS's
keys and `datetime` values, like boto3's.

An execution whose engine process died (SIGKILL, power cut) stays RUNNING in the store;
the next Engine that looks at it sees its owner process is gone, records
ExecutionAborted and makes it redrivable.
"""
from __future__ import annotations

import json
import os
import re
import threading
import uuid
from datetime import datetime, timezone

from workflow.engine.callbacks import TaskTokens, TokenStatus, WaitingTask, checked_output
from workflow.engine.clock import Clock, SystemClock
from workflow.engine.context import ExecutionInfo, Flow, StopSignal
from workflow.engine.definition import parse_definition
from workflow.engine.express import check_express
from workflow.engine.errors import (EngineError, ErrorName, ExecutionAlreadyExists, ExecutionNotRedrivable, ExecutionStopped,
                                    ExecutionTimedOut, StateMachineDoesNotExist, StatesError)
from workflow.engine.history import REDRIVABLE, ExecutionRecord, ExecutionStatus, HistoryStore
from workflow.engine.integrations import FunctionRegistry, Handler, IntegrationRegistry, default_registry
from workflow.engine.interpreter import Interpreter
from workflow.engine.recorder import Recorder
from workflow.engine.redrive import resume_point
from workflow.engine.running import RUNNING, RUNNING_LOCK, alive, stop_signal
from workflow.engine.states import StateMachineDefinition
from workflow.engine.values import Json
from workflow.engine.workers import WORKERS

_NAME = re.compile(r"^[A-Za-z0-9_<>\-]{1,80}$")
_HOST = os.uname().nodename  # the owner_host of executions this process runs


def _datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)


class Engine:
    """Runs ASL state machines locally with persisted history; thread-safe."""

    def __init__(self, store_path: str | os.PathLike[str] | HistoryStore = ".ddcicd/engine.sqlite3", *, clock: Clock | None = None,
                 integrations: IntegrationRegistry | None = None, functions: dict[str, Handler | str] | FunctionRegistry | None = None,
                 region: str = "us-east-1", account: str = "000000000000", partition: str = "aws",
                 role_arn: str | None = None) -> None:
        self.store = store_path if isinstance(store_path, HistoryStore) else HistoryStore(store_path)
        self.clock = clock or SystemClock()
        self.region, self.account, self.partition = region, account, partition
        self.functions = functions if isinstance(functions, FunctionRegistry) else FunctionRegistry(functions, region, account, partition)
        self.integrations = integrations or default_registry(self.functions)
        self.role_arn = role_arn or f"arn:{partition}:iam::{account}:role/ddcicd-local"
        self._done: dict[str, threading.Event] = {}  # background runs of this engine -> set when they end
        self._lock = threading.Lock()
        self._definitions: dict[tuple[str, int], StateMachineDefinition] = {}
        self._machines: dict[str, tuple[str, str, str]] = {}  # ARN or name -> (ARN, name, type): _machine
        self._store_key = str(self.store.path.resolve())

    def _key(self, execution_arn: str) -> tuple[str, str]:
        return (self._store_key, execution_arn)

    # ------------------------------------------------------------------ state machines
    def validate(self, definition: str | dict[str, Json]) -> StateMachineDefinition:
        """Parses and checks a definition against this engine's integrations; raises DefinitionError."""
        return parse_definition(definition, self.integrations.check)

    def validate_for(self, definition: str | dict[str, Json], kind: str) -> StateMachineDefinition:
        """validate, and for an EXPRESS state machine no activity, `.sync` or `.waitForTaskToken` (express.py), which
        is refused as such even where this engine has no integration for the resource."""
        if kind == "EXPRESS":
            check_express(parse_definition(definition))
        return self.validate(definition)

    def _validated_text(self, definition: str | dict[str, Json], kind: str) -> str:
        """The definition as the store keeps it (JSON text), once it is known to be valid for a `kind` state machine."""
        text = definition if isinstance(definition, str) else json.dumps(definition)
        self.validate_for(text, kind)
        return text

    def state_machine_arn(self, name: str) -> str:
        return f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{name}"

    def create_state_machine(self, name: str, definition: str | dict[str, Json], role_arn: str | None = None,
                             type: str = "STANDARD") -> str:  # noqa: A002 - the AWS parameter name
        """Registers (or, if the name exists, updates) a state machine; returns its ARN."""
        if not _NAME.match(name):
            raise EngineError(f"invalid state machine name {name!r}: use 1-80 letters, digits, '-' or '_'")
        text = self._validated_text(definition, type)
        arn = self.state_machine_arn(name)
        self.store.put_state_machine(arn, name, text, role_arn or self.role_arn, type, self.clock.now())
        return arn

    def update_state_machine(self, arn: str, definition: str | dict[str, Json], role_arn: str | None = None) -> int:
        """Stores a new version of the definition; running executions keep theirs. Returns the version."""
        machine = self.store.state_machine(arn)
        text = self._validated_text(definition, machine["type"])
        return self.store.put_state_machine(machine["arn"], machine["name"], text, role_arn or machine["role_arn"],
                                            machine["type"], self.clock.now())

    def describe_state_machine(self, arn: str) -> dict[str, Json]:
        machine = self.store.state_machine(arn)
        return {"stateMachineArn": machine["arn"], "name": machine["name"], "definition": machine["definition"],
                "roleArn": machine["role_arn"], "type": machine["type"], "revision": machine["version"],
                "creationDate": _datetime(machine["created"]), "updateDate": _datetime(machine["updated"])}

    def list_state_machines(self) -> list[dict[str, Json]]:
        return [{"stateMachineArn": row["arn"], "name": row["name"], "type": row["type"],
                 "creationDate": _datetime(row["created"])} for row in self.store.list_state_machines()]

    def describe_state_machine_for_execution(self, execution_arn: str) -> dict[str, Json]:
        """The state machine as the execution ran it: the definition version it started with."""
        record = self.store.execution(execution_arn)
        definition = self.store.state_machine_definition(record.state_machine_arn, record.state_machine_version)
        try:
            machine = self.store.state_machine(record.state_machine_arn)
            role_arn, updated = machine["role_arn"], machine["updated"]
        except StateMachineDoesNotExist:  # deleted since: its executions stay readable
            role_arn, updated = self.role_arn, record.start_date
        return {"stateMachineArn": record.state_machine_arn, "name": record.state_machine_arn.rsplit(":", 1)[-1],
                "definition": definition, "roleArn": role_arn, "updateDate": _datetime(updated),
                "revision": record.state_machine_version}

    def delete_state_machine(self, arn: str) -> None:
        """Deletes a state machine; running executions go on, and every execution stays readable."""
        self.store.delete_state_machine(self.store.state_machine(arn)["arn"])

    def _definition(self, arn: str, version: int) -> StateMachineDefinition:
        key = (arn, version)
        if key not in self._definitions:
            self._definitions[key] = self.validate(self.store.state_machine_definition(arn, version))
        return self._definitions[key]

    # ------------------------------------------------------------------ executions
    def _machine(self, state_machine: str, fresh: bool = False) -> tuple[str, str, str]:
        """(ARN, name, type) of a state machine given by ARN or name, kept between starts.

        None of the three changes while the state machine exists; create_execution checks the
        ARN and type again as it inserts, and a miss there looks again (`fresh`).
        """
        known = None if fresh else self._machines.get(state_machine)
        if known is None:
            machine = self.store.state_machine(state_machine)
            if len(self._machines) >= 1000:
                self._machines.clear()
            known = self._machines[state_machine] = (machine["arn"], machine["name"], machine["type"])
        return known

    def _new_execution(self, state_machine: str, execution_input: Json, name: str | None) -> tuple[ExecutionRecord, Recorder | None]:
        """(the new execution, its recorder); recorder None: the same start again (see below)."""
        machine_arn, machine_name, machine_type = self._machine(state_machine)
        name = name or str(uuid.uuid4())
        if not _NAME.match(name):
            raise EngineError(f"invalid execution name {name!r}: use 1-80 letters, digits, '-' or '_'")
        input_text = json.dumps(execution_input if execution_input is not None else {})
        execution_input = json.loads(input_text)  # as a read of the stored row would give it
        owner = (os.getpid(), _HOST)
        for may_look_again in (True, False):
            if machine_type == "EXPRESS":
                arn = f"arn:{self.partition}:states:{self.region}:{self.account}:express:{machine_name}:{name}:{uuid.uuid4()}"
            else:
                arn = f"arn:{self.partition}:states:{self.region}:{self.account}:execution:{machine_name}:{name}"
            start_date = self.clock.now()
            claimed = self._claim(arn)
            try:
                created = self.store.create_execution(arn, name, machine_arn, machine_type, input_text, start_date, *owner)
            except ExecutionAlreadyExists:
                self._release(arn, claimed)
                # StartExecution is idempotent while the execution with that name and input is running
                existing = self.store.execution(arn)
                if existing.status == ExecutionStatus.RUNNING and existing.input == execution_input:
                    return existing, None
                raise
            except BaseException:
                self._release(arn, claimed)
                raise
            if created is not None:
                version, role_arn = created
                record = ExecutionRecord(arn, name, machine_arn, version, ExecutionStatus.RUNNING, execution_input, None, None,
                                         None, start_date, None, 0, None, *owner, None, role_arn)
                return record, Recorder.started(self.store, record, self.clock)
            self._release(arn, claimed)  # deleted, or re-created as the other type, since it was looked up
            if may_look_again:
                machine_arn, machine_name, machine_type = self._machine(state_machine, fresh=True)
        raise StateMachineDoesNotExist(f"state machine {state_machine!r} does not exist in {self.store.path}")

    def run_execution(self, state_machine: str, execution_input: Json = None, name: str | None = None) -> dict[str, Json]:
        """Starts an execution and runs it to the end in this thread; returns describe_execution."""
        record, recorder = self._new_execution(state_machine, execution_input, name)
        if recorder is not None:
            self._execute(record, record.role_arn or self.role_arn, recorder)
        return self.describe_execution(record.arn)

    start_sync_execution = run_execution

    def start_execution(self, state_machine: str, execution_input: Json = None, name: str | None = None) -> str:
        """Starts an execution in a background thread; returns its ARN at once."""
        return self.start(state_machine, execution_input, name).arn

    def start(self, state_machine: str, execution_input: Json = None, name: str | None = None) -> ExecutionRecord:
        """start_execution, returning the execution's record (ARN, start date) as it was created, without reading it back."""
        record, recorder = self._new_execution(state_machine, execution_input, name)
        if recorder is not None:
            self._spawn(record, record.role_arn or self.role_arn, recorder)
        return record

    def _spawn(self, record: ExecutionRecord, role_arn: str, recorder: Recorder,
               resume: tuple[str, Json, dict[str, Json]] | None = None) -> None:
        """Runs the execution on a worker thread (workers.py); `wait` waits for it."""
        with RUNNING_LOCK:
            stop_signal(self._key(record.arn))
        done = threading.Event()
        with self._lock:
            self._done[record.arn] = done

        def run() -> None:
            try:
                self._execute(record, role_arn, recorder, resume)
            finally:
                with self._lock:  # a long-lived engine (the API server) keeps only the runs not yet ended
                    if self._done.get(record.arn) is done:
                        del self._done[record.arn]
                done.set()
        WORKERS.submit(run, f"execution-{record.name}")

    def _claim(self, execution_arn: str) -> bool:
        """Registers the execution as run here *before* the store says RUNNING, so reap_orphans never sees a gap."""
        with RUNNING_LOCK:
            if self._key(execution_arn) in RUNNING:
                return False
            RUNNING[self._key(execution_arn)] = StopSignal()
            return True

    def _release(self, execution_arn: str, claimed: bool) -> None:
        if claimed:
            with RUNNING_LOCK:
                RUNNING.pop(self._key(execution_arn), None)

    def wait(self, execution_arn: str, timeout: float | None = None) -> dict[str, Json]:
        """Waits for a background execution of this engine to end; returns describe_execution."""
        done = self._done.get(execution_arn)
        if done is not None:
            done.wait(timeout)
        return self.describe_execution(execution_arn)

    def _execute(self, record: ExecutionRecord, role_arn: str, recorder: Recorder,
                 resume: tuple[str, Json, dict[str, Json]] | None = None) -> None:
        """Runs (or, with `resume`, redrives) an execution to its end; the recorder writes how it ended."""
        with RUNNING_LOCK:
            cancel = stop_signal(self._key(record.arn))
        definition = self._definition(record.state_machine_arn, record.state_machine_version)
        machine_name = record.state_machine_arn.rsplit(":", 1)[-1]
        info = ExecutionInfo(record.arn, record.name, record.state_machine_arn, machine_name, role_arn, record.start_date,
                             record.input, record.redrive_count, ":express:" in record.arn, self.region, self.account)
        deadline = None if definition.timeout_seconds is None else record.start_date + definition.timeout_seconds
        if resume is not None and deadline is not None:
            deadline = self.clock.now() + definition.timeout_seconds
        interpreter = Interpreter(info, self.integrations, self.clock, recorder, cancel,
                                  lambda: self.store.stop_requested(record.arn), deadline)
        flow = Flow("", 0 if resume is None else recorder.last_id)
        try:
            if resume is None:
                output = interpreter.run_machine(definition, record.input, flow)
            else:
                start_at, state_input, variables = resume
                flow.variables.update(variables)
                interpreter.resume_keys.add(f"/{start_at}")
                output = interpreter.run_machine(definition, state_input, flow, start_at)
            recorder.succeeded(flow.last_event, output)
        except ExecutionTimedOut:
            recorder.timed_out(flow.last_event, ErrorName.TIMEOUT,
                               f"The execution timed out after {definition.timeout_seconds} seconds")
        except ExecutionStopped:
            recorder.aborted(flow.last_event, cancel.error, cancel.cause)
        except StatesError as error:
            recorder.failed(flow.last_event, error)
        except Exception as error:  # noqa: BLE001 - an engine bug must still end the execution in the store
            recorder.failed(flow.last_event, StatesError(ErrorName.RUNTIME, f"internal engine error: {type(error).__name__}: {error}"))
            raise
        finally:
            with RUNNING_LOCK:
                RUNNING.pop(self._key(record.arn), None)

    # ------------------------------------------------------------------ reading
    def describe_execution(self, execution_arn: str) -> dict[str, Json]:
        """DescribeExecution as boto3 returns it (dates as datetimes)."""
        description = self.describe(execution_arn)
        for key in ("startDate", "stopDate", "redriveDate"):
            if key in description:
                description[key] = _datetime(description[key])
        return description

    def describe(self, execution_arn: str) -> dict[str, Json]:
        """describe_execution with dates as epoch seconds, as the API sends them; input and output are the stored text."""
        record = self.store.execution(execution_arn, decode_json=False)
        if record.status == ExecutionStatus.RUNNING and self._reap(record.arn, record.owner_pid, record.owner_host):
            record = self.store.execution(record.arn, decode_json=False)  # its owner process is gone: now ABORTED
        description: dict[str, Json] = {
            "executionArn": record.arn, "stateMachineArn": record.state_machine_arn, "name": record.name,
            "status": record.status.value, "startDate": record.start_date, "input": record.input,
            "inputDetails": {"included": True}, "redriveCount": record.redrive_count,
            "redriveStatus": "REDRIVABLE" if record.status in REDRIVABLE else "NOT_REDRIVABLE",
            "stateMachineVersion": record.state_machine_version,
        }
        if record.stop_date is not None:
            description["stopDate"] = record.stop_date
        if record.status == ExecutionStatus.SUCCEEDED:
            description["output"] = record.output
            description["outputDetails"] = {"included": True}
        if record.error is not None:
            description["error"] = record.error
        if record.cause is not None:
            description["cause"] = record.cause
        if record.redrive_date is not None:
            description["redriveDate"] = record.redrive_date
        return description

    def list_executions(self, state_machine_arn: str | None = None, status_filter: str | None = None,
                        max_results: int | None = None) -> list[dict[str, Json]]:
        self.reap_orphans()
        machine_arn = self.store.state_machine(state_machine_arn)["arn"] if state_machine_arn else None
        return [{"executionArn": record.arn, "stateMachineArn": record.state_machine_arn, "name": record.name,
                 "status": record.status.value, "startDate": _datetime(record.start_date), "stopDate": _datetime(record.stop_date),
                 "redriveCount": record.redrive_count}
                for record in self.store.list_executions(machine_arn, status_filter, max_results)]

    def get_execution_history(self, execution_arn: str, reverse_order: bool = False, after_id: int = 0) -> dict[str, Json]:
        record = self.store.execution(execution_arn)
        events = []
        for event in self.store.events(record.arn, after_id, reverse_order):
            shaped = event.to_aws()
            shaped["timestamp"] = _datetime(event.timestamp)
            events.append(shaped)
        return {"events": events}

    # ------------------------------------------------------------------ control
    def stop_execution(self, execution_arn: str, error: str | None = None, cause: str | None = None) -> dict[str, Json]:
        """Stops a RUNNING execution (here, in another live process, or orphaned)."""
        self.reap_orphans()
        record = self.store.execution(execution_arn)
        if record.status != ExecutionStatus.RUNNING:
            raise EngineError(f"execution {record.arn} is {record.status}, not RUNNING")
        with RUNNING_LOCK:
            cancel = RUNNING.get(self._key(record.arn))
        if cancel is not None:
            cancel.stop(error, cause)
        else:
            self.store.request_stop(record.arn, error, cause)
        return {"stopDate": _datetime(self.clock.now())}

    def redrive_execution(self, execution_arn: str, wait: bool = False) -> dict[str, Json]:
        """Resumes a FAILED/ABORTED/TIMED_OUT execution from the state(s) that did not finish.

        Top-level states that succeeded are not re-run; a Map or Parallel state keeps the
        results of the iterations/branches that succeeded. With wait=True it runs in this
        thread; otherwise in a background thread (use `wait()`).
        """
        self.reap_orphans()
        record = self.store.execution(execution_arn)
        if record.status not in REDRIVABLE:
            raise ExecutionNotRedrivable(f"execution {record.arn} is {record.status}; only FAILED, ABORTED or TIMED_OUT can be redriven")
        definition = self._definition(record.state_machine_arn, record.state_machine_version)
        resume = resume_point(self.store, record, definition)
        machine = self.store.state_machine(record.state_machine_arn)
        claimed = self._claim(record.arn)
        try:
            count = self.store.mark_redriven(record.arn, self.clock.now())
        except BaseException:
            self._release(record.arn, claimed)
            raise
        record = self.store.execution(record.arn)
        recorder = Recorder.resume(self.store, record, self.clock)
        recorder.redriven(count)
        if wait:
            self._execute(record, machine["role_arn"], recorder, resume)
        else:
            self._spawn(record, machine["role_arn"], recorder, resume)
        return {"redriveDate": _datetime(record.redrive_date)}

    # ------------------------------------------------------------------ callbacks (task tokens; see callbacks.py)
    def send_task_success(self, task_token: str, output: str) -> None:
        """SendTaskSuccess: the callback Task waiting for `task_token` succeeds with `output` (JSON text).

        Raises InvalidToken, TaskDoesNotExist, TaskTimedOut (the task no longer waits) or InvalidOutput.
        """
        self._answer(task_token, TokenStatus.SUCCEEDED, output=checked_output(output))

    def send_task_failure(self, task_token: str, error: str | None = None, cause: str | None = None) -> None:
        """SendTaskFailure: the callback Task waiting for `task_token` fails with `error` and `cause`."""
        for name, value, limit in (("error", error, 256), ("cause", cause, 32768)):
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise EngineError(f"send_task_failure: {name} must be a string of at most {limit} characters")
        self._answer(task_token, TokenStatus.FAILED, error=error, cause=cause)

    def send_task_heartbeat(self, task_token: str) -> None:
        """SendTaskHeartbeat: the task is still being worked on; its HeartbeatSeconds start again. No event."""
        self._answer(task_token, None)

    def waiting_tasks(self, execution_arn: str) -> list[WaitingTask]:
        """The callback Tasks of an execution (ARN or name) waiting for their token now, oldest first."""
        self.reap_orphans()
        record = self.store.execution(execution_arn)
        if record.status != ExecutionStatus.RUNNING:
            return []
        return [row.waiting_task() for row in TaskTokens(self.store).waiting(record.arn, record.redrive_count)]

    def _answer(self, task_token: str, status: TokenStatus | None, **answer: str | None) -> None:
        self.reap_orphans()  # a token whose engine process died must not look like it still waits
        TaskTokens(self.store).answer(task_token, status, self._stopping, **answer)

    def _stopping(self, execution_arn: str) -> bool:
        """Whether StopExecution was called for a run of this process that has not yet noticed."""
        with RUNNING_LOCK:
            signal = RUNNING.get(self._key(execution_arn))
        return signal is not None and signal.is_set()

    def reap_orphans(self) -> list[str]:
        """Marks RUNNING executions whose engine process on this host is gone as ABORTED."""
        running = self.store.query("SELECT arn, owner_pid, owner_host FROM executions WHERE status = ?", (ExecutionStatus.RUNNING,))
        return [arn for arn, owner_pid, owner_host in running if self._reap(arn, owner_pid, owner_host)]

    def _reap(self, arn: str, owner_pid: int | None, owner_host: str | None) -> bool:
        """Marks one execution listed RUNNING (by `owner_pid` on `owner_host`) ABORTED if that process is gone.

        DescribeExecution asks this about the execution it describes only, so it costs no query while
        the owner lives; the other readers ask it about every RUNNING execution (reap_orphans).
        """
        if owner_host != os.uname().nodename or owner_pid is None:
            return False
        if owner_pid == os.getpid():
            with RUNNING_LOCK:  # a run of this process may have ended since the listing: read again
                if self._key(arn) in RUNNING:
                    return False
                record = self.store.execution(arn)
        elif alive(owner_pid):
            return False
        else:
            record = self.store.execution(arn)
        if record.status != ExecutionStatus.RUNNING or record.owner_pid != owner_pid:  # the run ended since the listing
            return False
        cause = f"the engine process (pid {record.owner_pid}) ended while the execution was running"
        Recorder.resume(self.store, record, self.clock).aborted(0, ErrorName.RUNTIME, cause)
        return True
