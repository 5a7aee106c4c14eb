"""`ddcicd definition`: print the state machine's ASL JSON (what both engines run)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from workflow.errors import CliError


@click.command("definition")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help="Pipeline config (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. quality_gate.min_accuracy=0.95")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file (atomically) instead of stdout.")
def definition(config_path: Path | None, overrides: tuple[str, ...], out: Path | None) -> None:
    """Print the state machine's Amazon States Language definition."""
    from workflow.config import ConfigError, load_config
    from workflow.definition import render_definition

    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        raise CliError(str(error)) from error
    text = json.dumps(render_definition(config), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(text)
    temporary.replace(out)
    click.echo(f"wrote {out}", err=True)
