"""Task resources: Resource ARN pattern -> local runner.

An integration receives the resolved Parameters and a `TaskContext` (the execution, a
stop signal, the clock and the task deadline) and returns what the AWS API would return,
or raises `StatesError` with the AWS error name. Three kinds ship here:

* `LambdaInvoke` for `arn:aws:states:::lambda:invoke`, wrapping the function's result in
  Lambda's response (Payload, StatusCode, ExecutedVersion, SdkHttpMetadata, ...);
* `LambdaFunction` for plain function ARNs (`arn:aws:lambda:...:function:NAME`), whose
  result is the function's return value;
* local SNS topics and SQS queues for `sns:publish` and `sqs:sendMessage` (messaging.py).

`.sync` jobs (start, then poll until the job ends) are in jobs.py; callback resources
(`<resource>.waitForTaskToken`) resolve to the integration of `<resource>`, and the Task
state then waits for the task token (callbacks.py).

Functions live in a `FunctionRegistry` (name -> callable or "module:function" path, e.g.
"lambdas.evaluate.app:handler"). An exception raised by a handler becomes Lambda's error:
error = exception class name, cause = {"errorMessage", "errorType", "requestId",
"stackTrace"} as the Python runtime reports it.
"""
from __future__ import annotations

import base64
import importlib
import json
import re
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from workflow.engine.clock import Clock
from workflow.engine.errors import ErrorName, ExecutionStopped, StatesError
from workflow.engine.messaging import register_messaging
from workflow.engine.values import Json

Handler = Callable[[Json, Any], Json]
CALLBACK_SUFFIX = ".waitForTaskToken"
# Optimized integrations that accept .waitForTaskToken, and every AWS SDK integration
# (https://docs.aws.amazon.com/step-functions/latest/dg/integrate-optimized.html).
_CALLBACK_CAPABLE = re.compile(r"arn:[^:]+:states:::(lambda:invoke|sns:publish|sqs:sendMessage|ecs:runTask|events:putEvents"
                               r"|states:startExecution|apigateway:invoke|glue:startJobRun|aws-sdk:[^:]+:[^:.]+)")
_NO_PROGRESS = object()


@dataclass
class TaskContext:
    """What an integration may use besides its Parameters.

    `deadline` is the task's TimeoutSeconds (States.Timeout), `timeout_seconds` the field
    itself. `heartbeat_seconds` is set for `.sync` tasks and activities with
    HeartbeatSeconds: a `.sync` task must show progress (`progress()`) at least that often,
    else States.HeartbeatTimeout (activities.py keeps an activity's own heartbeat clock).
    `store` is the engine's database, for integrations that keep state there
    (messaging.py). `record(event_type, details)` writes a history event of the task, for
    integrations whose events are their own (activities: ActivityScheduled, ActivityStarted).
    """

    execution_arn: str
    state_name: str
    resource: str
    clock: Clock
    cancel: threading.Event
    deadline: float | None = None
    region: str = "us-east-1"
    account: str = "000000000000"
    on_submitted: Callable[[Json], None] | None = None
    on_poll: Callable[[], None] | None = None  # raises ExecutionStopped when a stop was requested elsewhere
    heartbeat_seconds: float | None = None
    store: Any = None
    timeout_seconds: float | None = None
    record: Callable[[str, dict[str, Json]], None] | None = None
    heartbeat_deadline: float | None = field(default=None, init=False)
    _progress: Any = field(default=_NO_PROGRESS, init=False, repr=False)

    def __post_init__(self) -> None:
        self.beat()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock.now()

    def beat(self) -> None:
        """A heartbeat: the task is alive; HeartbeatSeconds start again."""
        if self.heartbeat_seconds is not None:
            self.heartbeat_deadline = self.clock.now() + self.heartbeat_seconds

    def progress(self, marker: Any) -> None:
        """Reports what the work looks like now; a change since the last report is a heartbeat."""
        if marker != self._progress:
            self._progress = marker
            self.beat()

    def check(self) -> None:
        """Raises if the execution was stopped, the task's time is up or its heartbeat is late."""
        if self.on_poll is not None:
            self.on_poll()
        if self.cancel.is_set():
            raise ExecutionStopped(f"execution {self.execution_arn} was stopped")
        now = self.clock.now()
        if self.deadline is not None and now >= self.deadline:
            raise StatesError(ErrorName.TIMEOUT, "")
        if self.heartbeat_deadline is not None and now >= self.heartbeat_deadline:
            raise StatesError(ErrorName.HEARTBEAT_TIMEOUT, "")

    def sleep(self, seconds: float) -> None:
        """Sleeps at most until the deadline or the heartbeat deadline, in slices so a stop is noticed;
        raises on timeout, heartbeat timeout or stop."""
        limits = [(limit, error) for limit, error in ((self.deadline, ErrorName.TIMEOUT),
                                                      (self.heartbeat_deadline, ErrorName.HEARTBEAT_TIMEOUT))
                  if limit is not None]
        cut_by = None
        left = seconds
        if limits:
            limit, error = min(limits)
            if limit - self.clock.now() < seconds:
                cut_by, left = error, max(0.0, limit - self.clock.now())
        while True:
            step = left if self.clock.virtual else min(left, 1.0)
            if not self.clock.sleep(step, self.cancel):
                raise ExecutionStopped(f"execution {self.execution_arn} was stopped")
            left -= step
            if left <= 0:
                break
            self.check()
        if cut_by is not None:
            self.check()
            raise StatesError(cut_by, "")

    def submitted(self, response: Json) -> None:
        if self.on_submitted is not None:
            self.on_submitted(response)


