"""The API server in a thread over a temporary store, a boto3 client on it, and every reply checked against AWS's model.

`quick_server`/`sfn`: the same with GetActivityTask waiting 0.5 s instead of 60 s, for activity workers.

Each reply body the client receives is checked, as it came over the wire, against the
operation's output shape in botocore's Step Functions service model (member names,
required members, types, enums): boto3 itself validates nothing it receives.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import botocore.session
import pytest
from botocore.config import Config

from workflow.engine import Engine
from workflow.engine.api import ApiServer, Backend
from workflow.engine.history import HistoryStore
from workflow.engine.integrations import LambdaFunctionError

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # a 12-digit access key id is the account
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn"
MODEL = botocore.session.get_session().get_service_model("stepfunctions")


def shape_errors(value: Any, shape: Any, path: str = "$") -> list[str]:
    """Where `value` (decoded wire JSON) breaks `shape`; [] when it fits."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        problems = [f"{path}.{name}: not a member of {shape.name}" for name in value if name not in shape.members]
        problems += [f"{path}.{name}: required member missing" for name in shape.required_members if name not in value]
        for name, item in value.items():
            if name in shape.members:
                problems += shape_errors(item, shape.members[name], f"{path}.{name}")
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [problem for index, item in enumerate(value) for problem in shape_errors(item, shape.member, f"{path}[{index}]")]
    if kind == "map":
        return [] if isinstance(value, dict) else [f"{path}: expected a map"]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {value!r}"]
        enum = shape.metadata.get("enum")
        return [f"{path}: {value!r} not in {enum}"] if enum and value not in enum else []
    if kind in ("integer", "long"):
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: expected an integer, got {value!r}"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if kind in ("timestamp", "double", "float"):
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{path}: expected a number, got {value!r}"]
    return []


class ShapeChecker:
    """A botocore after-call hook that records every reply that does not fit its output (or error) shape."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked: list[str] = []

    def __call__(self, http_response: Any, model: Any, **_: Any) -> None:
        body = json.loads(http_response.content or b"{}")
        if http_response.status_code == 200:
            self.problems += [f"{model.name}: {problem}" for problem in shape_errors(body, model.output_shape)]
        else:
            code = body.get("__type", "")
            known = {shape.name for shape in model.error_shapes} | {"UnknownOperationException", "ValidationException"}
            if code not in known or not isinstance(body.get("message"), str):
                self.problems.append(f"{model.name}: error {body} is not one of the operation's errors")
        self.checked.append(model.name)


def echo(event: Any, context: Any) -> Any:
    return event


def make_flaky() -> Callable[[Any, Any], Any]:
    """Fails until `repaired` is set on it: a fault to redrive past."""
    def flaky(event: Any, context: Any) -> Any:
        if not flaky.repaired:  # type: ignore[attr-defined]
            raise LambdaFunctionError("Flaky", "not yet")
        return {"repaired": True}

    flaky.repaired = False  # type: ignore[attr-defined]
    return flaky


@pytest.fixture
def flaky() -> Callable[[Any, Any], Any]:
    return make_flaky()


@pytest.fixture
def server(tmp_path: Path, flaky: Callable[[Any, Any], Any]) -> Iterator[ApiServer]:
    def make_engine(store: HistoryStore, region: str, account: str) -> Engine:
        return Engine(store, region=region, account=account, functions={"echo": echo, "flaky": flaky})

    running = ApiServer(Backend(tmp_path / "engine.sqlite3", make_engine), port=0).start()
    yield running
    running.stop()


@pytest.fixture
def checker() -> ShapeChecker:
    return ShapeChecker()


@pytest.fixture
def client(server: ApiServer, checker: ShapeChecker) -> Iterator[Any]:
    made = boto3.client("stepfunctions", endpoint_url=server.url, region_name=REGION, aws_access_key_id=ACCOUNT,
                        aws_secret_access_key="any", config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))
    made.meta.events.register("after-call.sfn", checker)
    yield made
    assert checker.problems == [], checker.problems


def pass_machine(result: Any = None, states: int = 1) -> str:
    """A chain of `states` Pass states; the last one's Result is `result`."""
    chain = {f"P{index}": {"Type": "Pass", "Next": f"P{index + 1}"} for index in range(states - 1)}
    chain[f"P{states - 1}"] = {"Type": "Pass", "End": True, **({"Result": result} if result is not None else {})}
    return json.dumps({"StartAt": "P0", "States": chain})


TOKENS: list[str] = []


def remember_token(event: Any, context: Any) -> Any:
    TOKENS.append(event["token"])
    return {"sent": True}


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[ApiServer]:
    """GetActivityTask waits 0.5 s for work here instead of AWS's 60 s."""
    def make_engine(store: HistoryStore, region: str, account: str) -> Engine:
        return Engine(store, region=region, account=account, functions={"remember": remember_token})

    running = ApiServer(Backend(tmp_path / "engine.sqlite3", make_engine, long_poll_seconds=0.5), port=0).start()
    yield running
    running.stop()


@pytest.fixture
def sfn(quick_server: ApiServer) -> Iterator[Any]:
    checker = ShapeChecker()
    made = boto3.client("stepfunctions", endpoint_url=quick_server.url, region_name=REGION, aws_access_key_id=ACCOUNT,
                        aws_secret_access_key="any", config=Config(read_timeout=70, retries={"max_attempts": 1}))  # fmt: skip
    made.meta.events.register("after-call.sfn", checker)
    yield made
    assert checker.problems == [], checker.problems
