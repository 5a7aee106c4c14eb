"""The worker threads background executions run on: reused, grown on demand, ended when idle, and
holding the interpreter's exit for jobs a non-daemon thread submitted."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from workflow.engine import Engine
from workflow.engine.workers import Workers

REPO = Path(__file__).resolve().parents[3]


def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def run_and_record(workers: Workers, name: str) -> tuple[threading.Event, list[threading.Thread]]:
    done, threads = threading.Event(), []

    def job() -> None:
        threads.append(threading.current_thread())
        assert threading.current_thread().name == name
        done.set()
    workers.submit(job, name)
    return done, threads


def test_a_worker_that_finished_takes_the_next_job() -> None:
    workers = Workers()
    first_done, first = run_and_record(workers, "execution-one")
    assert first_done.wait(10)
    until(lambda: workers._idle == 1)
    second_done, second = run_and_record(workers, "execution-two")
    assert second_done.wait(10)
    assert first == second


def test_jobs_never_wait_for_a_busy_worker() -> None:
    workers, release, started = Workers(), threading.Event(), threading.Barrier(3, timeout=10)

    def blocking() -> None:
        started.wait()
        release.wait(10)
    workers.submit(blocking, "execution-a")
    workers.submit(blocking, "execution-b")
    started.wait()  # both run at once, though neither has ended
    release.set()


def test_an_idle_worker_ends_and_a_new_one_is_started_when_needed() -> None:
    workers = Workers(idle_seconds=0.05)
    done, first = run_and_record(workers, "execution-one")
    assert done.wait(10)
    until(lambda: workers._idle == 0 and not first[0].is_alive())
    done, second = run_and_record(workers, "execution-two")
    assert done.wait(10)
    assert second[0] is not first[0]


def test_a_failing_job_is_reported_like_an_uncaught_thread_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[tuple[Any, str, str]] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: reported.append((hook.exc_type, str(hook.exc_value), hook.thread.name)))
    workers = Workers()

    def broken() -> None:
        raise RuntimeError("engine bug")
    workers.submit(broken, "execution-broken")
    until(lambda: bool(reported))
    assert reported == [(RuntimeError, "engine bug", "execution-broken")]
    done, _ = run_and_record(workers, "execution-after")  # the worker goes on
    assert done.wait(10)


def test_drain_waits_for_jobs_from_non_daemon_threads_only() -> None:
    workers, release, finished = Workers(), threading.Event(), []

    def held() -> None:
        release.wait(10)
        finished.append("held")
    spawner = threading.Thread(target=workers.submit, args=(held, "execution-daemon"), daemon=True)
    spawner.start()
    spawner.join()
    began = time.monotonic()
    workers.drain()  # the daemon thread's job does not count
    assert time.monotonic() - began < 1 and finished == []
    workers.submit(lambda: (time.sleep(0.2), finished.append("pinned")), "execution-main")  # from this (main) thread
    workers.drain()
    assert "pinned" in finished
    release.set()


def test_a_script_that_starts_an_execution_and_returns_exits_only_after_it_ends(tmp_path: Path) -> None:
    """As when each execution had its own non-daemon thread: the run is not cut off at interpreter exit."""
    store = tmp_path / "engine.sqlite3"
    script = textwrap.dedent(f"""
        from workflow.engine import Engine
        engine = Engine({str(store)!r})
        machine = engine.create_state_machine("slow", {{"StartAt": "W", "States": {{"W": {{"Type": "Wait", "Seconds": 1, "End": True}}}}}})
        engine.start_execution(machine, name="left-running")
    """)
    subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=60)
    assert Engine(store).describe_execution("left-running")["status"] == "SUCCEEDED"


def test_jobs_submitted_while_holding_start_only_when_released() -> None:
    workers = Workers()
    ran = threading.Event()
    with workers.holding() as held:
        workers.submit(ran.set, "execution-held")
    assert [name for _, name in held] == ["execution-held"]
    assert not ran.wait(0.2)  # held: nothing started it
    workers.start_held(held)
    assert ran.wait(10)