class Integration(Protocol):
    """A Task resource implementation."""

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        """Runs the task and returns the AWS-shaped result, or raises StatesError."""


@dataclass(frozen=True)
class Binding:
    """A resolved resource: who runs it and how its history events are named.

    For a callback resource (`....waitForTaskToken`) the integration is the one of the
    resource without the suffix (`base_resource`); the engine then waits for the token.
    """

    integration: Integration
    resource_type: str
    resource_name: str
    lambda_events: bool
    callback: bool = False
    base_resource: str = ""
    activity_events: bool = False  # Activity* events, which the integration partly records itself (activities.py)


class IntegrationRegistry:
    """Resource ARN patterns (regular expressions over the whole ARN) -> integrations."""

    def __init__(self) -> None:
        self._entries: list[tuple[re.Pattern[str], str, Integration, bool, bool]] = []

    def register(self, pattern: str, integration: Integration, *, lambda_events: bool = False, activity_events: bool = False,
                 label: str | None = None) -> None:  # fmt: skip
        """Registers an integration for ARNs matching `pattern`; later registrations win."""
        self._entries.insert(0, (re.compile(pattern), label or pattern, integration, lambda_events, activity_events))

    def supported(self) -> list[str]:
        return [entry[1] for entry in self._entries]

    def resolve(self, resource: str) -> Binding | None:
        callback = is_callback(resource)
        base = resource.removesuffix(CALLBACK_SUFFIX) if callback else resource
        for pattern, _, integration, lambda_events, activity_events in self._entries:
            if pattern.fullmatch(base):
                resource_type, resource_name = _split_resource(resource)
                return Binding(integration, resource_type, resource_name, lambda_events, callback, base, activity_events)
        return None

    def check(self, resource: str) -> str | None:
        """None when supported, else a message listing the supported resources."""
        if is_callback(resource) and not _CALLBACK_CAPABLE.fullmatch(resource.removesuffix(CALLBACK_SUFFIX)):
            return (f"Task resource {resource!r} cannot wait for a task token: .waitForTaskToken works with"
                    " lambda:invoke, sns:publish, sqs:sendMessage, ecs:runTask, events:putEvents, states:startExecution,"
                    " apigateway:invoke, glue:startJobRun and aws-sdk:* resources")
        if self.resolve(resource) is not None:
            return None
        return f"unsupported Task resource {resource!r}; supported: {', '.join(self.supported()) or 'none'}"


def is_callback(resource: str) -> bool:
    """Whether a Task resource uses the callback pattern (arn:aws:states:::<service>:<action>.waitForTaskToken)."""
    return resource.endswith(CALLBACK_SUFFIX) and resource.startswith("arn:") and ":states:::" in resource


