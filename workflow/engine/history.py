"""The owner of the SQLite database: state machines (with versions), executions and their events.

Events are written only by the Recorder (recorder.py), committed in small batches within
milliseconds of happening, so another process (the CLI, the console) can follow a running
execution by polling `events(arn, after_id=...)`. The database runs in WAL mode, so
readers never block the writer; each thread gets its own connection. WAL checkpoints run on
a worker thread every CHECKPOINT_EVERY commits, not inside a caller's commit.

Event rows keep AWS's shape: `id`, `previousEventId`, `type`, `timestamp` and one
`<name>EventDetails` object whose `input`/`output` are JSON text, as GetExecutionHistory
returns them. Two internal columns ride along: `scope` (where in the machine the event
happened: "" at the top level, "Map/0" inside iteration 0 of state Map) and `redrive`
(the redrive generation), which redrive uses to find the states to resume. Event 1,
ExecutionStarted, is not a row: the execution's own row holds all it says (input, start
date, role), so starting an execution is one INSERT and one commit; `events` adds it.

Durability: WAL with synchronous=NORMAL. A commit is in the WAL file (written, not yet
fsynced) before the call that made it returns, so a killed process, even SIGKILL, loses
nothing it acknowledged: the operating system has the pages. A power cut can lose the
last commits since the WAL was last synced (at a checkpoint), never the database's
consistency; synchronous=FULL would fsync every commit (milliseconds each on this disk).

Other engine modules keep their own tables in the same database through `transaction()`
and `query()` (task tokens: callbacks.py; local SNS/SQS messages: messaging.py).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator, Sequence

from workflow.engine.errors import ExecutionAlreadyExists, ExecutionDoesNotExist, StateMachineDoesNotExist
from workflow.engine.values import Json, dumps
from workflow.engine.workers import WORKERS


CHECKPOINT_EVERY = 100  # commits between two WAL checkpoints (SQLite's own: every 1000 pages, in the commit)


class ExecutionStatus(StrEnum):
    """An execution's status, as DescribeExecution names it."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


