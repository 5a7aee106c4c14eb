"""The console's web server: a JSON API over the engine, the static page, run reports.

    app = create_app(Engine(store_path), actions=local_engine, token=new_token())
    web.run_app(app, host="127.0.0.1", port=8765)

aiohttp because it is already a dependency (the endpoints and the local runtime use it),
serves static files itself and runs in one process with the engine threads that the
console's Start and Redrive actions create. Reads go to a plain Engine over the store, so
every page works for executions started by other processes, without the local SageMaker
and Lambda stand-ins; actions use the engine `actions()` builds (once, on first use),
which has them plugged in. Engine calls are blocking SQLite work: they run in threads.

Every malformed request gets a 4xx with a JSON body {"error": ...}: query parameters and
bodies are checked here (`_query`, `_integer`, `_body`, `_text`) before the engine sees
them, and `json_errors` turns aiohttp's own 4xx (unknown route, body too large) into the
same shape.

Adding an action (a POST route, e.g. Approve/Reject on the execution page): write a
handler that reads its fields with `body = await _body(request)` and `_text(body, "arn")`,
then `app.router.add_post("/api/approve", approve)` in create_app. Nothing else: guard.py
refuses every non-GET request without the token header, from another origin, or with a
non-JSON body, before any handler runs. In console.js, call it with `api(path, body)`,
which sends the token header.
"""
from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from workflow.console.graph import graph_json
from workflow.console.guard import add_security_headers, guard, has_token, refused
from workflow.engine import Engine
from workflow.engine.errors import EngineError, ExecutionDoesNotExist, StateMachineDoesNotExist
from workflow.local.reader import executed_definition_text, running_here
from workflow.state_runs import state_runs_json

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1024 * 1024  # an action's JSON body; Step Functions caps execution input at 256 KiB
MAX_TEXT = 2048  # an ARN or a name (Step Functions allows 2048 characters for an ARN)
STATIC_FILES = frozenset(path.name for path in STATIC.iterdir() if path.suffix in (".js", ".css", ".html"))
EXECUTION_STATUSES = frozenset({"RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"})
ENGINE = web.AppKey("engine", Engine)
ACTIONS = web.AppKey("actions", object)
TOKEN = web.AppKey("token", str)
GRAPHS = web.AppKey("graphs", dict)


def _plain(value: Any) -> Any:
    """Datetimes become epoch seconds, the form the page's JavaScript wants."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(_plain(data)), status=status, content_type="application/json")


def _query(request: web.Request, name: str) -> str:
    """A required query parameter; 400 when it is missing."""
    value = _optional_query(request, name)
    if value is None:
        raise web.HTTPBadRequest(text=f"missing query parameter {name!r}")
    return value


def _optional_query(request: web.Request, name: str) -> str | None:
    """A query parameter as text of at most MAX_TEXT characters, None when absent or empty."""
    value = request.query.get(name)
    if not value:
        return None
    if len(value) > MAX_TEXT:
        raise web.HTTPBadRequest(text=f"query parameter {name!r} is longer than {MAX_TEXT} characters")
    return value


def _integer(request: web.Request, name: str, default: int) -> int:
    """A non-negative integer query parameter (SQLite integers are 64-bit)."""
    value = request.query.get(name, "")
    if value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise web.HTTPBadRequest(text=f"query parameter {name!r} must be a non-negative integer, not {value[:40]!r}")
    return int(value)


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413, the 400s raised here) as {"error": ...} JSON."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return refused(error.status, error.text or error.reason)


@web.middleware
async def engine_errors(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Engine exceptions become JSON errors the page shows as they are."""
    try:
        return await handler(request)
    except (ExecutionDoesNotExist, StateMachineDoesNotExist) as error:
        return _json({"error": str(error)}, 404)
    except EngineError as error:
        return _json({"error": str(error)}, 409)


class Actions:
    """The engine for Start/Stop/Redrive, built on first use (it may import the local services)."""

    def __init__(self, build: Callable[[], Engine]) -> None:
        self._build = build
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._build()
            return self._engine

    def stop_own_executions(self, timeout: float = 60.0) -> list[str]:
        """Stops the executions this process runs (started or redriven here), so they end ABORTED
        and redrivable instead of keeping the process alive; returns their names."""
        if self._engine is None:
            return []
        engine, stopped = self._engine, []
        for arn in running_here(engine):
            engine.stop_execution(arn, "Console.Stopped", "the console was stopped")
            stopped.append(arn)
        for arn in stopped:
            engine.wait(arn, timeout)
        return [arn.rsplit(":", 1)[-1] for arn in stopped]


