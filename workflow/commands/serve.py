"""`ddcicd serve`: one inference endpoint in the foreground (the SageMaker container contract)."""
from __future__ import annotations

import click

from workflow.errors import CliError


@click.command()
@click.option("--model", "model", required=True, type=click.Path(exists=True),
              help="model.tar.gz (or a directory with model.onnx and model.json).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--workers", default=0, type=click.IntRange(min=0),
              help="Batches decoded and run at once, one thread each [default: the usable cores].")
@click.option("--max-batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Images per forward pass at most; 1 turns micro-batching off.")
@click.option("--cache-cap/--no-cache-cap", default=True, show_default=True,
              help="Lower --max-batch-size to what fits in the CPU cache.")
@click.option("--processes", default=0, type=click.IntRange(min=0),
              help="Server processes sharing the port, the workers split among them [default: one per worker; "
                   "1 serves in this process].")
@click.option("--lone-threads", default=0, type=click.IntRange(min=0),
              help="Threads for a request alone on an idle server [default: the usable cores; 1 turns it off].")
@click.option("--max-wait-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="Longest a queued image waits for others already on their way.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default=None,
              help="Graph to serve [default: model.json's choice, int8 where it was faster when exported].")
@click.option("--allow-any-host", is_flag=True, envvar="DDCICD_ALLOW_ANY_HOST",
              help="Answer whatever the Host header (a non-loopback --host on purpose, e.g. a container); "
                   "by default only 127.0.0.1, localhost and [::1] with the bound port (403 otherwise).")
def serve(model: str, host: str, port: int, workers: int, max_batch_size: int, cache_cap: bool, processes: int,
          lone_threads: int, max_wait_ms: float, precision: str | None, allow_any_host: bool) -> None:
    """Serve MODEL: GET /ping, POST /invocations (image in, class probabilities out) until Ctrl-C."""
    from steps.predictor import ModelArchiveError
    from steps.serve import ServerSettings, run as run_server
    from steps.serve_processes import StartupError

    settings = ServerSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, workers=workers,
                              processes=processes, cache_cap=cache_cap, lone_threads=lone_threads,
                              precision=precision, allow_any_host=allow_any_host)

    def announce(bound: int) -> None:
        click.echo(f"serving {model} on http://{host}:{bound} (POST /invocations, GET /ping); Ctrl-C stops",
                   err=True)

    try:
        run_server(model, host, port, settings, on_ready=announce)
    except (ModelArchiveError, StartupError) as error:
        raise CliError(str(error)) from None
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
