"""Faults in the middle of the main job: Ctrl-C, a killed engine, a killed training job.

Each test starts `ddcicd run` as a real process, waits until training is under way, does
the damage, then `ddcicd redrive`s and checks that the execution SUCCEEDED without
running the processing step again and without leaving job processes behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow.engine.history import HistoryStore
from workflow.local.endpoints import LocalEndpoints
from workflow.local.jobs import JobStore
from workflow.local.runtime import stop_runtime
from workflow.local.s3 import S3Root

pytestmark = pytest.mark.slow
# two epochs so training lasts long enough to be interrupted
LONGER = ["--set", "training.hyperparameters.epochs=2", "--set", "training.hyperparameters.checkpoint_frequency=1"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    yield tmp_path
    endpoints = LocalEndpoints(tmp_path)
    for endpoint in endpoints.list_endpoints():
        endpoints.delete_endpoint(endpoint["EndpointName"])
    stop_runtime(tmp_path)


def _environment(home: Path) -> dict[str, str]:
    return {**os.environ, "DDCICD_HOME": str(home)}


def start_run(home: Path, options: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "workflow.cli", "run", "--quiet", *options, *LONGER], cwd=home,
                            env=_environment(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def ddcicd(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflow.cli", *arguments], cwd=home, env=_environment(home),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def wait_for_training(home: Path, run: subprocess.Popen[str], timeout: float = 300) -> str:
    """Blocks until a training job's process is running; returns the job's name."""
    jobs = JobStore("training", home, S3Root(home / "s3"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        for name in jobs.names():
            if jobs.status(name).get("pid") and (jobs.directory(name) / "job.log").stat().st_size > 0:
                return name
        time.sleep(0.2)
    raise AssertionError("training never started")


def only_execution(home: Path) -> dict[str, object]:
    listing = json.loads(ddcicd(home, "executions", "list", "--json").stdout)
    assert len(listing) == 1, listing
    return listing[0]


def entered_states(home: Path, execution_arn: str) -> list[tuple[int, str]]:
    """(redrive generation, state name) for every top-level state entered, in order."""
    store = HistoryStore(home / "engine.sqlite3")
    generation, entered = 0, []
    for event in store.events(execution_arn):
        if event.type == "ExecutionRedriven":
            generation += 1
        elif event.type.endswith("StateEntered") and not event.scope:
            entered.append((generation, event.details["name"]))
    return entered


def job_processes_alive(home: Path) -> list[int]:
    alive = []
    for kind in ("processing", "training"):
        jobs = JobStore(kind, home, S3Root(home / "s3"))
        for name in jobs.names():
            pid = jobs.status(name).get("pid")
            if pid and Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
                alive.append(pid)
    return alive


def assert_redrive_succeeds_without_reprocessing(home: Path) -> None:
    execution = only_execution(home)
    redriven = ddcicd(home, "redrive", str(execution["name"]))
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    after = only_execution(home)
    assert after["status"] == "SUCCEEDED"
    entered = entered_states(home, str(execution["executionArn"]))
    rerun = [name for generation, name in entered if generation == 1]
    assert rerun[0] == "Train", rerun
    assert "Process" not in rerun


def test_ctrl_c_aborts_cleanly_and_redrive_finishes(home: Path, tiny_run_options: list[str]) -> None:
    run = start_run(home, tiny_run_options)
    wait_for_training(home, run)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stdout + stderr
    execution = only_execution(home)
    assert execution["status"] == "ABORTED"
    assert f"ddcicd redrive {execution['name']}" in stderr
    assert job_processes_alive(home) == [], "Ctrl-C must stop the training job"
    assert_redrive_succeeds_without_reprocessing(home)


def test_a_killed_engine_is_redriven_from_training(home: Path, tiny_run_options: list[str]) -> None:
    run = start_run(home, tiny_run_options)
    wait_for_training(home, run)
    run.kill()  # SIGKILL: no chance to clean up or record anything
    run.communicate(timeout=60)
    assert only_execution(home)["status"] == "ABORTED"  # seen as orphaned by the next engine
    assert_redrive_succeeds_without_reprocessing(home)
    assert job_processes_alive(home) == []


def test_a_killed_training_job_fails_the_run_and_redrive_resumes_it(home: Path, tiny_run_options: list[str]) -> None:
    run = start_run(home, tiny_run_options)
    job = wait_for_training(home, run)
    os.killpg(JobStore("training", home, S3Root(home / "s3")).status(job)["pid"], signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stdout + stderr
    assert only_execution(home)["status"] == "FAILED"
    assert "in state Train" in stdout  # the summary says where it stopped
    assert_redrive_succeeds_without_reprocessing(home)