async def index(request: web.Request) -> web.FileResponse:
    """The page; with ?token=... (checked by the guard) its script keeps the token in the tab."""
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def static(request: web.Request) -> web.FileResponse:
    """The page's own files, by name: nothing else under static/ and no paths."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(text=f"no static file {name[:80]!r}")
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def session(request: web.Request) -> web.Response:
    return _json({"actions": has_token(request, request.app[TOKEN])})


async def state_machines(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]

    def read() -> list[dict[str, Any]]:
        machines = engine.list_state_machines()
        executions = engine.list_executions()
        for machine in machines:
            own = [item for item in executions if item["stateMachineArn"] == machine["stateMachineArn"]]
            machine["executions"] = len(own)
            machine["latest"] = max(own, key=lambda item: item["startDate"]) if own else None
        return machines

    return _json(await asyncio.to_thread(read))


async def executions(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    machine = _optional_query(request, "stateMachineArn")
    status = _optional_query(request, "status")
    if status is not None and status not in EXECUTION_STATUSES:
        raise web.HTTPBadRequest(text=f"status must be one of {', '.join(sorted(EXECUTION_STATUSES))}, not {status[:40]!r}")
    return _json(await asyncio.to_thread(engine.list_executions, machine, status))


async def execution(request: web.Request) -> web.Response:
    """describe_execution plus per-state runs: everything the graph's colours need in one poll."""
    engine, arn = request.app[ENGINE], _query(request, "arn")

    def read() -> dict[str, Any]:
        description = engine.describe_execution(arn)
        events = engine.get_execution_history(arn)["events"]
        description["states"] = state_runs_json(events, description["status"])
        description["eventCount"] = len(events)
        description["approval"] = approval_json(engine, arn) if description["status"] == "RUNNING" else None
        return description

    return _json(await asyncio.to_thread(read))


async def history(request: web.Request) -> web.Response:
    engine, arn = request.app[ENGINE], _query(request, "arn")
    after = _integer(request, "after", 0)
    return _json(await asyncio.to_thread(engine.get_execution_history, arn, False, after))


async def graph(request: web.Request) -> web.Response:
    """The layout of the definition version the execution ran (or a state machine's latest)."""
    engine = request.app[ENGINE]

    def read() -> dict[str, Any]:
        arn = _optional_query(request, "arn")
        if arn is not None:
            key, text = executed_definition_text(engine, arn)
        else:
            machine = engine.describe_state_machine(_query(request, "stateMachineArn"))
            key, text = (machine["stateMachineArn"], machine["revision"]), machine["definition"]
        cache = request.app[GRAPHS]
        if key not in cache:
            cache[key] = graph_json(text)
        return cache[key]

    return _json(await asyncio.to_thread(read))


