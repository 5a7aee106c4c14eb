"""What the operations work on: one store, one Engine per (region, account), tags and activities.

Every Engine shares the same `HistoryStore` (one SQLite file, one write lock), so a state
machine created by one caller is visible to the console and the CLI at once; the Engine a
call gets only decides the region and account in the ARNs it makes and in `$$`.

    backend = Backend(".ddcicd/engine.sqlite3")                  # Pass/Choice/... and Lambda-free machines
    backend = Backend(path, make_engine=local_engine_factory)    # with local SageMaker, S3 and Lambda
"""
from __future__ import annotations

import os
import threading
from typing import Callable

from workflow.engine.activities import Activities, register_activities
from workflow.engine.api.requests import Caller
from workflow.engine.history import HistoryStore
from workflow.engine.service import Engine
from workflow.engine.tags import Tags

# (shared store, region, account) -> an Engine over that store with the integrations wanted.
EngineFactory = Callable[[HistoryStore, str, str], Engine]


def plain_engine(store: HistoryStore, region: str, account: str) -> Engine:
    return Engine(store, region=region, account=account)


class Backend:
    """The engines, store and side tables behind one API server."""

    def __init__(self, store_path: str | os.PathLike[str], make_engine: EngineFactory = plain_engine,
                 long_poll_seconds: float = 60.0) -> None:
        self.store = HistoryStore(store_path)
        self.long_poll_seconds = long_poll_seconds  # GetActivityTask's wait for work (AWS: 60 s)
        self.tags = Tags(self.store)
        self.activities = Activities(self.store)
        self._make_engine = make_engine
        self._engines: dict[tuple[str, str], Engine] = {}
        self._lock = threading.Lock()

    def engine(self, caller: Caller) -> Engine:
        key = (caller.region, caller.account)
        engine = self._engines.get(key)
        if engine is None:
            with self._lock:
                engine = self._engines.get(key)
                if engine is None:
                    engine = self._make_engine(self.store, caller.region, caller.account)
                    register_activities(engine.integrations)
                    self._engines[key] = engine
        return engine

    def activity_exists(self, arn: str) -> bool:
        return self.activities.exists(arn)
