"""Errors the CLI can explain in one line, and the exit codes that tell outcomes apart.

Exit codes are part of the interface (buildspec.yml, README and DESIGN name them):

    0   success
    1   a run or job that ran and ended FAILED, ABORTED or TIMED_OUT (RunFailed)
    2   bad usage or bad input: the user can fix it (CliError, click's usage errors)
    70  an unexpected internal error, i.e. a bug in ddcicd (EX_SOFTWARE, sysexits.h)
    130 interrupted (Ctrl-C)

so a CI job can tell "the model was rejected" (1) from "ddcicd crashed" (70).
"""
from __future__ import annotations

import click

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 70
EXIT_INTERRUPTED = 130


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
