"""The threads background executions run on: kept between executions instead of one new thread each.

    WORKERS.submit(run, name="execution-nightly")   # returns at once; `run()` goes on a worker thread

Why not a new `threading.Thread` per execution: `Thread.start()` waits until the new thread
runs, and that thread then holds the GIL while the execution runs, so StartExecution's
reply waited for the execution; and each new thread opened its own SQLite connection
(the store keeps one per thread). A worker that stays keeps its connection, and handing it
a job is a queue put. Workers that idle for `IDLE_SECONDS` end.

The pool grows as needed (an execution may wait hours for a callback, so there is no cap:
every submitted job starts at once, as with a thread each). Workers are daemon threads; a
job submitted from a non-daemon thread (a script's main thread) still keeps the
interpreter alive at exit until it ends, as its own non-daemon thread did.

A thread can hold what it submits (`holding()`) and start it later (`start_held`): the
API server holds the execution a StartExecution call starts until the reply is written,
so the new worker thread does not compete with the reply for the interpreter.
"""
from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

IDLE_SECONDS = 60.0


class Workers:
    """A growing pool of daemon threads; `submit` never waits for a free one."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self.forget_threads()

    def forget_threads(self) -> None:
        """A pool with no workers (also in a forked child: the parent's workers do not exist there)."""
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], str, threading.Event | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting on the queue that no submitted job has been counted against yet
        self._pinned: set[threading.Event] = set()  # jobs the interpreter's exit waits for
        self._held = threading.local()  # .jobs: what this thread submits inside holding()

    @contextmanager
    def holding(self) -> Iterator[list[tuple[Callable[[], None], str]]]:
        """Within: what this thread submits is kept in the yielded list, not started; see start_held."""
        jobs: list[tuple[Callable[[], None], str]] = []
        outer = getattr(self._held, "jobs", None)
        self._held.jobs = jobs
        try:
            yield jobs
        finally:
            self._held.jobs = outer

    def start_held(self, jobs: list[tuple[Callable[[], None], str]]) -> None:
        """Submits the jobs holding() kept, in order (after the holding() block)."""
        for job, name in jobs:
            self.submit(job, name)

    def submit(self, job: Callable[[], None], name: str) -> None:
        """Runs `job` on a worker thread named `name` (an idle one, else a new one); returns at once."""
        held = getattr(self._held, "jobs", None)
        if held is not None:
            held.append((job, name))
            return
        done = None
        if not threading.current_thread().daemon:
            done = threading.Event()
        with self._lock:
            if done is not None:
                self._pinned.add(done)
            if self._idle:
                self._idle -= 1
                self._jobs.put((job, name, done))
                return
        threading.Thread(target=self._work, args=((job, name, done),), name=name, daemon=True).start()

    def _work(self, first: tuple[Callable[[], None], str, threading.Event | None]) -> None:
        job: tuple[Callable[[], None], str, threading.Event | None] | None = first
        while job is not None:
            self._run(*job)
            job = self._next()

    def _next(self) -> tuple[Callable[[], None], str, threading.Event | None] | None:
        """The next job, or None once none came for `idle_seconds` (the worker then ends)."""
        with self._lock:
            self._idle += 1
        while True:
            try:
                return self._jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:  # a submit that counted on this worker has put its job: take it
                    if self._jobs.empty():
                        self._idle -= 1
                        return None

    def _run(self, job: Callable[[], None], name: str, done: threading.Event | None) -> None:
        thread = threading.current_thread()
        thread.name = name
        try:
            job()
        except BaseException:  # noqa: BLE001 - reported as an uncaught exception of its own thread would be
            threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), thread)))
        finally:
            thread.name = "execution-worker (idle)"
            if done is not None:
                with self._lock:
                    self._pinned.discard(done)
                done.set()

    def drain(self, timeout: float | None = None) -> None:
        """Waits for the jobs submitted from non-daemon threads (run at interpreter exit)."""
        while True:
            with self._lock:
                pinned = next(iter(self._pinned), None)
            if pinned is None:
                return
            if not pinned.wait(timeout):
                return


WORKERS = Workers()
atexit.register(WORKERS.drain)
os.register_at_fork(after_in_child=WORKERS.forget_threads)