def _split_resource(resource: str) -> tuple[str, str]:
    """arn:aws:states:::lambda:invoke -> ("lambda", "invoke"); aws-sdk:s3:getObject -> ("aws-sdk:s3", "getObject")."""
    match = re.match(r"arn:[^:]+:states:[^:]*:[^:]*:(.+)$", resource)
    if not match:
        return "lambda", resource
    service, _, action = match.group(1).rpartition(":")
    return service, action


# ------------------------------------------------------------------------ Lambda functions


class LambdaFunctionError(Exception):
    """Raised by a function (or an emulation) to fail with an exact Lambda error and cause text."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error = error
        self.cause = cause


@dataclass
class LambdaContext:
    """The `context` argument of a Lambda handler (the attributes handlers use)."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    deadline: float | None
    clock: Clock
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    log_group_name: str = field(default="")
    log_stream_name: str = field(default="local")

    def get_remaining_time_in_millis(self) -> int:
        if self.deadline is None:
            return 900_000
        return max(0, int((self.deadline - self.clock.now()) * 1000))


def function_name_of(reference: str) -> str:
    """FunctionName as Lambda accepts it (name, ARN, partial ARN, with qualifier) -> name."""
    match = re.match(r"(?:arn:[^:]+:lambda:[^:]*:[^:]*:function:)?([^:]+)(?::[^:]+)?$", reference)
    return match.group(1) if match else reference


class FunctionRegistry:
    """Local Lambda functions: name -> callable or "package.module:function" handler path."""

    def __init__(self, functions: dict[str, Handler | str] | None = None, region: str = "us-east-1",
                 account: str = "000000000000", partition: str = "aws") -> None:
        self._functions: dict[str, Handler | str] = dict(functions or {})
        self.region = region
        self.account = account
        self.partition = partition

    def register(self, name: str, handler: Handler | str) -> None:
        self._functions[name] = handler

    def names(self) -> list[str]:
        return sorted(self._functions)

    def arn(self, name: str) -> str:
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{name}"

    def lookup(self, reference: str) -> tuple[str, Handler] | None:
        """Finds a function by exact key (ARN or name) or by its name."""
        for key in (reference, function_name_of(reference)):
            if key in self._functions:
                handler = self._functions[key]
                if isinstance(handler, str):
                    handler = _import_handler(handler)
                    self._functions[key] = handler
                return function_name_of(reference), handler
        return None

    def invoke(self, reference: str, event: Json, context: TaskContext) -> tuple[Json, str]:
        """Calls the function; returns (result, request id). Raises StatesError with Lambda's semantics."""
        found = self.lookup(reference)
        request_id = str(uuid.uuid4())
        if found is None:
            arn = reference if reference.startswith("arn:") else self.arn(reference)
            if arn.count(":") == 6:
                arn += ":$LATEST"
            raise StatesError(
                "Lambda.ResourceNotFoundException",
                f"Function not found: {arn} (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException;"
                f" Request ID: {request_id}; Proxy: null)",
            )
        name, handler = found
        lambda_context = LambdaContext(name, request_id, self.arn(name), context.deadline, context.clock)
        result = _call_with_deadline(handler, event, lambda_context, context)
        try:
            text = json.dumps(result)
        except (TypeError, ValueError) as error:
            raise StatesError("Lambda.Unknown", json.dumps({
                "errorMessage": f"Unable to marshal response: {error}", "errorType": "Runtime.MarshalError",
                "requestId": request_id, "stackTrace": []})) from error
        return json.loads(text), request_id


