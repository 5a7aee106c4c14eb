"""One server, several processes: the pre-fork model (what gunicorn does for a WSGI app).

Why: the model's work (JPEG decode, ONNX Runtime) releases the GIL, but the HTTP event loop
and the Python around each batch do not. In one process with an inference thread per core,
they take turns with the GIL, and at concurrency 32 on 2 cores 15-20% of the cores stayed
idle; one process per core, each with its own event loop and inference thread, used 1.95
of the 2 cores and answered 18% more requests at concurrency 32, 25% more at 8
(benchmarks/bench_serve.py; the figures are in the README).

How:
- the parent binds the port (so port 0 resolves once, to one port) on a socket it never
  listens on: it keeps the port reserved while a child restarts; it checks first that no
  one holds the port, since SO_REUSEPORT would otherwise share it with another such server;
- it forks the children before any ONNX Runtime session or event loop exists; each binds its
  own SO_REUSEPORT socket to that port, loads the model, then listens: the kernel spreads
  new connections over the listening ones;
- the server is ready when every child has said so on its pipe; a child that fails to start
  fails the server with its error; a child that dies later is replaced;
- SIGTERM or SIGINT (or the lifeline file disappearing) stops the children gracefully
  (SIGTERM: they finish in-flight requests), SIGKILL after `grace` seconds;
- a child dies with its parent (PR_SET_PDEATHSIG), so even SIGKILL on the parent leaves none.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("steps.serve")

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
LIFELINE_SECONDS = 2.0  # how often the lifeline file is looked for

# child(index, bound socket, ready): serve until SIGTERM; call ready() once serving.
Child = Callable[[int, socket.socket, Callable[[], None]], None]


class StartupError(RuntimeError):
    """A process of the server could not start (its own error message)."""


def bound_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to (host, port), not listening yet: the server listens once its model
    is loaded (aiohttp's site calls listen), so nobody connects to a port that cannot answer."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Running:
    index: int
    pid: int
    started: float


class Prefork:
    """Runs `processes` children of one server on one port; see the module docstring."""

    def __init__(self, host: str, port: int, processes: int, lifeline: Path | None = None, grace: float = 12.0,
                 start_timeout: float = 300.0) -> None:
        if processes < 2:
            raise ValueError(f"a pre-fork server needs at least 2 processes, not {processes}")
        self.host = host
        self.processes = processes
        self.lifeline = lifeline
        self.grace = grace
        self.start_timeout = start_timeout
        # SO_REUSEPORT would let this server share a port with another pre-fork server (same
        # user) without a word: bind once without it first, which fails if the port is taken.
        with bound_socket(host, port) as probe:
            self.port: int = probe.getsockname()[1]
        self._reserved = bound_socket(host, self.port, reuse_port=True)
        self._children: dict[int, _Running] = {}  # pid -> child

    def run(self, child: Child, on_ready: Callable[[int], None]) -> None:
        """Start the children, call on_ready(port) once all serve, supervise until told to stop."""
        watched = {*STOP_SIGNALS, signal.SIGCHLD}
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        try:
            try:
                # Forked together, so that they load the model at the same time.
                starting = [self._fork(index, child, previous_mask) for index in range(self.processes)]
                for pid, pipe in starting:
                    self._await_ready(pid, pipe)
            except BaseException:
                self._stop_children()
                raise
            on_ready(self.port)
            self._supervise(child, previous_mask, watched)
        finally:
            self._stop_children()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            self._reserved.close()

    # ------------------------------------------------------------------------ children

    def _start(self, index: int, child: Child, mask: set[signal.Signals]) -> None:
        """Fork child `index` and wait until it serves (StartupError if it cannot)."""
        self._await_ready(*self._fork(index, child, mask))

    def _fork(self, index: int, child: Child, mask: set[signal.Signals]) -> tuple[int, int]:
        """Start child `index`; returns its pid and the read end of its pipe."""
        read_end, write_end = os.pipe()
        parent = os.getpid()
        sys.stdout.flush()  # or what is buffered would be written by the child as well
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            self._run_child(index, child, mask, parent, write_end)
        os.close(write_end)
        self._children[pid] = _Running(index, pid, time.monotonic())
        return pid, read_end

    def _await_ready(self, pid: int, pipe: int) -> None:
        """Wait until child `pid` serves; StartupError with its message if it cannot."""
        try:
            message = self._wait_ready(pipe, pid)
        finally:
            os.close(pipe)
        if message != "ready":
            self._children.pop(pid, None)
            _reap(pid, timeout=self.grace)
            raise StartupError(message)

    def _run_child(self, index: int, child: Child, mask: set[signal.Signals], parent: int, pipe: int) -> None:
        code = 0
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for signum in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            self._reserved.close()
            sock = bound_socket(self.host, self.port, reuse_port=True)
            child(index, sock, lambda: os.write(pipe, b"ready"))
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
            code = 2
            try:
                os.write(pipe, str(error).encode()[:4000])
            except OSError:
                pass
        finally:
            logging.shutdown()
            os._exit(code)

    def _wait_ready(self, pipe: int, pid: int) -> str:
        """The child's first word on its pipe: "ready", or its error; a silent exit is an error too."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                return f"process did not start within {self.start_timeout:g} s"
            readable, _, _ = select.select([pipe], [], [], min(remaining, 1.0))
            if readable:
                data = os.read(pipe, 4096)
                if data:
                    return data.decode(errors="replace")
                finished, status = os.waitpid(pid, 0)
                return f"process exited during start-up ({_describe_status(status)})"

    def _supervise(self, child: Child, mask: set[signal.Signals], watched: set[signal.Signals]) -> None:
        next_lifeline = time.monotonic() + LIFELINE_SECONDS
        while True:
            received = signal.sigtimedwait(watched, LIFELINE_SECONDS)
            if received is not None and received.si_signo in STOP_SIGNALS:
                log.info("%s: stopping %d processes", signal.Signals(received.si_signo).name, len(self._children))
                return
            ended = self._reap_children()
            if ended and signal.sigpending() & STOP_SIGNALS:  # Ctrl-C reached the children first
                return
            for pid, status in ended:
                running = self._children.pop(pid)
                log.warning("server process %d of %d (pid %d) %s after %.0f s; starting another", running.index + 1,
                            self.processes, pid, _describe_status(status), time.monotonic() - running.started)
                self._start(running.index, child, mask)
            if self.lifeline is not None and time.monotonic() >= next_lifeline:
                next_lifeline = time.monotonic() + LIFELINE_SECONDS
                if not self.lifeline.exists():
                    log.warning("lifeline %s is gone; shutting down", self.lifeline)
                    return

    def _reap_children(self) -> list[tuple[int, int]]:
        ended = []
        for pid in list(self._children):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                ended.append((pid, status))
        return ended

    def _stop_children(self) -> None:
        """SIGTERM to every child, SIGKILL to those still there after `grace` seconds."""
        for pid in self._children:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for pid in list(self._children):
            if not _reap(pid, timeout=max(0.0, deadline - time.monotonic())):
                _signal(pid, signal.SIGKILL)
                _reap(pid, timeout=5.0)
            self._children.pop(pid, None)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reap(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for child `pid` to end; True once it is reaped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if finished:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
