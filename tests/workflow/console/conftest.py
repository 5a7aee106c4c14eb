"""Fixtures for the console tests: a real engine store, small state machines, a real server.

`flaky` is a Lambda that fails while a flag file exists: a test makes an execution fail,
removes the flag and redrives it, as a user fixing a bug and pressing Redrive would.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.client as http_client
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from workflow.console.app import create_app
from workflow.engine import Engine

TOKEN = "test-token-0123456789"
CHROMIUM = os.environ.get("DDCICD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
TIMEOUT_MS = 30_000

FLAKY_MACHINE = {
    "Comment": "Prepare, then a Lambda that fails while the flag file exists, a Choice, then a Map",
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": {"items": [1, 2, 3]}, "ResultPath": "$.work", "Next": "CallFlaky"},
        "CallFlaky": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                      "Parameters": {"FunctionName": "flaky", "Payload.$": "$.work"},
                      "ResultSelector": {"answer.$": "$.Payload.answer"}, "ResultPath": "$.flaky", "Next": "IsGood"},
        "IsGood": {"Type": "Choice", "Choices": [{"Variable": "$.flaky.answer", "NumericEquals": 42, "Next": "FanOut"}],
                   "Default": "Rejected"},
        "Rejected": {"Type": "Fail", "Error": "Rejected", "Cause": "the answer was not 42"},
        "FanOut": {"Type": "Map", "ItemsPath": "$.work.items", "ResultPath": "$.doubled",
                   "ItemProcessor": {"StartAt": "Double", "States": {
                       "Double": {"Type": "Pass", "Parameters": {"value.$": "$"}, "End": True}}},
                   "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}  # fmt: skip

WAIT_MACHINE = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Wait", "Seconds": 30, "Next": "After"}, "After": {"Type": "Pass", "End": True}},
}


@dataclass
class Setup:
    engine: Engine
    flag: Path
    flaky_arn: str
    wait_arn: str


def make_flaky(flag: Path):  # noqa: ANN201 - a Lambda handler
    def flaky(event: Any, context: Any) -> dict[str, Any]:
        if flag.exists():
            raise RuntimeError(f"flaky: {flag.name} is present")
        return {"answer": 42, "items": event["items"]}

    return flaky


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("DDCICD_HOME", str(tmp_path / "home"))
    flag = tmp_path / "broken"
    engine = Engine(tmp_path / "home" / "engine.sqlite3", functions={"flaky": make_flaky(flag)})
    flaky_arn = engine.create_state_machine("flaky", FLAKY_MACHINE)
    wait_arn = engine.create_state_machine("waiting", WAIT_MACHINE)
    return Setup(engine, flag, flaky_arn, wait_arn)


def failed_execution(setup: Setup, name: str = "first-try") -> str:
    setup.flag.write_text("broken")
    result = setup.engine.run_execution(setup.flaky_arn, {"run": name}, name=name)
    assert result["status"] == "FAILED", result
    return result["executionArn"]


@contextlib.contextmanager
def serve(engine: Engine, actions: Engine | None = None, token: str = TOKEN) -> Iterator[str]:
    """The console app on 127.0.0.1 (a free port) with its own event loop in a background thread.

    Everything asyncio happens in that thread: Playwright's sync API runs a loop of its own
    in the test's thread.
    """
    app = create_app(Engine(engine.store.path), lambda: actions or engine, token)
    loop = asyncio.new_event_loop()
    ready: queue.Queue[int | BaseException] = queue.Queue()

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            ready.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            ready.put(error)
            return
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="console-test-server", daemon=True)
    thread.start()
    port = ready.get(timeout=30)
    if isinstance(port, BaseException):
        raise port
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@pytest.fixture()
def console(setup: Setup) -> Iterator[str]:
    with serve(setup.engine) as base:
        yield base


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    """One real HTTP request with exactly the headers given (Host defaults to the server's)."""
    host_port = base.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    connection = http_client.HTTPConnection(host, int(port), timeout=30)
    sent = {"Host": host_port, **(headers or {})}
    payload = None if body is None else json.dumps(body).encode()
    if payload is not None:
        sent.setdefault("Content-Type", "application/json")
        sent["Content-Length"] = str(len(payload))
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for key, value in sent.items():
        connection.putheader(key, value)
    connection.endheaders(payload)
    response = connection.getresponse()
    reply = Reply(response.status, {key.lower(): value for key, value in response.getheaders()}, response.read())
    connection.close()
    return reply


def wait_for_status(engine: Engine, arn: str, wanted: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = engine.describe_execution(arn)
        if description["status"] == wanted:
            return description
        time.sleep(0.05)
    raise AssertionError(f"{arn} is {engine.describe_execution(arn)['status']}, not {wanted}, after {timeout} s")


# helpers as fixtures: with --import-mode=importlib, test modules cannot import this file
@pytest.fixture()
def http():  # noqa: ANN201
    return request


@pytest.fixture()
def fail(setup: Setup):  # noqa: ANN201
    return lambda name="first-try": failed_execution(setup, name)


@pytest.fixture()
def wait():  # noqa: ANN201
    return wait_for_status


@pytest.fixture()
def auth() -> dict[str, str]:
    return {"X-Ddcicd-Token": TOKEN}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (`make browser` installs it)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it with `make browser` (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context; fails the test on a JavaScript error or a Content-Security-Policy
    violation on the console's pages (the policy must not break the console)."""
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text)  # frame-ancestors: the console refusing a frame
              if message.type == "error" and "Content Security Policy" in message.text
              and "frame-ancestors" not in message.text else None)
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
