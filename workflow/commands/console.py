"""`ddcicd console`: the local web console over the engine's store, until Ctrl-C.

It prints one URL carrying a fresh token: opening it enables Start, Stop and Redrive in
that browser tab (the page keeps the token in sessionStorage and sends it as a header,
never as a cookie: see workflow/console/guard.py); without it the console is read-only.
Executions started or redriven from the console run in this process, with the same local
SageMaker, S3 and Lambda stand-ins as `ddcicd run`; stopping the console stops them too
(redrive them later).
"""
from __future__ import annotations

from pathlib import Path

import click

from workflow.errors import CliError


@click.command()
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but a loopback address exposes the console to the network.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another name browsers may use in the Host header (with --host 0.0.0.0, say).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pipeline config for the engine that runs Start/Redrive (the Lambda names).")
def console(port: int, host: str, allow_hosts: tuple[str, ...], config_path: Path | None) -> None:
    """Serve the console: state machines, executions, graphs, history, start/stop/redrive, run reports."""
    import asyncio

    from aiohttp import web

    from workflow.console.app import ACTIONS, create_app
    from workflow.console.guard import new_token
    from workflow.engine import Engine
    from workflow.home import engine_store_path

    def action_engine() -> Engine:
        from workflow.config import load_config
        from workflow.local.services import local_engine

        return local_engine(load_config(config_path))

    token = new_token()
    extra = frozenset(allow_hosts) | ({host} if host not in ("0.0.0.0", "::") else frozenset())
    app = create_app(Engine(engine_store_path()), action_engine, token, frozenset(extra))

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the real port when --port 0
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        click.echo(f"console: http://{shown}:{bound}/?token={token}", nl=True)
        click.echo(f"  store {engine_store_path()}; actions need the token above ({token}); Ctrl-C stops", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        stopped = app[ACTIONS].stop_own_executions()
        if stopped:
            click.echo(f"stopped {', '.join(stopped)} (redrive to resume)", err=True)
        click.echo("console stopped", err=True)
