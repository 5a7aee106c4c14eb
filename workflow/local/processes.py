"""Every local process of a ddcicd home, found and stopped.

    stop_all(Path(".ddcicd").resolve())   # -> ["runtime router (pid 4242)", "endpoint prod instance i-... (pid 4250)", ...]

A home's processes outlive the commands that started them, on purpose (an endpoint outlives
CreateEndpoint): the runtime router, each endpoint's server processes (production too), and
the supervisor of each running job with the job's own process group under it. They are found
by their command lines in /proc, not by the home's state files, so the ones whose state was
lost (a corrupt file, a home already removed with `rm -rf`) are found as well:

    python -m workflow.local.router --home HOME ...          (runtime.py)
    python -m steps.serve ... --lifeline HOME/endpoints/...   (instances.py)
    python -m workflow.local.supervisor HOME/jobs/KIND/NAME   (jobs.py)

Each is named by (pid, start time), so a pid reused by an unrelated process after ours exited
is never signalled. Stopping is SIGTERM (the router and servers finish in-flight requests; a
supervisor forwards it to its job, which then ends Stopped), then SIGKILL after `grace`
seconds. State files are left as they are: an endpoint whose instances were stopped shows
Failed on its next describe, a stopped job Stopped. `ddcicd cleanup --all` calls stop_all.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workflow.local.instances import proc_stat, stat_fields

ROUTER_MODULE = "workflow.local.router"
SERVER_MODULE = "steps.serve"
SUPERVISOR_MODULE = "workflow.local.supervisor"


@dataclass(frozen=True)
class LocalProcess:
    """One process of a home: what it is, and who it is (pid and start time)."""

    description: str
    pid: int
    start_ticks: int
    rank: int  # stop order: jobs (0), endpoint servers (1), the router (2)
    group: bool = False  # signal the whole process group (a job run by its supervisor)

    def alive(self) -> bool:
        _reap(self.pid)
        stat = proc_stat(self.pid)
        return stat is not None and stat[0] not in ("Z", "X") and stat[1] == self.start_ticks

    def signal(self, signum: int) -> None:
        if not self.alive():
            return
        try:
            if self.group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pid: int) -> None:
    """Collect the exit status of a process that is our child (tests start them), so it does
    not linger as a zombie that looks alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _arguments(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="surrogateescape") for part in raw.split(b"\0")[:-1]]


def _module(arguments: list[str]) -> str | None:
    """The X of `python -m X ...`."""
    for index, argument in enumerate(arguments[:-1]):
        if argument == "-m":
            return arguments[index + 1]
    return None


def _option(arguments: list[str], name: str) -> str | None:
    for index, argument in enumerate(arguments[:-1]):
        if argument == name:
            return arguments[index + 1]
        if argument.startswith(f"{name}="):
            return argument.split("=", 1)[1]
    return None


def _under(path: str | None, directory: Path) -> Path | None:
    """`path` relative to `directory` when it lies inside it (absolute paths only: every
    launcher in workflow/local passes absolute ones)."""
    if not path or not os.path.isabs(path):
        return None
    candidate = Path(os.path.normpath(path))
    return candidate.relative_to(directory) if candidate.is_relative_to(directory) else None


# (description, pid to signal, rank, whole process group)
_Found = tuple[str, int, int, bool]


def _describe(pid: int, arguments: list[str], home: Path) -> list[_Found]:
    """What this process is to `home` (with its job's group for a supervisor), or nothing."""
    module = _module(arguments)
    if module == ROUTER_MODULE:
        named = _option(arguments, "--home")
        if named and os.path.isabs(named) and Path(os.path.normpath(named)) == home:
            return [(f"runtime router (pid {pid})", pid, 2, False)]
    elif module == SERVER_MODULE:
        where = _under(_option(arguments, "--lifeline"), home / "endpoints" / "endpoints")
        # A server's own worker processes (forked, so with its command line) go with it: the
        # server stops them, and they die with it (steps/serve_processes.py).
        if where is not None and len(where.parts) == 2 and _arguments(_parent(pid)) != arguments:
            endpoint, instance = where.parts
            return [(f"endpoint {endpoint} instance {instance} (pid {pid})", pid, 1, False)]
    elif module == SUPERVISOR_MODULE and arguments:
        where = _under(arguments[-1], home / "jobs")
        if where is not None and len(where.parts) == 2:
            kind, name = where.parts
            found = [(f"{kind} job {name} supervisor (pid {pid})", pid, 0, False)]
            child = _job_process(pid)
            if child is not None:
                found.append((f"{kind} job {name} process group (pid {child})", child, 0, True))
            return found
    return []


def _parent(pid: int) -> int:
    """The parent's pid (0 when `pid` is gone)."""
    fields = stat_fields(pid)
    return 0 if fields is None else int(fields[1])


def _job_process(supervisor: int) -> int | None:
    """The job's process: the supervisor's child that leads its own process group (the
    supervisor starts it with start_new_session). Found from /proc, so also after the home
    and its status.json were removed."""
    try:
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        fields = stat_fields(child)
        if fields is not None and int(fields[2]) == child:  # process group id == pid: a group leader
            return child
    return None


def find_processes(home: Path) -> list[LocalProcess]:
    """Every live process of `home` (an absolute path; it may no longer exist), in the
    order stop_all stops them: jobs first, then endpoint servers, then the router."""
    home = Path(os.path.normpath(home))
    found: list[LocalProcess] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        for description, target, rank, group in _describe(pid, _arguments(pid), home):
            stat = proc_stat(target)
            if stat is not None and stat[0] not in ("Z", "X"):
                found.append(LocalProcess(description, target, stat[1], rank, group))
    return sorted(found, key=lambda item: (item.rank, item.description))


def stop_all(home: Path, grace: float = 10.0) -> list[str]:
    """Stop every local process of `home` (see the module docstring); returns what it stopped.

    SIGTERM to all, up to `grace` seconds for them to exit, then SIGKILL what is left. The
    router's record is removed when it names a stopped router, so the next command starts a
    fresh one instead of trusting a dead address.
    """
    home = Path(os.path.normpath(home))
    processes = find_processes(home)
    deadline = time.monotonic() + grace
    # A supervisor is asked first, so its job ends Stopped rather than killed from outside; a
    # job whose supervisor is gone (or did not pass the signal on) gets it after half the grace.
    for process in processes:
        if not process.group:
            process.signal(signal.SIGTERM)
    _wait(processes, lambda process: not process.group, time.monotonic() + grace / 2)
    for process in processes:
        if process.group:
            process.signal(signal.SIGTERM)
    _wait(processes, lambda process: True, deadline)
    for process in processes:
        process.signal(signal.SIGKILL)
    _forget_router(home, {process.pid for process in processes})
    return [process.description for process in processes]


def _wait(processes: list[LocalProcess], which: Callable[[LocalProcess], bool], deadline: float) -> None:
    while any(which(process) and process.alive() for process in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def _forget_router(home: Path, stopped: set[int]) -> None:
    record = home / "runtime.json"
    try:
        if json.loads(record.read_text()).get("pid") in stopped:
            record.unlink()
    except (OSError, ValueError, AttributeError):
        pass
