"""Local SageMaker jobs: a directory per job, a supervisor process, a status file.

    jobs = JobStore("processing")                  # $DDCICD_HOME/jobs/processing/
    job = jobs.start("run-1-process", request, JobSpec(command=[...], uploads=[...]))
    jobs.describe("run-1-process")                  # the request + status, timestamps
    jobs.stop("run-1-process")                      # SIGTERM to the supervisor -> Stopped

The supervisor (workflow/local/supervisor.py) runs in its own session, so a job outlives
the command that started it, as a SageMaker job outlives CreateTrainingJob; it is the only
writer of status.json once running. Names are unique per kind, as in SageMaker: starting
a job whose name exists is a ResourceInUse error.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workflow.home import ddcicd_home
from workflow.local.s3 import S3Root
from workflow.local.supervisor import read_status, write_status

CONTAINER_ROOT = "container"  # JOB_DIR/container stands for the container's "/"


class ResourceInUse(Exception):
    """A job with this name exists already (SageMaker's ResourceInUse)."""


class ResourceNotFound(Exception):
    """No job with this name (SageMaker's ValidationException 'Could not find job')."""


@dataclass
class JobSpec:
    """What the supervisor runs; see workflow/local/supervisor.py."""

    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    uploads: list[dict[str, Any]] = field(default_factory=list)  # {"directory", "uri", "tar": bool}
    failure_file: str | None = None
    s3_root: str = ""


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


class JobStore:
    """One kind of job (processing, training, transform) under the ddcicd home."""

    def __init__(self, kind: str, home: Path | None = None, s3: S3Root | None = None) -> None:
        self.kind = kind
        self.root = (home or ddcicd_home()) / "jobs" / kind
        self.s3 = s3 or S3Root.default()

    def directory(self, name: str) -> Path:
        return self.root / name

    def container_path(self, name: str, path: str) -> Path:
        """A container path (/opt/ml/...) as a file under the job's directory."""
        return self.directory(name) / CONTAINER_ROOT / path.lstrip("/")

    def reserve(self, name: str, request: dict[str, Any]) -> Path:
        """Creates the job's directory with its request; ResourceInUse if the name is taken."""
        directory = self.directory(name)
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir()
        except FileExistsError as error:
            raise ResourceInUse(f"{self.kind} job {name!r} already exists; job names must be unique") from error
        (directory / "request.json").write_text(json.dumps(request, indent=1))
        write_status(directory, status="InProgress", created=time.time())
        return directory

    def launch(self, name: str, spec: JobSpec) -> None:
        """Starts the supervisor for a reserved job."""
        directory = self.directory(name)
        spec.s3_root = spec.s3_root or str(self.s3.directory)
        (directory / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
        process = subprocess.Popen(
            [sys.executable, "-m", "workflow.local.supervisor", str(directory)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(directory / "supervisor.log", "ab"),
            start_new_session=True, close_fds=True,
        )  # fmt: skip
        (directory / "supervisor.pid").write_text(str(process.pid))  # status.json is the supervisor's alone
        self._children = getattr(self, "_children", [])
        self._children.append(process)  # reaped in status(): no zombies in a long-lived engine

    def fail(self, name: str, reason: str) -> None:
        """Ends a reserved job as Failed before it ran (bad input found while setting it up)."""
        write_status(self.directory(name), status="Failed", failure_reason=reason, ended=time.time())

    def request(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.directory(name) / "request.json").read_text())
        except FileNotFoundError as error:
            raise ResourceNotFound(f"Could not find {self.kind} job {name!r}") from error

    def status(self, name: str) -> dict[str, Any]:
        for child in getattr(self, "_children", []):
            child.poll()
        directory = self.directory(name)
        if not directory.is_dir():
            raise ResourceNotFound(f"Could not find {self.kind} job {name!r}")
        status = read_status(directory)
        pid = _supervisor_pid(directory)
        if status.get("status") in ("InProgress", "Stopping") and pid is not None and not _alive(pid):
            # The supervisor writes its last status and then exits: the status read above may
            # predate that write. Only a status read *after* seeing it gone is its final word.
            status = read_status(directory)
            if status.get("status") in ("InProgress", "Stopping"):
                # The supervisor was killed (machine reboot, kill -9): the job cannot finish.
                write_status(directory, status="Failed", ended=time.time(),
                             failure_reason="InternalServerError: the job's supervisor process disappeared")  # fmt: skip
                status = read_status(directory)
        return status

    def stop(self, name: str) -> None:
        status = self.status(name)
        if status.get("status") not in ("InProgress", "Stopping"):
            return
        pid = _supervisor_pid(self.directory(name))
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        else:
            write_status(self.directory(name), status="Stopped", ended=time.time())

    def wait(self, name: str, timeout: float, poll: float = 0.2) -> dict[str, Any]:
        """Blocks until the job leaves InProgress/Stopping (tests and `ddcicd train`)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(name)
            if status.get("status") not in ("InProgress", "Stopping") or time.monotonic() > deadline:
                return status
            time.sleep(poll)

    def log(self, name: str) -> str:
        path = self.directory(name) / "job.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def names(self) -> list[str]:
        return sorted(path.name for path in self.root.iterdir() if path.is_dir()) if self.root.is_dir() else []


def _supervisor_pid(directory: Path) -> int | None:
    try:
        return int((directory / "supervisor.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
