"""The `ddcicd` command line.

Start-up stays light: this module imports click and nothing heavy. Each command lives in
its own module under `workflow/commands/` and is imported only when it is invoked, so
`ddcicd --help` does not pay for torch, sagemaker or the Step Functions SDK.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from workflow.errors import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, CliError

# command name -> "module:attribute"; the module is imported only when the command runs.
COMMANDS: dict[str, str] = {
    "executions": "workflow.commands.executions:executions",
    "redrive": "workflow.commands.redrive:redrive",
    "approve": "workflow.commands.approve:approve",
    "stop": "workflow.commands.stop:stop",
    "data": "workflow.commands.data:data",
    "process": "workflow.commands.process:process",
    "train": "workflow.commands.train:train",
    "definition": "workflow.commands.definition:definition",
    "run": "workflow.commands.run:run",
    "predict": "workflow.commands.predict:predict",
    "serve": "workflow.commands.serve:serve",
    "endpoints": "workflow.commands.endpoints:endpoints",
    "models": "workflow.commands.models:models",
    "console": "workflow.commands.console:console",
    "report": "workflow.commands.report:report",
    "aws": "workflow.commands.aws:aws",
    "cleanup": "workflow.commands.cleanup:cleanup",
    "engine": "workflow.commands.engine:engine",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str], **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Print tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Retrain, check and ship a distracted-driver classifier with Step Functions."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if verbose:
        os.environ["DDCICD_VERBOSE"] = "1"


def main() -> None:
    """Entry point: explainable errors are one line; anything else is a bug: exit 70 with a traceback hint.

    Exit codes are listed in workflow/errors.py.
    """
    verbose = "--verbose" in sys.argv[1:] or os.environ.get("DDCICD_VERBOSE") == "1"
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except CliError as error:
        if verbose:
            traceback.print_exc()
        error.show()
        sys.exit(error.exit_code)
    except click.ClickException as error:  # usage errors: click's own exit code 2
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the last line of defence: a bug, not a failed run
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else "; rerun with --verbose for a traceback"
        click.echo(f"error: unexpected {type(error).__name__}: {error} (an internal error{hint})", err=True)
        sys.exit(EXIT_INTERNAL_ERROR)


if __name__ == "__main__":
    main()
