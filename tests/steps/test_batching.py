"""Micro-batching: together-arriving requests share a forward pass; a lone one does not wait."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from steps.batching import MicroBatcher
from steps.server_board import Field, ServerBoard


class RecordingModel:
    """Doubles its input and records each batch size; optionally slow, like a real model."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, items: list[float]) -> list[float | BaseException]:
        self.sizes.append(len(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return [ValueError(f"bad item {item}") if item < 0 else item * 2 for item in items]


async def later(batcher: MicroBatcher, value: float, delay: float) -> float:
    """A request whose body takes `delay` seconds to arrive."""
    with batcher.expecting():
        await asyncio.sleep(delay)
    return await batcher.infer(value)


async def with_batcher(model: RecordingModel, max_batch_size: int, max_wait_ms: float, body, workers: int = 1):  # noqa: ANN001, ANN202
    batcher = MicroBatcher(model, max_batch_size, max_wait_ms, workers)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()


def test_requests_arriving_together_run_as_one_batch_and_get_their_own_rows() -> None:
    model = RecordingModel()

    async def body(batcher: MicroBatcher) -> list[float]:
        return await asyncio.gather(*(later(batcher, index, 0.001 * index) for index in range(8)))

    rows = asyncio.run(with_batcher(model, 32, 200.0, body))
    assert rows == [2.0 * index for index in range(8)]
    assert model.sizes == [8]
    assert all(name.startswith("inference") for name in model.threads)


def test_a_lone_request_does_not_wait_for_the_batch_window() -> None:
    model = RecordingModel()

    async def body(batcher: MicroBatcher) -> float:
        started = time.perf_counter()
        await batcher.infer(1.0)
        return time.perf_counter() - started

    elapsed = asyncio.run(with_batcher(model, 32, 10_000.0, body))
    assert model.sizes == [1] and elapsed < 5.0  # far less than the 10 s window: it did not wait


def test_batches_never_exceed_the_size_limit_and_queue_while_the_model_runs() -> None:
    model = RecordingModel(seconds=0.05)

    async def body(batcher: MicroBatcher) -> list[float]:
        return await asyncio.gather(*(batcher.infer(index) for index in range(20)))

    rows = asyncio.run(with_batcher(model, 6, 50.0, body))
    assert len(rows) == 20 and max(model.sizes) <= 6 and sum(model.sizes) == 20
    assert len(model.sizes) < 20


def test_batch_size_one_turns_batching_off() -> None:
    model = RecordingModel()

    async def body(batcher: MicroBatcher) -> list[float]:
        return await asyncio.gather(*(batcher.infer(index) for index in range(5)))

    asyncio.run(with_batcher(model, 1, 50.0, body))
    assert model.sizes == [1] * 5


def test_two_workers_run_two_batches_at_once() -> None:
    model = RecordingModel(seconds=0.2)

    async def body(batcher: MicroBatcher) -> list[float]:
        return await asyncio.gather(*(batcher.infer(index) for index in range(4)))

    asyncio.run(with_batcher(model, 2, 0.0, body, workers=2))
    assert sorted(model.sizes) == [2, 2] and len(model.threads) == 2


def test_an_item_that_fails_alone_fails_only_its_request() -> None:
    async def body(batcher: MicroBatcher) -> list[float | BaseException]:
        return await batcher.infer_many([1.0, -1.0, 3.0])

    results = asyncio.run(with_batcher(RecordingModel(), 8, 1.0, body))
    assert results[0] == 2.0 and isinstance(results[1], ValueError) and results[2] == 6.0


def test_a_failing_forward_pass_fails_its_requests_and_the_next_batch_still_runs() -> None:
    calls = {"count": 0}

    def flaky(items: list[float]) -> list[float]:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("out of memory")
        return list(items)

    async def body(batcher: MicroBatcher) -> float:
        with pytest.raises(RuntimeError, match="out of memory"):
            await batcher.infer(1.0)
        return await batcher.infer(3.0)

    assert asyncio.run(with_batcher(flaky, 4, 1.0, body)) == 3.0  # type: ignore[arg-type]


def test_a_request_that_fails_while_arriving_is_no_longer_expected() -> None:
    async def body(batcher: MicroBatcher) -> int:
        with pytest.raises(ValueError, match="body too large"):
            with batcher.expecting():
                raise ValueError("body too large")
        return batcher.arriving

    assert asyncio.run(with_batcher(RecordingModel(), 4, 1.0, body)) == 0


def test_a_batch_with_the_batcher_to_itself_runs_alone_whatever_its_size() -> None:
    narrow, wide = RecordingModel(), RecordingModel()

    async def body(batcher: MicroBatcher) -> list[float]:
        first = await batcher.infer(1.0)  # nothing else in flight: it has the machine to itself
        # one batch of four, and again nothing beside it
        together = await asyncio.gather(*(later(batcher, index, 0.001 * index) for index in range(4)))
        return [first, *together]

    async def run() -> list[float]:
        batcher = MicroBatcher(narrow, 32, 200.0, workers=2, run_alone=wide)
        batcher.start()
        try:
            return await body(batcher)
        finally:
            await batcher.stop()

    assert asyncio.run(run()) == [2.0, 0.0, 2.0, 4.0, 6.0]
    assert wide.sizes == [1, 4] and narrow.sizes == []


def test_work_arriving_during_a_lone_batch_starts_at_once_on_a_free_worker() -> None:
    """No lockstep: the second request must not wait for the lone one to finish."""
    slow_alone, narrow = RecordingModel(seconds=0.5), RecordingModel()

    async def run() -> tuple[float, float]:
        batcher = MicroBatcher(narrow, 32, 0.0, workers=2, run_alone=slow_alone)
        batcher.start()
        try:
            lone = asyncio.ensure_future(batcher.infer(1.0))
            await asyncio.sleep(0.05)  # the lone batch is running now
            started = time.perf_counter()
            await batcher.infer(2.0)
            second = time.perf_counter() - started
            await lone
            return second, batcher.alone_batches
        finally:
            await batcher.stop()

    second, alone_batches = asyncio.run(run())
    assert slow_alone.sizes == [1] and narrow.sizes == [1] and alone_batches == 1
    assert second < 0.4  # it ran beside the 0.5 s lone batch, not after it


def test_a_batch_right_after_a_wave_of_answers_is_not_alone_but_one_after_a_pause_is() -> None:
    """Under load the server is idle only between two waves: running on every core then would
    fight the worker that takes the rest of the wave."""
    narrow, wide = RecordingModel(), RecordingModel()

    async def run() -> int:
        batcher = MicroBatcher(narrow, 32, 0.0, workers=2, run_alone=wide)
        batcher.start()
        try:
            await asyncio.gather(*(batcher.infer(float(index)) for index in range(4)))  # a wave: 4 answered
            await batcher.infer(5.0)  # comes back at once: not alone
            await asyncio.sleep(0.05)  # past QUIET_SECONDS: the server is quiet again
            await batcher.infer(6.0)
            return batcher.alone_batches
        finally:
            await batcher.stop()

    assert asyncio.run(run()) == 2
    assert wide.sizes == [4, 1]  # the wave (nothing answered before it) and the request after the pause
    assert narrow.sizes == [1]  # the request right after the wave


def test_one_client_sending_back_to_back_keeps_running_alone() -> None:
    """Concurrency 1 at full speed is still one request at a time: each has the cores to itself."""
    narrow, wide = RecordingModel(), RecordingModel()

    async def run() -> int:
        batcher = MicroBatcher(narrow, 32, 5.0, workers=2, run_alone=wide)
        batcher.start()
        try:
            for index in range(20):
                await later(batcher, float(index), 0.0)  # the next request as soon as the last is answered
            return batcher.alone_batches
        finally:
            await batcher.stop()

    assert asyncio.run(run()) == 20
    assert wide.sizes == [1] * 20 and narrow.sizes == []


def test_a_batch_is_not_alone_while_another_process_of_the_server_has_work() -> None:
    """Several processes serve one port (steps/serve_processes.py): a lone request in this one
    must not take every core while a sibling is running a batch, and its row says what it does."""
    narrow, wide = RecordingModel(), RecordingModel()
    board = ServerBoard(2)

    async def run() -> tuple[int, int]:
        batcher = MicroBatcher(narrow, 32, 0.0, workers=1, run_alone=wide, board=board.row(0))
        batcher.start()
        try:
            board.row(1).set(Field.ACTIVE, 1)  # the sibling is running a batch
            await batcher.infer(1.0)
            board.row(1).set(Field.ACTIVE, 0)  # and now it is idle
            await batcher.infer(2.0)
            return batcher.alone_batches, board.totals()["items"]
        finally:
            await batcher.stop()

    assert asyncio.run(run()) == (1, 2)
    assert narrow.sizes == [1] and wide.sizes == [1]
    assert board.row(0).get(Field.IN_FLIGHT) == 0 and board.row(0).get(Field.ACTIVE) == 0
