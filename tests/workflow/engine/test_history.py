"""The SQLite store: events are visible to other processes while the execution runs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow.engine.errors import ExecutionDoesNotExist
from workflow.engine.history import HistoryStore

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]


def test_another_process_follows_a_running_execution(tmp_path: Path) -> None:
    store_path = tmp_path / "engine.sqlite3"
    process = subprocess.Popen([sys.executable, str(FIXTURES / "slow_run.py"), str(store_path)],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    seen: list[str] = []
    statuses: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        last_id = 0
        while time.monotonic() < deadline:
            if store_path.exists():
                store = HistoryStore(store_path)
                try:
                    record = store.execution("followed")
                except ExecutionDoesNotExist:
                    time.sleep(0.02)
                    continue
                statuses.add(record.status)
                for event in store.events(record.arn, after_id=last_id):
                    seen.append(event.type)
                    last_id = event.id
                if record.status != "RUNNING":
                    break
            time.sleep(0.05)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert "RUNNING" in statuses and "SUCCEEDED" in statuses  # we saw it while it ran
    assert seen == ["ExecutionStarted", "WaitStateEntered", "WaitStateExited", "WaitStateEntered", "WaitStateExited",
                    "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]


def test_store_uses_wal_and_versions_definitions(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "engine.sqlite3")
    assert store._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    arn = "arn:aws:states:us-east-1:000000000000:stateMachine:m"
    assert store.put_state_machine(arn, "m", '{"v": 1}', "role", "STANDARD", 1.0) == 1
    assert store.put_state_machine(arn, "m", '{"v": 1}', "role", "STANDARD", 2.0) == 1
    assert store.put_state_machine(arn, "m", '{"v": 2}', "role", "STANDARD", 3.0) == 2
    assert store.state_machine_definition(arn, 1) == '{"v": 1}'
    with pytest.raises(ExecutionDoesNotExist, match="'nope' does not exist"):
        store.execution("nope")