# The statuses RedriveExecution accepts.
REDRIVABLE = (ExecutionStatus.FAILED, ExecutionStatus.ABORTED, ExecutionStatus.TIMED_OUT)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state_machines (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state_machine_versions (
    arn TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (arn, version)
);
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state_machine_arn TEXT NOT NULL,
    state_machine_version INTEGER NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    start_date REAL NOT NULL,
    stop_date REAL,
    redrive_count INTEGER NOT NULL DEFAULT 0,
    redrive_date REAL,
    owner_pid INTEGER,
    owner_host TEXT,
    stop_requested TEXT,
    role_arn TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_machine ON executions (state_machine_arn, start_date);
-- events: keyed by (execution, id) alone, no rowid b-tree beside it (a store made before keeps its rowid table)
CREATE TABLE IF NOT EXISTS events (
    execution_arn TEXT NOT NULL,
    id INTEGER NOT NULL,
    previous_event_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    timestamp REAL NOT NULL,
    details TEXT,
    scope TEXT NOT NULL DEFAULT '',
    redrive INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (execution_arn, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    execution_arn TEXT NOT NULL,
    key TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (execution_arn, key)
);
"""


@dataclass(frozen=True)
class ExecutionRecord:
    """One row of `executions`, decoded."""

    arn: str
    name: str
    state_machine_arn: str
    state_machine_version: int
    status: ExecutionStatus
    input: Json
    output: Json
    error: str | None
    cause: str | None
    start_date: float
    stop_date: float | None
    redrive_count: int
    redrive_date: float | None
    owner_pid: int | None
    owner_host: str | None
    stop_requested: str | None
    role_arn: str | None = None  # the role it started with (its ExecutionStarted's roleArn); None in stores from before


@dataclass(frozen=True)
class EventRecord:
    """One history event; `details` is the `<name>EventDetails` value (or None)."""

    id: int
    previous_event_id: int
    type: str
    timestamp: float
    details_key: str | None
    details: dict[str, Json] | None
    scope: str
    redrive: int

    def to_aws(self) -> dict[str, Json]:
        """The event as GetExecutionHistory returns it (timestamp as epoch seconds)."""
        event: dict[str, Json] = {"id": self.id, "previousEventId": self.previous_event_id,
                                  "type": self.type, "timestamp": self.timestamp}
        if self.details_key:
            event[self.details_key] = self.details
        return event


class HistoryStore:
    """SQLite persistence for the engine; safe to share between threads of one process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._commits, self._checkpointing = 0, False
        with self._write_lock:
            connection = self._connection()
            connection.executescript(_SCHEMA)
            if "role_arn" not in {row[1] for row in connection.execute("PRAGMA table_info(executions)")}:
                connection.execute("ALTER TABLE executions ADD COLUMN role_arn TEXT")  # a store from before the column

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a worker thread: see _committed
            self._local.connection = connection
        return connection

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._write_lock:
            cursor = self._connection().execute(sql, params)
            self._committed()
            return cursor

    def _committed(self) -> None:
        """Counts a commit (under the write lock); every CHECKPOINT_EVERY-th hands a WAL checkpoint to a worker thread.

        SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1000 pages
        and fsyncs there: milliseconds, on a busy disk tens of them, added to whatever call
        committed. A passive checkpoint on a worker thread keeps that out of StartExecution and
        the executions. Durability is unchanged: a commit is in the WAL either way.
        """
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and not self._checkpointing:
            self._checkpointing = True
            try:
                WORKERS.submit(self._checkpoint, "sqlite-checkpoint")
            except BaseException:
                self._checkpointing = False
                raise

    def _checkpoint(self) -> None:
        try:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # e.g. the database is busy: the WAL keeps the commits, and the next checkpoint moves them
        finally:
            self._checkpointing = False

    # ------------------------------------------------ tables other engine modules keep (callbacks, tags, activities)
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the write lock: a read-check-write no other process can interleave."""
        with self._write_lock:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            self._committed()

    def define(self, schema: str) -> None:
        """Creates another module's tables (CREATE TABLE IF NOT EXISTS ...) in this store (tags.py, activities.py)."""
        with self._write_lock:
            self._connection().executescript(schema)

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One write statement under the store's lock; returns the number of rows it changed."""
        return self._write(sql, params).rowcount

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement, on this thread's connection."""
        return self._connection().execute(sql, params).fetchall()

    # ---------------------------------------------------------------- state machines
    def put_state_machine(self, arn: str, name: str, definition: str, role_arn: str, kind: str, now: float) -> int:
        """Inserts or updates; every distinct definition becomes a new version. Returns the version."""
        with self._write_lock:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute("SELECT version, definition FROM state_machines WHERE arn = ?", (arn,)).fetchone()
                if row is None:  # new, or re-created after a delete: versions are never reused
                    previous = connection.execute("SELECT MAX(version) FROM state_machine_versions WHERE arn = ?", (arn,)).fetchone()
                    version = (previous[0] or 0) + 1
                    connection.execute(
                        "INSERT INTO state_machines VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (arn, name, definition, role_arn, kind, version, now, now),
                    )
                elif row[1] == definition:
                    version = row[0]
                    connection.execute("UPDATE state_machines SET role_arn = ?, updated = ? WHERE arn = ?", (role_arn, now, arn))
                else:
                    version = row[0] + 1
                    connection.execute(
                        "UPDATE state_machines SET definition = ?, role_arn = ?, version = ?, updated = ? WHERE arn = ?",
                        (definition, role_arn, version, now, arn),
                    )
                connection.execute("INSERT OR IGNORE INTO state_machine_versions VALUES (?, ?, ?, ?)", (arn, version, definition, now))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return version

    def state_machine(self, arn_or_name: str) -> dict[str, Json]:
        row = self._connection().execute(
            "SELECT arn, name, definition, role_arn, type, version, created, updated FROM state_machines WHERE arn = ? OR name = ?",
            (arn_or_name, arn_or_name),
        ).fetchone()
        if row is None:
            raise StateMachineDoesNotExist(f"state machine {arn_or_name!r} does not exist in {self.path}")
        keys = ("arn", "name", "definition", "role_arn", "type", "version", "created", "updated")
        return dict(zip(keys, row))

    def delete_state_machine(self, arn: str) -> None:
        """Forgets a state machine; its versions stay, so its executions can still be described."""
        self._write("DELETE FROM state_machines WHERE arn = ?", (arn,))

    def state_machine_definition(self, arn: str, version: int) -> str:
        row = self._connection().execute(
            "SELECT definition FROM state_machine_versions WHERE arn = ? AND version = ?", (arn, version)
        ).fetchone()
        if row is None:
            raise StateMachineDoesNotExist(f"state machine {arn!r} has no version {version}")
        return row[0]

    def list_state_machines(self) -> list[dict[str, Json]]:
        rows = self._connection().execute("SELECT arn, name, type, version, created, updated FROM state_machines ORDER BY created").fetchall()
        return [dict(zip(("arn", "name", "type", "version", "created", "updated"), row)) for row in rows]

    # ---------------------------------------------------------------- executions
    def create_execution(self, arn: str, name: str, machine_arn: str, machine_type: str, input_text: str, start_date: float,
                         owner_pid: int, owner_host: str) -> tuple[int, str] | None:  # fmt: skip
        """Inserts a RUNNING execution (`input_text`: its input as JSON text) of the state machine's current version.

        One statement, one commit: the row takes the version and role the state machine has
        at that moment (returned as (version, role ARN)); None if there is no state machine
        `machine_arn` of type `machine_type` (deleted, or re-created as the other type).
        The row is the execution's ExecutionStarted too: `events` shows it as event 1 (see
        `_started`), so starting writes no event row.
        """
        try:
            with self._write_lock:
                rows = self._connection().execute(
                    "INSERT INTO executions (arn, name, state_machine_arn, state_machine_version, status, input, start_date,"
                    " owner_pid, owner_host, role_arn) SELECT ?, ?, arn, version, ?, ?, ?, ?, ?, role_arn FROM state_machines"
                    " WHERE arn = ? AND type = ? RETURNING state_machine_version, role_arn",
                    (arn, name, ExecutionStatus.RUNNING, input_text, start_date, owner_pid, owner_host, machine_arn, machine_type),
                ).fetchall()  # to the end: the statement (and so its transaction) is done
                self._committed()
        except sqlite3.IntegrityError as error:
            raise ExecutionAlreadyExists(f"an execution named {name!r} already exists: {arn}") from error
        return rows[0] if rows else None

    def finish_execution(self, arn: str, status: ExecutionStatus, now: float, output: str | None = None,
                         error: str | None = None, cause: str | None = None, events: Sequence[tuple[Any, ...]] = (),
                         checkpoints: Sequence[tuple[str, str, Json]] = ()) -> None:
        """Sets how the execution ended, with its last events and checkpoints, in one transaction (the Recorder's call)."""
        with self.transaction() as connection:
            _append(connection, events, checkpoints)
            connection.execute(
                "UPDATE executions SET status = ?, stop_date = ?, output = ?, error = ?, cause = ?, owner_pid = NULL WHERE arn = ?",
                (status, now, output, error, cause, arn),
            )

    def mark_redriven(self, arn: str, now: float) -> int:
        with self._write_lock:
            connection = self._connection()
            connection.execute(
                "UPDATE executions SET status = ?, stop_date = NULL, output = NULL, error = NULL, cause = NULL,"
                " redrive_count = redrive_count + 1, redrive_date = ?, owner_pid = ?, owner_host = ?, stop_requested = NULL"
                " WHERE arn = ?",
                (ExecutionStatus.RUNNING, now, os.getpid(), os.uname().nodename, arn),
            )
            return connection.execute("SELECT redrive_count FROM executions WHERE arn = ?", (arn,)).fetchone()[0]

    def request_stop(self, arn: str, error: str | None, cause: str | None) -> None:
        self._write("UPDATE executions SET stop_requested = ? WHERE arn = ?", (json.dumps({"error": error, "cause": cause}), arn))

    def stop_requested(self, arn: str) -> dict[str, Json] | None:
        row = self._connection().execute("SELECT stop_requested FROM executions WHERE arn = ?", (arn,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    _EXECUTION_COLUMNS = ("arn, name, state_machine_arn, state_machine_version, status, input, output, error, cause,"
                          " start_date, stop_date, redrive_count, redrive_date, owner_pid, owner_host, stop_requested, role_arn")

    def _decode(self, row: tuple[Any, ...], decode_json: bool = True) -> ExecutionRecord:
        values = list(row)
        values[4] = ExecutionStatus(values[4])
        if decode_json:
            values[5] = json.loads(values[5])
            values[6] = json.loads(values[6]) if values[6] is not None else None
        return ExecutionRecord(*values)

    def execution(self, arn_or_name: str, decode_json: bool = True) -> ExecutionRecord:
        """The execution by ARN (or by name, when that is unambiguous); decode_json=False keeps input and output as JSON text."""
        connection = self._connection()
        row = connection.execute(f"SELECT {self._EXECUTION_COLUMNS} FROM executions WHERE arn = ?", (arn_or_name,)).fetchone()
        if row is None:
            rows = connection.execute(
                f"SELECT {self._EXECUTION_COLUMNS} FROM executions WHERE name = ? ORDER BY start_date DESC", (arn_or_name,)
            ).fetchall()
            if len(rows) > 1:
                raise ExecutionDoesNotExist(f"execution name {arn_or_name!r} is ambiguous ({len(rows)} executions); use the ARN")
            row = rows[0] if rows else None
        if row is None:
            raise ExecutionDoesNotExist(f"execution {arn_or_name!r} does not exist in {self.path}")
        return self._decode(row, decode_json)

    def list_executions(self, state_machine_arn: str | None = None, status: str | None = None, limit: int | None = None) -> list[ExecutionRecord]:
        sql = f"SELECT {self._EXECUTION_COLUMNS} FROM executions"
        clauses, params = [], []
        if state_machine_arn:
            clauses.append("state_machine_arn = ?")
            params.append(state_machine_arn)
        if status:
            clauses.append("status = ?")
            params.append(status)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY start_date DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._decode(row) for row in self._connection().execute(sql, params).fetchall()]

    # ---------------------------------------------------------------- events
    def append_batch(self, events: list[tuple[Any, ...]], checkpoints: list[tuple[str, str, Json]]) -> None:
        """Appends events (rows of the `events` table, details already JSON text) and checkpoints in one transaction.

        The Recorder (recorder.py) is its only caller: the one writer of history events.
        """
        with self.transaction() as connection:
            _append(connection, events, checkpoints)

    def events(self, execution_arn: str, after_id: int = 0, reverse: bool = False) -> list[EventRecord]:
        """The events after `after_id`, in id order (or reversed); event 1, ExecutionStarted, included (see `_started`)."""
        connection = self._connection()
        rows = connection.execute(
            "SELECT id, previous_event_id, type, timestamp, details, scope, redrive FROM events"
            f" WHERE execution_arn = ? AND id > ? ORDER BY id {'DESC' if reverse else 'ASC'}",
            (execution_arn, after_id),
        ).fetchall()
        events = [_event(row) for row in rows]
        edge = (events[-1] if reverse else events[0]) if events else None
        if after_id < 1 and (edge is None or edge.id != 1):  # a store from before kept ExecutionStarted as a row
            started = self._started(connection, execution_arn)
            if started is not None:
                events = events + [started] if reverse else [started] + events
        return events

    @staticmethod
    def _started(connection: sqlite3.Connection, execution_arn: str) -> EventRecord | None:
        """ExecutionStarted, read from the execution's row (what create_execution wrote instead of an event row)."""
        row = connection.execute("SELECT input, start_date, role_arn FROM executions WHERE arn = ?", (execution_arn,)).fetchone()
        if row is None or row[2] is None:
            return None
        details = {"input": dumps(json.loads(row[0])), "inputDetails": {"truncated": False}, "roleArn": row[2]}
        return EventRecord(1, 0, "ExecutionStarted", row[1], "executionStartedEventDetails", details, "", 0)

    def last_event_id(self, execution_arn: str) -> int:
        """The id of the execution's latest event (1, its ExecutionStarted, until it has others)."""
        row = self._connection().execute("SELECT MAX(id) FROM events WHERE execution_arn = ?", (execution_arn,)).fetchone()
        return row[0] or 1

    # ---------------------------------------------------------------- checkpoints (Map/Parallel results, for redrive)
    def checkpoints(self, execution_arn: str, prefix: str) -> dict[str, Json]:
        rows = self._connection().execute(
            "SELECT key, output FROM checkpoints WHERE execution_arn = ? AND substr(key, 1, ?) = ?",
            (execution_arn, len(prefix), prefix),
        ).fetchall()
        return {key: json.loads(output) for key, output in rows}

    def clear_checkpoints(self, execution_arn: str, prefix: str) -> None:
        self._write("DELETE FROM checkpoints WHERE execution_arn = ? AND substr(key, 1, ?) = ?", (execution_arn, len(prefix), prefix))


def _append(connection: sqlite3.Connection, events: Sequence[tuple[Any, ...]], checkpoints: Sequence[tuple[str, str, Json]]) -> None:
    """Inserts event rows and checkpoints within the caller's transaction."""
    if events:
        connection.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", events)
    if checkpoints:
        connection.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                               [(arn, key, json.dumps(output)) for arn, key, output in checkpoints])


def _event(row: tuple[Any, ...]) -> EventRecord:
    event_id, previous, event_type, timestamp, payload, scope, redrive = row
    details_key, details = None, None
    if payload:
        details_key, details = next(iter(json.loads(payload).items()))
    return EventRecord(event_id, previous, event_type, timestamp, details_key, details, scope, redrive)
