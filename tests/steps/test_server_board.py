"""The board a multi-process server shares: each process writes its row, everyone reads all."""
from __future__ import annotations

import os
import time

import pytest

from steps.server_board import Field, ServerBoard


def test_totals_sum_every_row() -> None:
    board = ServerBoard(3)
    board.row(0).add(Field.REQUESTS, 5)
    board.row(2).add(Field.REQUESTS, 2)
    board.row(1).add(Field.ITEMS, 7)
    board.row(1).add(Field.ERRORS)
    assert board.totals() == {"requests": 7, "errors": 1, "batches": 0, "items": 7, "alone_batches": 0}


def test_a_forked_process_writes_what_the_parent_reads() -> None:
    board = ServerBoard(2)
    pid = os.fork()
    if pid == 0:
        board.row(1).add(Field.BATCHES, 3)
        board.row(1).set(Field.ACTIVE, 1)
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.totals()["batches"] == 3
    assert board.row(1).get(Field.ACTIVE) == 1 and not board.row(0).others_idle()


@pytest.mark.parametrize(("field", "value"), [(Field.ACTIVE, 1), (Field.IN_FLIGHT, 2)])
def test_another_process_with_work_is_not_idle(field: Field, value: int) -> None:
    board = ServerBoard(2)
    assert board.row(0).others_idle()
    board.row(1).set(field, value)
    assert not board.row(0).others_idle()
    assert board.row(1).others_idle()  # a process's own work does not count against itself


def test_a_process_busy_lately_counts_as_busy_until_its_quiet_time_passes() -> None:
    board = ServerBoard(2)
    board.row(1).set(Field.BUSY_UNTIL_NS, time.monotonic_ns() + 50_000_000)
    assert not board.row(0).others_idle()
    time.sleep(0.06)
    assert board.row(0).others_idle()


def test_a_restarted_process_starts_idle_and_keeps_its_counters() -> None:
    row = ServerBoard(2).row(1)
    row.add(Field.REQUESTS, 4)
    row.set(Field.ACTIVE, 1)
    row.set(Field.IN_FLIGHT, 3)
    row.reset_activity()
    assert (row.get(Field.REQUESTS), row.get(Field.ACTIVE), row.get(Field.IN_FLIGHT)) == (4, 0, 0)


def test_rows_outside_the_board_are_refused() -> None:
    with pytest.raises(ValueError, match="row 2"):
        ServerBoard(2).row(2)
    with pytest.raises(ValueError, match="at least 1"):
        ServerBoard(0)
