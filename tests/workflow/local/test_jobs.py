"""Local jobs run as real supervised processes; their end is read from one status file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow.local import jobs as jobs_module
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


def test_a_supervisor_that_completes_between_the_reads_is_not_taken_for_killed(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of issue 14: status.json read (InProgress), then the supervisor writes
    Completed and exits, then the liveness check. A real process plays the supervisor; the
    liveness check is where its last write and exit are slotted in, so the order is fixed:
    a status() that decides from the stale read would call a finished job Failed."""
    directory = store.reserve("racy", {})
    finish = ("import sys, time; from pathlib import Path; from workflow.local.supervisor import write_status;"
              f" sys.stdin.readline(); write_status(Path({str(directory)!r}), status='Completed', exit_code=0,"
              " ended=time.time())")  # fmt: skip
    supervisor = subprocess.Popen(_python(finish), stdin=subprocess.PIPE, text=True)
    (directory / "supervisor.pid").write_text(str(supervisor.pid))
    real_alive = jobs_module._alive
    checks: list[bool] = []

    def alive_then_finish(pid: int) -> bool:
        answer = real_alive(pid)
        checks.append(answer)
        if answer and supervisor.poll() is None:  # alive when looked at; finishes right after
            supervisor.communicate("go\n", timeout=30)
        return answer

    monkeypatch.setattr(jobs_module, "_alive", alive_then_finish)
    first = store.status("racy")
    assert checks[0] is True and supervisor.returncode == 0
    assert first["status"] in ("InProgress", "Completed"), first
    assert store.status("racy")["status"] == "Completed"
    assert store.status("racy").get("failure_reason") is None


def test_names_are_unique_and_unknown_names_are_reported(store: JobStore) -> None:
    store.reserve("once", {})
    with pytest.raises(ResourceInUse, match="already exists"):
        store.reserve("once", {})
    with pytest.raises(ResourceNotFound, match="Could not find processing job 'never'"):
        store.status("never")
