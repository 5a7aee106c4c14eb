"""The executions this process runs, across Engine instances, and whether another process still runs its own.

    with RUNNING_LOCK:
        signal = stop_signal((store_key, execution_arn))   # StopExecution sets it; the run checks it
    alive(owner_pid)                                       # False: that engine process is gone (its runs are orphans)

Orphan detection must not mistake another Engine's run in the same process for a dead
one, so the registry is per process, keyed by (store path, execution ARN).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from workflow.engine.context import StopSignal

# (store path, execution ARN) -> the stop signal of that execution's run in this process.
RUNNING: dict[tuple[str, str], StopSignal] = {}
RUNNING_LOCK = threading.Lock()


def stop_signal(key: tuple[str, str]) -> StopSignal:
    """The stop signal of a run of this process, made on first use (call under RUNNING_LOCK)."""
    signal = RUNNING.get(key)
    if signal is None:
        signal = RUNNING[key] = StopSignal()
    return signal


def alive(pid: int) -> bool:
    """Whether process `pid` (on this host) is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child (killed but not yet reaped by its parent) is not running anything
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return status != "Z"
    except (OSError, IndexError):
        return True
