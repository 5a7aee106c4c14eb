"""Dynamic micro-batching: requests that arrive together run through the model as one batch.

A forward pass of N images costs far less than N passes of one image, so under load the
server should run big batches; alone, a request must not wait for company that will
never come. The rule here:

- one batch runs at a time (on its own thread, so the event loop keeps accepting);
  requests arriving meanwhile queue up and form the next batch;
- when the model is idle and a request is queued, wait for more only while other
  requests are already on their way (received, still decoding), and never longer than
  `max_wait_ms` past the first; a lone request runs at once;
- never more than `max_batch_size` images in one batch.

`max_batch_size=1` turns batching off, which the benchmark uses as its baseline.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Collects (3, H, W) tensors from many coroutines and answers each with its row."""

    def __init__(self, run_batch: Callable[[np.ndarray], np.ndarray], max_batch_size: int = 32,
                 max_wait_ms: float = 5.0) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size {max_batch_size} must be at least 1")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms {max_wait_ms} must not be negative")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.arriving = 0  # requests received and still being decoded
        self.batches = 0
        self.items = 0
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def infer(self, tensor: Awaitable[np.ndarray]) -> np.ndarray:
        """Await the tensor (its decoding), queue it, and return its output row.

        While the tensor is still being produced the batcher knows it is coming, so a batch
        about to start can wait for it (up to max_wait_ms) instead of leaving it for the next.
        """
        self.arriving += 1
        try:
            ready = await tensor
        finally:
            self.arriving -= 1
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((ready, future))
        return await future

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        items = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(items) < self.max_batch_size:
            while len(items) < self.max_batch_size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            remaining = deadline - loop.time()
            if len(items) >= self.max_batch_size or self.arriving == 0 or remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [(tensor, future) for tensor, future in await self._collect() if not future.done()]
            if not items:
                continue
            try:
                batch = np.stack([tensor for tensor, _ in items])
                output = await loop.run_in_executor(self._executor, self.run_batch, batch)
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.items += len(items)
            for row, (_, future) in zip(output, items, strict=True):
                if not future.done():
                    future.set_result(row)
