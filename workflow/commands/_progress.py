"""A progress bar for long commands: rich on a terminal, nothing (and no rich import) otherwise.

In CI logs and pipes a live bar is noise, and skipping `import rich` keeps start-up light
for commands that are benchmarked as whole processes (`ddcicd process`).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

Update = Callable[[int, int], None]  # (done, total)


@contextmanager
def terminal_progress(label: str) -> Iterator[Update | None]:
    """Yields `update(done, total)` while a transient bar shows on stderr, or None off a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
