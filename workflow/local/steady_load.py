"""A steady InvokeEndpoint loop with a per-request record, for rollout tests and benchmarks.

    with SteadyLoad(runtime_url, "production", jpeg, concurrency=4) as load:
        ...                                   # update the endpoint meanwhile
    load.results                              # [Answer(started, ended, status, variant), ...]

Why not the load-test Lambda's driver (lambdas/load_test): it keeps aggregates (a latency
histogram, error counts), while a rollout is judged on the timeline: which fleet answered
each request and when the first bad answer came. Each worker is a thread with one
keep-alive http.client connection to the runtime router; requests are not retried.
"""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    started: float  # time.time()
    ended: float
    status: int  # HTTP status from the router; 0: the connection failed
    variant: str  # x-Amzn-Invoked-Production-Variant ("" on errors)


class SteadyLoad:
    """`concurrency` closed-loop workers invoking one endpoint until stopped."""

    def __init__(self, url: str, endpoint: str, body: bytes, concurrency: int = 4,
                 content_type: str = "image/jpeg") -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"/endpoints/{endpoint}/invocations"
        self.body = body
        self.headers = {"Content-Type": content_type, "Accept": "application/json"}
        self.concurrency = concurrency
        self.results: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(concurrency)]

    def _work(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        while not self._stop.is_set():
            started = time.time()
            try:
                connection.request("POST", self.path, self.body, self.headers)
                response = connection.getresponse()
                response.read()
                answer = Answer(started, time.time(), response.status,
                                response.getheader("x-Amzn-Invoked-Production-Variant") or "")
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                answer = Answer(started, time.time(), 0, "")
            self.results.append(answer)  # list.append is atomic under the GIL
        connection.close()

    def start(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return sorted(self.results, key=lambda answer: answer.started)

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def failed(self) -> list[Answer]:
        return [answer for answer in self.results if answer.status != 200]
