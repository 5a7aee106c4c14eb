"""The SQLite store: events are visible to other processes while the execution runs."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow.engine.errors import ExecutionDoesNotExist
from workflow.engine.history import CHECKPOINT_EVERY, HistoryStore

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


def _main_file_rows(store_path: Path, copy: Path) -> int:
    """Rows of `state_machines` in the database file alone, without its WAL: what checkpoints moved there."""
    copy.write_bytes(store_path.read_bytes())
    connection = sqlite3.connect(copy)
    try:
        if connection.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'state_machines'").fetchone()[0] == 0:
            return 0  # not even the schema has left the WAL
        return connection.execute("SELECT COUNT(*) FROM state_machines").fetchone()[0]
    finally:
        connection.close()


def test_the_wal_is_checkpointed_off_the_committing_thread_every_so_many_commits(tmp_path: Path) -> None:
    store_path = tmp_path / "engine.sqlite3"
    store = HistoryStore(store_path)
    row = "INSERT INTO state_machines VALUES (?, ?, '{}', 'role', 'STANDARD', 1, 0, 0)"
    for index in range(CHECKPOINT_EVERY - 1):
        store.write(row, (f"arn-{index}", f"name-{index}"))
    assert _main_file_rows(store_path, tmp_path / "before.sqlite3") == 0  # all still in the WAL: no checkpoint in a commit
    store.write(row, ("arn-last", "name-last"))
    deadline = time.monotonic() + 30
    while _main_file_rows(store_path, tmp_path / "after.sqlite3") < CHECKPOINT_EVERY:
        assert time.monotonic() < deadline, "no checkpoint after CHECKPOINT_EVERY commits"
        time.sleep(0.02)


# A store made before executions had a role_arn column and before ExecutionStarted came from the row.
_OLD_EXECUTIONS = """
CREATE TABLE executions (arn TEXT PRIMARY KEY, name TEXT NOT NULL, state_machine_arn TEXT NOT NULL,
    state_machine_version INTEGER NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT, cause TEXT,
    start_date REAL NOT NULL, stop_date REAL, redrive_count INTEGER NOT NULL DEFAULT 0, redrive_date REAL, owner_pid INTEGER,
    owner_host TEXT, stop_requested TEXT);
CREATE TABLE events (execution_arn TEXT NOT NULL, id INTEGER NOT NULL, previous_event_id INTEGER NOT NULL, type TEXT NOT NULL,
    timestamp REAL NOT NULL, details TEXT, scope TEXT NOT NULL DEFAULT '', redrive INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (execution_arn, id));
INSERT INTO executions (arn, name, state_machine_arn, state_machine_version, status, input, output, start_date, stop_date)
    VALUES ('arn:old', 'old', 'arn:m', 1, 'SUCCEEDED', '{"a": 1}', '{"a": 1}', 10.0, 11.0);
INSERT INTO events VALUES ('arn:old', 1, 0, 'ExecutionStarted', 10.0,
    '{"executionStartedEventDetails": {"input": "{\\"a\\":1}", "inputDetails": {"truncated": false}, "roleArn": "r"}}', '', 0);
INSERT INTO events VALUES ('arn:old', 2, 1, 'ExecutionSucceeded', 11.0, NULL, '', 0);
"""


def test_execution_started_is_the_row_and_a_store_from_before_reads_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "engine.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(_OLD_EXECUTIONS)
    store = HistoryStore(path)  # adds the role_arn column
    assert [(event.id, event.type) for event in store.events("arn:old")] == [(1, "ExecutionStarted"), (2, "ExecutionSucceeded")]
    assert [event.id for event in store.events("arn:old", reverse=True)] == [2, 1]
    store.put_state_machine("arn:m", "m", '{"v": 1}', "arn:role", "STANDARD", 1.0)
    assert store.create_execution("arn:new", "new", "arn:m", "STANDARD", '{"b": 2}', 20.0, 1, "host") == (1, "arn:role")
    assert store.create_execution("arn:other", "other", "arn:m", "EXPRESS", "{}", 20.0, 1, "host") is None  # not of that type
    assert store._connection().execute("SELECT COUNT(*) FROM events WHERE execution_arn = 'arn:new'").fetchone()[0] == 0
    started = store.events("arn:new")
    assert [(event.id, event.previous_event_id, event.type, event.timestamp) for event in started] == [(1, 0, "ExecutionStarted", 20.0)]
    assert started[0].details == {"input": '{"b":2}', "inputDetails": {"truncated": False}, "roleArn": "arn:role"}
    assert store.events("arn:new", after_id=1) == [] and store.last_event_id("arn:new") == 1
