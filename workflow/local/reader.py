"""What the views read of a local run's state, and nothing more: the one door into $DDCICD_HOME.

    executed_definition(engine, execution_arn)   # the ASL version the execution ran
    running_here(engine)                          # executions this process drives
    artifacts = Artifacts()                       # the local S3 root
    artifacts.json("s3://bucket/runs/x/evaluation/evaluation.json")
    runtime_url()                                 # the local SageMaker Runtime, if it answers

`ddcicd run`'s summary, the run report and the console read executions and their files
through these few queries, so how the engine stores definition versions, where the local
S3 root is and how the runtime router records its address stay inside workflow/local and
workflow/engine. Every read tolerates a missing or unreadable file (None): a view shows
what is there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.local.s3 import S3Root, S3UriError

if TYPE_CHECKING:
    from workflow.engine import Engine


def executed_definition_text(engine: Engine, execution_arn: str) -> tuple[tuple[str, int], str]:
    """((state machine ARN, version), ASL text) of the definition the execution ran, not the latest."""
    description = engine.describe_execution(execution_arn)
    key = (description["stateMachineArn"], int(description["stateMachineVersion"]))
    return key, engine.store.state_machine_definition(*key)


def executed_definition(engine: Engine, execution_arn: str) -> dict[str, Any]:
    return json.loads(executed_definition_text(engine, execution_arn)[1])


def running_here(engine: Engine) -> list[str]:
    """ARNs of the RUNNING executions this process drives (started or redriven here)."""
    return [item["executionArn"] for item in engine.list_executions(status_filter="RUNNING")
            if engine.store.execution(item["executionArn"]).owner_pid == os.getpid()]  # fmt: skip


def runtime_url() -> str | None:
    """The local SageMaker Runtime router's URL when one answers, else None."""
    from workflow.local.runtime import runtime_url as running

    return running()


@dataclass(frozen=True)
class Artifacts:
    """An execution's files under the local S3 root, addressed by their s3:// URIs."""

    root: S3Root = field(default_factory=S3Root.default)

    def path(self, uri: str) -> Path | None:
        """Where the object lives on this disk (None for a URI outside the root)."""
        try:
            return self.root.path(uri)
        except S3UriError:
            return None

    def text(self, uri: str | None) -> str | None:
        path = self.path(uri) if isinstance(uri, str) else None
        try:
            return path.read_text() if path is not None else None
        except (OSError, UnicodeDecodeError):
            return None

    def json(self, uri: str | None) -> dict[str, Any] | None:
        """A JSON object, or None when missing, unreadable or not an object."""
        text = self.text(uri)
        try:
            data = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def newest(self, prefix: str, pattern: str) -> list[str]:
        """URIs of the objects under `prefix` matching the glob `pattern`, newest first."""
        base = self.path(prefix)
        if base is None:
            return []
        try:
            found = sorted(base.glob(pattern), key=lambda path: path.stat().st_mtime, reverse=True)
        except OSError:
            return []
        return [self.root.uri(path) for path in found]
