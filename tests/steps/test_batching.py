"""Micro-batching: together-arriving requests share a forward pass; a lone one does not wait."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from steps.batching import MicroBatcher


class RecordingModel:
    """Doubles its input and records each batch size; optionally slow, like a real model."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return batch.reshape(len(batch), -1) * 2


async def ready(value: float, delay: float = 0.0) -> np.ndarray:
    await asyncio.sleep(delay)
    return np.full((1, 2, 2), value, dtype=np.float32)


async def with_batcher(model: RecordingModel, max_batch_size: int, max_wait_ms: float, body):  # noqa: ANN001, ANN202
    batcher = MicroBatcher(model, max_batch_size, max_wait_ms)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()


def test_requests_arriving_together_run_as_one_batch_and_get_their_own_rows() -> None:
    model = RecordingModel()

    async def body(batcher: MicroBatcher) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.infer(ready(index, 0.001 * index)) for index in range(8)))

    rows = asyncio.run(with_batcher(model, 32, 200.0, body))
    assert [float(row[0]) for row in rows] == [2.0 * index for index in range(8)]
    assert model.sizes == [8]
    assert all(name.startswith("inference") for name in model.threads)


def test_a_lone_request_does_not_wait_for_the_batch_window() -> None:
    model = RecordingModel()

    async def body(batcher: MicroBatcher) -> float:
        started = time.perf_counter()
        await batcher.infer(ready(1.0))
        return time.perf_counter() - started

    elapsed = asyncio.run(with_batcher(model, 32, 10_000.0, body))
    assert model.sizes == [1] and elapsed < 5.0  # far less than the 10 s window: it did not wait


def test_batches_never_exceed_the_size_limit_and_queue_while_the_model_runs() -> None:
    model = RecordingModel(seconds=0.05)

    async def body(batcher: MicroBatcher) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.infer(ready(index)) for index in range(20)))

    rows = asyncio.run(with_batcher(model, 6, 50.0, body))
    assert len(rows) == 20 and max(model.sizes) <= 6 and sum(model.sizes) == 20
    assert len(model.sizes) < 20


def test_batch_size_one_turns_batching_off() -> None:
    model = RecordingModel()

    async def body(batcher: MicroBatcher) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.infer(ready(index)) for index in range(5)))

    asyncio.run(with_batcher(model, 1, 50.0, body))
    assert model.sizes == [1] * 5


def test_a_failing_forward_pass_fails_its_requests_and_the_next_batch_still_runs() -> None:
    calls = {"count": 0}

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("out of memory")
        return batch.reshape(len(batch), -1)

    async def body(batcher: MicroBatcher) -> np.ndarray:
        with pytest.raises(RuntimeError, match="out of memory"):
            await batcher.infer(ready(1.0))
        return await batcher.infer(ready(3.0))

    row = asyncio.run(with_batcher(flaky, 4, 1.0, body))  # type: ignore[arg-type]
    assert float(row[0]) == 3.0


def test_a_failed_decode_is_not_counted_as_arriving() -> None:
    async def failing() -> np.ndarray:
        raise ValueError("bad image")

    async def body(batcher: MicroBatcher) -> int:
        with pytest.raises(ValueError, match="bad image"):
            await batcher.infer(failing())
        return batcher.arriving

    assert asyncio.run(with_batcher(RecordingModel(), 4, 1.0, body)) == 0