def _import_handler(path: str) -> Handler:
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise StatesError("Lambda.ServiceException", f"handler path {path!r} must look like 'package.module:function'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise StatesError("Lambda.ServiceException", f"cannot load handler {path!r}: {error}") from error


def _lambda_error(error: BaseException, request_id: str) -> StatesError:
    """A handler's exception as Lambda's Python runtime reports it."""
    if isinstance(error, LambdaFunctionError):
        return StatesError(error.error, error.cause)
    frames = traceback.extract_tb(error.__traceback__)[1:]  # drop our own calling frame
    payload = {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }
    return StatesError(type(error).__name__, json.dumps(payload))


def _call_with_deadline(handler: Handler, event: Json, lambda_context: LambdaContext, context: TaskContext) -> Json:
    """Runs the handler; past the task deadline the result is dropped and States.Timeout raised.

    With a wall clock the handler runs in a worker thread so the task can time out while it
    is still running (as on AWS, the function itself is not killed). With a virtual clock it
    runs inline and the deadline is checked when it returns.
    """
    if context.clock.virtual:
        try:
            result = handler(event, lambda_context)
        except ExecutionStopped:
            raise
        except Exception as error:  # noqa: BLE001 - any handler failure is the function's error
            if context.deadline is not None and context.clock.now() >= context.deadline:
                raise StatesError(ErrorName.TIMEOUT, "") from error
            raise _lambda_error(error, lambda_context.aws_request_id) from error
        if context.deadline is not None and context.clock.now() >= context.deadline:
            raise StatesError(ErrorName.TIMEOUT, "")
        return result
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = handler(event, lambda_context)
        except BaseException as error:  # noqa: BLE001 - handed back to the calling thread
            outcome["error"] = error

    worker = threading.Thread(target=target, name=f"lambda-{lambda_context.function_name}", daemon=True)
    worker.start()
    while worker.is_alive():
        left = context.remaining()
        if left is not None and left <= 0:
            raise StatesError(ErrorName.TIMEOUT, "")
        worker.join(0.5 if left is None else min(0.5, left))
        if worker.is_alive():
            context.check()
    if "error" in outcome:
        raise _lambda_error(outcome["error"], lambda_context.aws_request_id) from outcome["error"]
    return outcome.get("result")


class LambdaFunction:
    """A plain function ARN as Resource: the event is the effective input, the result the return value."""

    def __init__(self, functions: FunctionRegistry) -> None:
        self.functions = functions

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        result, _ = self.functions.invoke(resource, parameters, context)
        return result


class LambdaInvoke:
    """`arn:aws:states:::lambda:invoke`: Parameters FunctionName, Payload (Qualifier, InvocationType)."""

    def __init__(self, functions: FunctionRegistry) -> None:
        self.functions = functions

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        if not isinstance(parameters, dict) or not isinstance(parameters.get("FunctionName"), str):
            raise StatesError(ErrorName.RUNTIME, "lambda:invoke needs a FunctionName string in Parameters")
        payload = parameters.get("Payload")
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                pass
        result, request_id = self.functions.invoke(parameters["FunctionName"], payload, context)
        body = json.dumps(result, separators=(",", ":"))
        headers = {
            "Connection": "keep-alive",
            "Content-Length": str(len(body.encode())),
            "Content-Type": "application/json",
            "Date": context.clock.now() and _http_date(context.clock.now()),
            "X-Amz-Executed-Version": "$LATEST",
            "x-amzn-Remapped-Content-Length": "0",
            "x-amzn-RequestId": request_id,
            "X-Amzn-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
        }
        response = {
            "ExecutedVersion": "$LATEST",
            "Payload": result,
            "SdkHttpMetadata": {
                "AllHttpHeaders": {key: [value] for key, value in headers.items()},
                "HttpHeaders": headers,
                "HttpStatusCode": 200,
            },
            "SdkResponseMetadata": {"RequestId": request_id},
            "StatusCode": 200,
        }
        if parameters.get("LogType") == "Tail":
            log = f"START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\n"
            response["LogResult"] = base64.b64encode(log.encode()).decode()
        return response


def _http_date(epoch: float) -> str:
    from email.utils import formatdate

    return formatdate(epoch, usegmt=True)


def default_registry(functions: FunctionRegistry | None = None) -> IntegrationRegistry:
    """Lambda (invoke and function ARNs) over a function registry, local SNS and SQS; more can be registered on top."""
    functions = functions or FunctionRegistry()
    registry = IntegrationRegistry()
    registry.register(r"arn:[^:]+:lambda:[^:]*:[^:]*:function:[^:]+(:[^:]+)?", LambdaFunction(functions),
                      lambda_events=True, label="arn:aws:lambda:<region>:<account>:function:<name>")
    registry.register(r"arn:[^:]+:states:::lambda:invoke", LambdaInvoke(functions), label="arn:aws:states:::lambda:invoke")
    register_messaging(registry)
    return registry
