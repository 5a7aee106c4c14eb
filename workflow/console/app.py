"""The console's web server: a JSON API over the engine, the static page, run reports.

    app = create_app(Engine(store_path), actions=local_engine, token=new_token())
    web.run_app(app, host="127.0.0.1", port=8765)

aiohttp because it is already a dependency (the endpoints and the local runtime use it),
serves static files itself and runs in one process with the engine threads that the
console's Start and Redrive actions create. Reads go to a plain Engine over the store, so
every page works for executions started by other processes, without the local SageMaker
and Lambda stand-ins; actions use the engine `actions()` builds (once, on first use),
which has them plugged in. Engine calls are blocking SQLite work: they run in threads.
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
from workflow.console.guard import guard, has_token
from workflow.engine import Engine
from workflow.engine.errors import EngineError, ExecutionDoesNotExist, StateMachineDoesNotExist
from workflow.local.reader import executed_definition_text, running_here
from workflow.state_runs import state_runs_json

STATIC = Path(__file__).parent / "static"
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
    value = request.query.get(name)
    if not value:
        raise web.HTTPBadRequest(text=f"missing query parameter {name!r}")
    return value


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
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


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
    machine = request.query.get("stateMachineArn") or None
    status = request.query.get("status") or None
    return _json(await asyncio.to_thread(engine.list_executions, machine, status))


async def execution(request: web.Request) -> web.Response:
    """describe_execution plus per-state runs: everything the graph's colours need in one poll."""
    engine, arn = request.app[ENGINE], _query(request, "arn")

    def read() -> dict[str, Any]:
        description = engine.describe_execution(arn)
        events = engine.get_execution_history(arn)["events"]
        description["states"] = state_runs_json(events, description["status"])
        description["eventCount"] = len(events)
        return description

    return _json(await asyncio.to_thread(read))


async def history(request: web.Request) -> web.Response:
    engine, arn = request.app[ENGINE], _query(request, "arn")
    after = int(request.query.get("after", "0") or 0)
    return _json(await asyncio.to_thread(engine.get_execution_history, arn, False, after))


async def graph(request: web.Request) -> web.Response:
    """The layout of the definition version the execution ran (or a state machine's latest)."""
    engine = request.app[ENGINE]

    def read() -> dict[str, Any]:
        if "arn" in request.query:
            key, text = executed_definition_text(engine, request.query["arn"])
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
    try:
        body = await request.json()
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"request body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return body


async def start(request: web.Request) -> web.Response:
    body = await _body(request)
    machine = body.get("stateMachineArn")
    if not isinstance(machine, str) or not machine:
        raise web.HTTPBadRequest(text="stateMachineArn is required")
    text = body.get("input") or "{}"
    try:
        execution_input = json.loads(text) if isinstance(text, str) else text
    except ValueError as error:
        return _json({"error": f"execution input is not valid JSON: {error}"}, 400)
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    arn = await asyncio.to_thread(engine.start_execution, machine, execution_input, body.get("name") or None)
    return _json({"executionArn": arn})


async def stop(request: web.Request) -> web.Response:
    body = await _body(request)
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    result = await asyncio.to_thread(engine.stop_execution, str(body.get("arn")), "Console.Stopped", "stopped from the console")
    return _json(result)


async def redrive(request: web.Request) -> web.Response:
    body = await _body(request)
    engine = await asyncio.to_thread(request.app[ACTIONS].engine)
    return _json(await asyncio.to_thread(engine.redrive_execution, str(body.get("arn"))))


async def report(request: web.Request) -> web.Response:
    from workflow.console.report import render_report

    engine, arn = request.app[ENGINE], _query(request, "arn")
    html = await asyncio.to_thread(render_report, engine, arn)
    return web.Response(text=html, content_type="text/html")


def create_app(engine: Engine, actions: Callable[[], Engine], token: str, extra_hosts: frozenset[str] = frozenset()) -> web.Application:
    app = web.Application(middlewares=[guard(token, extra_hosts), engine_errors])
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
    app.router.add_post("/api/start", start)
    app.router.add_post("/api/stop", stop)
    app.router.add_post("/api/redrive", redrive)
    app.router.add_get("/report", report)
    app.router.add_static("/static/", STATIC)
    return app
