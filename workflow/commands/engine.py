"""`ddcicd engine serve`: the local engine as a Step Functions endpoint for boto3, the AWS CLI and the SDKs.

    ddcicd engine serve --port 8083
    aws stepfunctions list-state-machines --endpoint-url http://127.0.0.1:8083
    ddcicd aws start --dataset kaggle --wait --stepfunctions-endpoint-url http://127.0.0.1:8083

It serves the same store as `ddcicd run`, `ddcicd executions` and the console
($DDCICD_HOME/engine.sqlite3), with the same local SageMaker, S3 and Lambda integrations
behind the Task states. Executions started through it run in this process.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from workflow.errors import CliError

if TYPE_CHECKING:
    from workflow.config import PipelineConfig
    from workflow.engine.api import EngineFactory
    from workflow.engine.history import HistoryStore


@click.group("engine")
def engine() -> None:
    """The local Step Functions engine as a service."""


def local_engine_factory(config: PipelineConfig) -> EngineFactory:
    """Engines with `ddcicd run`'s integrations (local SageMaker, S3, the catalogue's Lambdas), per region and account."""
    from workflow.engine import Engine
    from workflow.home import ddcicd_home
    from workflow.local.s3 import S3Root
    from workflow.local.services import local_functions, register_local_aws

    home = ddcicd_home()
    s3 = S3Root.default()

    def make(store: HistoryStore, region: str, account: str) -> "Engine":
        made = Engine(store, functions=local_functions(config, s3), region=region, account=account)
        register_local_aws(made.integrations, s3, home)
        return made

    return make


@engine.command("serve")
@click.option("--port", default=8083, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--account", default="000000000000", show_default=True,
              help="The account in ARNs when the access key is not a 12-digit account id.")  # fmt: skip
@click.option("--config", "config_path", envvar="DDCICD_CONFIG", type=click.Path(dir_okay=False, path_type=Path),
              help="Pipeline config (the Lambda names the integrations answer to).")  # fmt: skip
@click.option("--log-requests", is_flag=True, help="Log each call (operation and status) to stderr.")
def serve(port: int, account: str, config_path: Path | None, log_requests: bool) -> None:
    """Serve the Step Functions API (JSON 1.0, any SigV4 credentials) on 127.0.0.1 until Ctrl-C."""
    import logging

    from workflow.config import ConfigError, load_config
    from workflow.engine.api import ApiServer, Backend
    from workflow.home import engine_store_path

    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise CliError(str(error)) from error
    if log_requests:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    store = engine_store_path()
    try:
        server = ApiServer(Backend(store, local_engine_factory(config)), port=port, default_account=account, verbose=log_requests)
    except OSError as error:
        raise CliError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    click.echo(server.url)
    click.echo(f"  Step Functions API over {store}; e.g. aws stepfunctions list-state-machines --endpoint-url {server.url};"
               " Ctrl-C stops", err=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("engine stopped; executions it was running can be redriven", err=True)