async def definition(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    machine = await asyncio.to_thread(engine.describe_state_machine, _query(request, "stateMachineArn"))
    return _json(machine)


async def _body(request: web.Request) -> dict[str, Any]:
    """The action's JSON object (at most MAX_BODY bytes: aiohttp answers 413 past it)."""
    try:
        body = await request.json()
    except UnicodeDecodeError as error:
        raise web.HTTPBadRequest(text=f"request body is not UTF-8: {error.reason} at byte {error.start}") from error
    except (ValueError, RecursionError) as error:
        raise web.HTTPBadRequest(text=f"request body is not JSON: {str(error)[:200]}") from error
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=f"request body must be a JSON object, not {type(body).__name__}")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    """A required string field of an action's body; 400 naming the field otherwise."""
    value = _optional_text(body, name)
    if value is None:
        raise web.HTTPBadRequest(text=f"{name} is required")
    return value


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    """A string field of an action's body, 1 to MAX_TEXT characters, None when absent or empty."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text=f"{name} must be a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise web.HTTPBadRequest(text=f"{name} is longer than {MAX_TEXT} characters")
    if not value.isprintable() or any(0xD800 <= ord(character) <= 0xDFFF for character in value):
        raise web.HTTPBadRequest(text=f"{name} has control characters or unpaired surrogates: {value[:80]!r}")
    return value


async def start(request: web.Request) -> web.Response:
    body = await _body(request)
    machine, name = _text(body, "stateMachineArn"), _optional_text(body, "name")
    text = body.get("input")
    if text is None or text == "":
        text = "{}"
    try:
        execution_input = json.loads(text) if isinstance(text, str) else text
    except (ValueError, RecursionError) as error:
        return _json({"error": f"execution input is not valid JSON: {str(error)[:200]}"}, 400)
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    arn = await asyncio.to_thread(engine.start_execution, machine, execution_input, name)
    return _json({"executionArn": arn})


async def stop(request: web.Request) -> web.Response:
    arn = _text(await _body(request), "arn")
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    result = await asyncio.to_thread(engine.stop_execution, arn, "Console.Stopped", "stopped from the console")
    return _json(result)


async def redrive(request: web.Request) -> web.Response:
    arn = _text(await _body(request), "arn")
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    return _json(await asyncio.to_thread(engine.redrive_execution, arn))


def approval_json(engine: Engine, arn: str) -> dict[str, Any] | None:
    """The promotion `arn` waits to have approved (the figures the request carried), or None."""
    from workflow.approval import ApprovalError, pending_approval

    try:
        pending = pending_approval(engine, arn)
    except ApprovalError:
        return None
    if pending is None:
        return None
    return {"state": pending.state_name, "requested": pending.requested.timestamp(),
            "deadline": pending.deadline.timestamp() if pending.deadline else None,
            "evaluation": pending.evaluation, "loadTest": pending.load_test}  # fmt: skip


async def approve(request: web.Request) -> web.Response:
    """Approve or reject the promotion an execution waits for, as `ddcicd approve` does."""
    from workflow.approval import ApprovalError, decide

    body = await _body(request)
    arn, verdict, reason = _text(body, "arn"), _text(body, "decision"), _optional_text(body, "reason")
    if verdict not in ("approve", "reject"):
        raise web.HTTPBadRequest(text=f"decision must be approve or reject, not {verdict[:40]!r}")
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    try:
        decision = await asyncio.to_thread(decide, engine, arn, verdict == "approve", reason, "console")
    except ApprovalError as error:
        return _json({"error": str(error)}, 409)
    return _json(decision.output())


async def models(request: web.Request) -> web.Response:
    """The pipeline's model versions, newest first (workflow/local/model_versions.py); read-only.

    ?pipeline=NAME reads another pipeline's group (the config's `name`); the production
    endpoint is the default config's.
    """
    from workflow.config import load_config
    from workflow.definition.registry import model_package_group
    from workflow.local.model_versions import versions

    name = _optional_query(request, "pipeline")
    try:
        config = load_config(None, [f"name={name}"] if name else [])
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"pipeline: {str(error)[:200]}") from None
    found = await asyncio.to_thread(versions, config)
    return _json({"group": model_package_group(config), "production": config.endpoint.production_name, "versions": found})


async def report(request: web.Request) -> web.Response:
    from workflow.console.report import render_report

    engine, arn = request.app[ENGINE], _query(request, "arn")
    html = await asyncio.to_thread(render_report, engine, arn)
    return web.Response(text=html, content_type="text/html")  # sandboxed: see guard.REPORT_POLICY


def create_app(engine: Engine, actions: Callable[[], Engine], token: str, extra_hosts: frozenset[str] = frozenset()) -> web.Application:
    app = web.Application(middlewares=[json_errors, guard(token, extra_hosts), engine_errors], client_max_size=MAX_BODY)
    app.on_response_prepare.append(add_security_headers)
    app[ENGINE] = engine
    app[ACTIONS] = Actions(actions)
    app[TOKEN] = token
    app[GRAPHS] = {}
    app.router.add_get("/", index)
    app.router.add_get("/api/session", session)
    app.router.add_get("/api/state-machines", state_machines)
    app.router.add_get("/api/state-machine", definition)
    app.router.add_get("/api/executions", executions)
    app.router.add_get("/api/execution", execution)
    app.router.add_get("/api/history", history)
    app.router.add_get("/api/graph", graph)
    app.router.add_get("/api/models", models)
    app.router.add_post("/api/start", start)
    app.router.add_post("/api/stop", stop)
    app.router.add_post("/api/redrive", redrive)
    app.router.add_post("/api/approve", approve)
    app.router.add_get("/report", report)
    app.router.add_get("/static/{name}", static)
    return app
