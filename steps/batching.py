"""Dynamic micro-batching: requests that arrive together run through the model as one batch.

Under load the server should run big batches; alone, a request must not wait for company
that will never come. The rule here:

- at most `workers` batches run at a time, each on its own thread (so the event loop
  keeps accepting); requests arriving meanwhile queue up and form the next batch;
- when a worker is free and a request is queued, wait for more only while other
  requests are already on their way (their bodies still being read), and never longer
  than `max_wait_ms` past the first; a lone request runs at once;
- never more than `max_batch_size` items in one batch.

Items are whatever `run_batch` takes (the server passes raw image bytes, so decoding
happens on the worker thread too: with one single-threaded worker per core the cores
never have more runnable threads than they can run). `run_batch` returns one result per
item, or an exception instance for an item that failed alone (a corrupt image), which
is raised to that item's caller only. `max_batch_size=1` turns batching off.

A batch that has the server to itself (no other batch running, nothing queued, no body
being read: a lone request on an idle server) goes to `run_alone` instead when one is
given, which runs it on every core: one single-threaded worker would leave the other
cores idle and make a quiet server's latency one core's worth (measured for ResNet-18 at
224x224: 45 ms on one thread, 25-28 ms on two). Work that arrives meanwhile still starts
on a free worker at once rather than waiting for the lone batch: waiting would let two
clients fall into lockstep, each running alone while the other waits. Nor is a batch alone
when more requests were in flight at once in the last `QUIET_SECONDS` than it holds: the
server is busy, merely between two waves of requests whose clients are about to send
again, and a batch run on every core would fight the worker that takes the next ones
(at concurrency 32 on 2 cores, 5% of the batches ran alone before this rule). When the
server runs as several processes (steps/serve_processes.py), "the server" is all of them:
each publishes what it is doing on a shared board (steps/server_board.py), and a batch runs
alone only while every other process is idle too.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from steps.server_board import BoardRow, Field, ServerBoard

Item = TypeVar("Item")
Result = TypeVar("Result")

# How long the most requests in flight at once is remembered: long enough for the clients
# of a wave just answered to send their next requests.
QUIET_SECONDS = 0.02


class MicroBatcher(Generic[Item, Result]):
    """Collects items from many coroutines, runs them in batches, answers each with its result."""

    def __init__(self, run_batch: Callable[[list[Item]], Sequence[Result | BaseException]],
                 max_batch_size: int = 32, max_wait_ms: float = 5.0, workers: int = 1,
                 run_alone: Callable[[list[Item]], Sequence[Result | BaseException]] | None = None,
                 board: BoardRow | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size {max_batch_size} must be at least 1")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms {max_wait_ms} must not be negative")
        if workers < 1:
            raise ValueError(f"workers {workers} must be at least 1")
        self.run_batch = run_batch
        self.run_alone = run_alone
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.workers = workers
        # This process's row of the server's board: the counters /ping reports and what the
        # server's other processes read before running a batch alone.
        self.board = board if board is not None else ServerBoard(1).row(0)
        self._arriving = 0  # requests announced (expecting) and not yet submitted
        self._active = 0  # batches running now
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._free = asyncio.Semaphore(workers)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # requests queued or running (infer_many not yet returned)
        self._peak = 0  # the most requests in flight or arriving at once, lately
        self._peak_until = 0.0  # time.monotonic() when `_peak` is forgotten

    @property
    def batches(self) -> int:
        return self.board.get(Field.BATCHES)

    @property
    def items(self) -> int:
        return self.board.get(Field.ITEMS)

    @property
    def alone_batches(self) -> int:
        """Of `batches`, how many ran through run_alone."""
        return self.board.get(Field.ALONE_BATCHES)

    @property
    def arriving(self) -> int:
        """Requests announced (`expecting`) and not yet submitted."""
        return self._arriving

    def _publish_in_flight(self) -> None:
        self.board.set(Field.IN_FLIGHT, self._in_flight + self._arriving)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        for task in [self._task, *self._running]:
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._executor.shutdown(wait=True)

    def _note_load(self) -> None:
        """Called as a request arrives: remember the most requests at once for QUIET_SECONDS."""
        load, now = self._in_flight + self._arriving, time.monotonic()
        if load >= self._peak or now >= self._peak_until:
            self._peak, self._peak_until = load, now + QUIET_SECONDS
        self._publish_in_flight()
        self.board.set(Field.BUSY_UNTIL_NS, time.monotonic_ns() + int(QUIET_SECONDS * 1e9))

    def expecting(self) -> _Expecting:
        """`with batcher.expecting():` around reading a request: a batch about to start may
        wait for it (up to max_wait_ms) instead of leaving it for the next one."""
        return _Expecting(self)

    async def infer(self, item: Item) -> Result:
        result = (await self.infer_many([item]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def infer_many(self, items: Sequence[Item]) -> list[Result | BaseException]:
        """Queue the items together (they may share a batch); each slot of the answer holds
        the item's result or the exception it failed with."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = []
        for item in items:
            future: asyncio.Future[Result] = loop.create_future()
            self._queue.put_nowait((item, future))
            futures.append(future)
        self._in_flight += 1
        self._note_load()
        try:
            return list(await asyncio.gather(*futures, return_exceptions=True))
        finally:
            self._in_flight -= 1
            self._publish_in_flight()
            for future in futures:
                if not future.done():
                    future.cancel()  # the batcher skips cancelled items

    async def _collect(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        items = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(items) < self.max_batch_size:
            while len(items) < self.max_batch_size and not self._queue.empty():
                items.append(self._queue.get_nowait())
            remaining = deadline - loop.time()
            if len(items) >= self.max_batch_size or self._arriving == 0 or remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return items

    async def _run(self) -> None:
        while True:
            # Wait for a free worker before collecting: while all are busy, requests pile up
            # in the queue and the next batch is that much bigger.
            await self._free.acquire()
            items = [(item, future) for item, future in await self._collect() if not future.done()]
            if not items:
                self._free.release()
                continue
            alone = (self.run_alone is not None and self._active == 0 and self._arriving == 0
                     and self._queue.empty() and (len(items) >= self._peak or time.monotonic() >= self._peak_until)
                     and self.board.others_idle())
            self._active += 1
            self.board.set(Field.ACTIVE, self._active)
            task = asyncio.get_running_loop().create_task(self._execute(items, alone))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, items: list[tuple[Item, asyncio.Future[Result]]], alone: bool) -> None:
        loop = asyncio.get_running_loop()
        run = self.run_alone if alone and self.run_alone is not None else self.run_batch
        try:
            results = await loop.run_in_executor(self._executor, run, [item for item, _ in items])
        except Exception as error:  # noqa: BLE001 - the whole batch failed: every caller hears why
            results = [error] * len(items)
        finally:
            self._active -= 1
            self.board.set(Field.ACTIVE, self._active)
            self._free.release()
        self.board.add(Field.BATCHES)
        self.board.add(Field.ALONE_BATCHES, int(alone))
        self.board.add(Field.ITEMS, len(items))
        for result, (_, future) in zip(results, items, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class _Expecting:
    def __init__(self, batcher: MicroBatcher) -> None:  # type: ignore[type-arg]
        self.batcher = batcher

    def __enter__(self) -> None:
        self.batcher._arriving += 1
        self.batcher._note_load()

    def __exit__(self, *exc_info: object) -> None:
        self.batcher._arriving -= 1
        self.batcher._publish_in_flight()
