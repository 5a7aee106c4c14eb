"""Server processes behind local endpoints: start, health-check, identify and stop them.

An instance is one `python -m steps.serve` process (with the serving processes it forks,
one per worker: signalling it reaches them), started in its own session so it
outlives the command that created it (as an AWS endpoint outlives the API call). Its
directory holds its log and the ready file the server writes once its port is open. Its
identity is (pid, start time): a pid alone may be reused by an unrelated process after
the server died, and `os.kill(pid, 0)` is true for a zombie, so neither is trusted.
"""
from __future__ import annotations

import http.client
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Instance:
    """One server process; stored in the endpoint's state file as a plain dict."""

    instance_id: str
    variant: str
    model_name: str
    model_path: str
    directory: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: with the pid, names the process uniquely
    port: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        return cls(**data)

    @property
    def log_path(self) -> Path:
        return Path(self.directory) / "server.log"

    @property
    def ready_path(self) -> Path:
        return Path(self.directory) / "ready.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None if there is no such process: index 0
    is the state, 1 the parent's pid, 2 the process group, 19 the start time in clock ticks."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2:].split()


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if there is none."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[19]))


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_running(instance: Instance) -> bool:
    _reap(instance.pid)
    stat = proc_stat(instance.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == instance.start_ticks


def read_port(instance: Instance) -> int | None:
    """The port from the ready file, once the server has written it."""
    if instance.port is None and instance.ready_path.exists():
        try:
            instance.port = int(json.loads(instance.ready_path.read_text())["port"])
        except (ValueError, KeyError, json.JSONDecodeError):
            return None
    return instance.port


def ping(instance: Instance, timeout: float = 2.0) -> bool:
    """GET /ping answered 200: the model is loaded and the server accepts requests."""
    if read_port(instance) is None:
        return False
    connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=timeout)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def log_tail(instance: Instance, lines: int = 3) -> str:
    """The last lines of the server's log, for FailureReason."""
    try:
        text = instance.log_path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"


def _pythonpath() -> str:
    """Make `steps` importable in the child even when the package is not installed."""
    spec = importlib.util.find_spec("steps")
    assert spec is not None and spec.origin is not None, "the steps package must be importable"
    root = str(Path(spec.origin).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return root if not existing else f"{root}{os.pathsep}{existing}"


def start_instance(directory: Path, variant: str, model_name: str, model_path: Path, workers: int,
                   extra_args: tuple[str, ...] = (), environment: dict[str, str] | None = None) -> Instance:
    """Start one server on a free port (it binds port 0 and reports the port in ready.json).

    `workers` is this instance's share of the cores: a lone request on an idle instance
    may use that many threads (--lone-threads), never the cores of its sibling instances.
    `environment` is the model's PrimaryContainer.Environment, given to the server as on AWS.
    """
    instance_id = f"i-{secrets.token_hex(6)}"
    home = directory / instance_id
    home.mkdir(parents=True)
    command = [sys.executable, "-m", "steps.serve", "--model", str(model_path), "--host", "127.0.0.1",
               "--port", "0", "--threads", "1", "--workers", str(workers),
               "--lone-threads", str(workers), "--ready-file", str(home / "ready.json"),
               "--lifeline", str(home), *extra_args]
    environment = {**os.environ, **{str(key): str(value) for key, value in (environment or {}).items()},
                   "PYTHONPATH": _pythonpath(), "OMP_NUM_THREADS": "1"}
    with open(home / "server.log", "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, env=environment, cwd=home)
    stat = proc_stat(process.pid)
    start_ticks = stat[1] if stat else 0
    # Forget the Popen object on purpose: the process belongs to the endpoint, not to us.
    # Python's subprocess reaps it later if it ends while we are still running.
    return Instance(instance_id, variant, model_name, str(model_path), str(home), process.pid, start_ticks)


def signal_instance(instance: Instance, signum: int = signal.SIGTERM) -> None:
    """Ask the server to stop (SIGTERM: it finishes in-flight requests first)."""
    if is_running(instance):
        try:
            os.kill(instance.pid, signum)
        except ProcessLookupError:
            pass


def stop_instances(instances: list[Instance], grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL whatever is left."""
    for instance in instances:
        signal_instance(instance)
    deadline = time.monotonic() + grace
    while any(is_running(instance) for instance in instances) and time.monotonic() < deadline:
        time.sleep(0.05)
    for instance in instances:
        signal_instance(instance, signal.SIGKILL)
