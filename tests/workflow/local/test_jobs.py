"""Local jobs run as real supervised processes; their end is read from one status file."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from workflow.local.jobs import JobSpec, JobStore, ResourceInUse, ResourceNotFound
from workflow.local.s3 import S3Root


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore("processing", tmp_path / "home", S3Root(tmp_path / "s3"))


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_successful_job_uploads_its_outputs(store: JobStore, tmp_path: Path) -> None:
    directory = store.reserve("ok", {"ProcessingJobName": "ok"})
    out = directory / "out"
    store.launch("ok", JobSpec(command=_python(f"open({str(out / 'r.txt')!r}, 'w').write('done')"),
                               uploads=[{"directory": str(out), "uri": "s3://b/results/"}]))  # fmt: skip
    out.mkdir()
    status = store.wait("ok", timeout=30)
    assert status["status"] == "Completed", store.log("ok")
    assert store.s3.path("s3://b/results/r.txt").read_text() == "done"


def test_a_failing_job_reports_its_failure_file(store: JobStore) -> None:
    directory = store.reserve("bad", {})
    failure = directory / "failure"
    code = f"import sys; open({str(failure)!r}, 'w').write('ClientError: no images'); sys.exit(2)"
    store.launch("bad", JobSpec(command=_python(code), failure_file=str(failure)))
    status = store.wait("bad", timeout=30)
    assert status["status"] == "Failed"
    assert status["failure_reason"] == "ClientError: no images"
    assert status["exit_code"] == 2


def test_without_a_failure_file_the_last_log_line_is_the_reason(store: JobStore) -> None:
    store.reserve("crash", {})
    store.launch("crash", JobSpec(command=_python("raise SystemExit('boom: disk full')")))
    status = store.wait("crash", timeout=30)
    assert status["failure_reason"] == "AlgorithmError: exit code 1: boom: disk full"


def test_stop_ends_a_running_job_as_stopped(store: JobStore) -> None:
    store.reserve("long", {})
    store.launch("long", JobSpec(command=_python("import time; time.sleep(60)")))
    deadline = time.monotonic() + 10
    while "pid" not in store.status("long") and time.monotonic() < deadline:
        time.sleep(0.05)
    store.stop("long")
    assert store.wait("long", timeout=30)["status"] == "Stopped"


def test_a_killed_supervisor_fails_the_job_instead_of_hanging(store: JobStore) -> None:
    directory = store.reserve("orphan", {})
    store.launch("orphan", JobSpec(command=_python("import time; time.sleep(60)")))
    deadline = time.monotonic() + 10
    while "pid" not in store.status("orphan") and time.monotonic() < deadline:
        time.sleep(0.05)
    child = store.status("orphan")["pid"]
    os.kill(int((directory / "supervisor.pid").read_text()), signal.SIGKILL)
    status = store.wait("orphan", timeout=30)
    os.killpg(child, signal.SIGKILL)
    assert status["status"] == "Failed"
    assert "supervisor process disappeared" in status["failure_reason"]


def test_names_are_unique_and_unknown_names_are_reported(store: JobStore) -> None:
    store.reserve("once", {})
    with pytest.raises(ResourceInUse, match="already exists"):
        store.reserve("once", {})
    with pytest.raises(ResourceNotFound, match="Could not find processing job 'never'"):
        store.status("never")
