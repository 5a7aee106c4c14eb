"""Errors the CLI can explain in one line.

Exit codes are part of the interface (buildspec.yml relies on them): 2 for bad usage or
bad input, 1 for a run that finished FAILED, anything else is a crash.
"""
from __future__ import annotations

import click

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


class CliError(click.ClickException):
    """A problem the user can fix; printed as one line on stderr."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class RunFailed(CliError):
    """An execution or job that ran and ended FAILED, ABORTED or TIMED_OUT."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_RUN_FAILED)
