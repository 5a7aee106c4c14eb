"""What every process of one server is doing, in memory they all share.

A server running as several processes (steps/serve_processes.py) still answers GET /ping
for the whole server, and still runs a lone request on every core only when the whole
server is idle, not merely the process that took it. Each process writes its own row of a
small table of int64 counters in an anonymous shared mapping made before the processes are
forked; anyone reads all rows. A row has one writer, and an aligned 8-byte store is atomic
on the CPUs this runs on, so no lock is needed: a reader sees each counter either before or
after an update, never torn. Sums read while requests run are a moment's snapshot, which
is all /ping and the lone-request rule need.
"""
from __future__ import annotations

import mmap
import time
from enum import IntEnum

import numpy as np


class Field(IntEnum):
    """The columns of a row."""

    REQUESTS = 0  # invocations received
    ERRORS = 1  # answered with an error status
    BATCHES = 2  # forward passes run
    ITEMS = 3  # images in those batches
    ALONE_BATCHES = 4  # of BATCHES, run on every core (nothing else was running)
    ACTIVE = 5  # batches running now
    IN_FLIGHT = 6  # requests being read, queued or running now
    BUSY_UNTIL_NS = 7  # CLOCK_MONOTONIC ns until which the process counts as busy (it had work lately)


FIELDS = len(Field)
COUNTERS = (Field.REQUESTS, Field.ERRORS, Field.BATCHES, Field.ITEMS, Field.ALONE_BATCHES)


class ServerBoard:
    """`processes` rows of counters; `row(index)` is one process's own."""

    def __init__(self, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError(f"processes {processes} must be at least 1")
        self.processes = processes
        # MAP_SHARED | MAP_ANONYMOUS: inherited by forked children, the same pages for all.
        self._memory = mmap.mmap(-1, processes * FIELDS * 8)
        self.table = np.frombuffer(self._memory, dtype=np.int64).reshape(processes, FIELDS)

    def row(self, index: int) -> BoardRow:
        return BoardRow(self, index)

    def totals(self) -> dict[str, int]:
        """The counters summed over every process, named as /ping reports them."""
        sums = self.table.sum(axis=0)
        return {field.name.lower(): int(sums[field]) for field in COUNTERS}


class BoardRow:
    """One process's row: it writes here and reads the others'."""

    def __init__(self, board: ServerBoard, index: int) -> None:
        if not 0 <= index < board.processes:
            raise ValueError(f"row {index} is not one of the board's {board.processes}")
        self.board = board
        self.index = index
        self.values = board.table[index]

    def add(self, field: Field, amount: int = 1) -> None:
        self.values[field] += amount

    def set(self, field: Field, value: int) -> None:
        self.values[field] = value

    def get(self, field: Field) -> int:
        return int(self.values[field])

    def reset_activity(self) -> None:
        """A restarted process starts with nothing running (the counters carry on)."""
        for field in (Field.ACTIVE, Field.IN_FLIGHT, Field.BUSY_UNTIL_NS):
            self.values[field] = 0

    def others_idle(self) -> bool:
        """True when no other process has a batch running, a request in flight, or had either lately."""
        table, now = self.board.table, time.monotonic_ns()
        for index in range(self.board.processes):
            if index == self.index:
                continue
            row = table[index]
            if row[Field.ACTIVE] or row[Field.IN_FLIGHT] or row[Field.BUSY_UNTIL_NS] > now:
                return False
        return True
