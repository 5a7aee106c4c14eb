"""Which staging resources of faulted executions are abandoned, and deleting them.

Shared by the reaper Lambda (lambdas/reaper/app.py over boto3) and the local side
(workflow/reaping.py over the local engine and control plane: `ddcicd cleanup` and the
hook the local pipeline calls before a new run). Nothing here calls AWS or reads files:
the two sides plug in an `Executions` and a `SageMaker` of their own.

A faulted execution (FAILED, TIMED_OUT, ABORTED) keeps its staging endpoint, endpoint
config and model so that a redrive can resume where it broke. It is *abandoned* when

    a newer execution of the same state machine started after it ended (or one is starting now),
    or it ended at least `retention` ago,
    or someone asks for it by name (`ddcicd cleanup --execution ID`).

Then its staging resources are deleted, endpoint first, then endpoint config, then model,
by the names its execution input gives them (workflow/naming.py):

    {"StagingEndpointName": "ddcicd-20261201-021500-3f9a-staging",
     "StagingEndpointConfigName": "ddcicd-20261201-021500-3f9a-staging-config",
     "ModelName": "ddcicd-20261201-021500-3f9a-model", ...}

Production is never touched: the production endpoint, the endpoint config(s) it serves or
is being updated to, and their models are protected. The plan keeps them (a promoted
model is the execution's own `ModelName`), and `delete_staging` refuses them outright.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Protocol

FAULTED = ("FAILED", "TIMED_OUT", "ABORTED")
# SageMaker's ARN resource type -> the execution input key that names it, in deletion order.
STAGING_INPUTS = (("endpoint", "StagingEndpointName"), ("endpoint-config", "StagingEndpointConfigName"), ("model", "ModelName"))


class ProductionProtected(Exception):
    """A deletion was about to touch production; clean-up refuses it whatever the caller says."""


@dataclass(frozen=True)
class Resource:
    """One SageMaker resource: `kind` is its ARN resource type (endpoint, endpoint-config, model)."""

    kind: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        """SageMaker names are unique regardless of case (ARNs are lower case)."""
        return (self.kind, self.name.lower())


@dataclass(frozen=True)
class EndedExecution:
    """An execution that ended FAILED, TIMED_OUT or ABORTED (times are timezone-aware)."""

    arn: str
    name: str
    status: str
    start: datetime
    stop: datetime


class Executions(Protocol):
    """The executions of one state machine (Step Functions, or the local engine)."""

    def ended_faulted(self) -> list[EndedExecution]:
        """Every execution that ended FAILED, TIMED_OUT or ABORTED (not one that runs again after a redrive)."""

    def latest_start(self) -> datetime | None:
        """When the newest execution of the state machine started; None without any."""

    def execution_input(self, execution: EndedExecution) -> dict[str, Any]:
        """The execution's input document."""


class SageMaker(Protocol):
    """Deleting and describing SageMaker resources (boto3, or the local control plane)."""

    def delete(self, resource: Resource) -> bool:
        """Delete it; False when it was already gone (idempotent)."""

    def serving(self, endpoint_name: str) -> set[Resource]:
        """The endpoint, the endpoint config(s) it serves or is being updated to, and their
        models; empty when the endpoint does not exist."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one resource: deleted, already gone, or kept (and why)."""

    action: str  # "deleted" | "already gone" | "kept"
    resource: Resource
    execution: EndedExecution
    reason: str

    def line(self) -> str:
        """`deleted endpoint ddcicd-...-staging of ddcicd-... (FAILED 2026-12-01T02:15:00+00:00): a newer run started ...`"""
        ended = self.execution.stop.isoformat(timespec="seconds")
        return (f"{self.action} {self.resource.kind} {self.resource.name} of {self.execution.name} "
                f"({self.execution.status} {ended}): {self.reason}")


@dataclass
class ReapReport:
    """Everything one sweep decided: a line per resource, and the faulted executions kept for a redrive."""

    production_endpoint: str
    outcomes: list[Outcome] = field(default_factory=list)
    kept_executions: list[tuple[EndedExecution, str]] = field(default_factory=list)

    @property
    def deleted(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.action == "deleted"]

    @property
    def kept(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.action == "kept"]

    def lines(self) -> list[str]:
        """What to print or log: deletions, resources kept, executions kept."""
        lines = [outcome.line() for outcome in self.outcomes if outcome.action != "already gone"]
        for execution, reason in self.kept_executions:
            lines.append(f"kept execution {execution.name} ({execution.status} "
                         f"{execution.stop.isoformat(timespec='seconds')}): {reason}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "production_endpoint": self.production_endpoint,
            "deleted": [outcome.line() for outcome in self.deleted],
            "kept": [outcome.line() for outcome in self.kept],
            "already_gone": sum(1 for outcome in self.outcomes if outcome.action == "already gone"),
            "kept_executions": [execution.name for execution, _ in self.kept_executions],
        }


def staging_resources(execution_input: dict[str, Any]) -> list[Resource]:
    """The staging endpoint, endpoint config and model an execution input names, in deletion order."""
    return [Resource(kind, execution_input[key]) for kind, key in STAGING_INPUTS
            if isinstance(execution_input.get(key), str) and execution_input[key]]


def abandonment(execution: EndedExecution, now: datetime, retention: timedelta,
                latest_start: datetime | None) -> str | None:
    """Why `execution` is abandoned, or None while it is kept for a redrive."""
    if latest_start is not None and latest_start > execution.stop:
        return f"a newer run started at {latest_start.isoformat(timespec='seconds')}"
    age = now - execution.stop
    if age >= retention:
        return f"ended {_hours(age)} ago (retention {_hours(retention)})"
    return None


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.3g} h"


def protected_resources(sagemaker: SageMaker, production_endpoint: str) -> set[tuple[str, str]]:
    """Keys of everything production uses, the production endpoint itself always included."""
    return {resource.key for resource in sagemaker.serving(production_endpoint)} | {
        Resource("endpoint", production_endpoint).key}


def delete_staging(sagemaker: SageMaker, resource: Resource, protected: set[tuple[str, str]]) -> bool:
    """The only way clean-up deletes anything: never a protected (production) resource."""
    if resource.key in protected:
        raise ProductionProtected(f"refusing to delete {resource.kind} {resource.name}: production uses it")
    return sagemaker.delete(resource)


def reap_execution(sagemaker: SageMaker, execution: EndedExecution, execution_input: dict[str, Any],
                   reason: str, protected: set[tuple[str, str]], production_endpoint: str) -> list[Outcome]:
    """Delete one abandoned execution's staging resources; a line per resource."""
    outcomes = []
    for resource in staging_resources(execution_input):
        if resource.key in protected:
            outcomes.append(Outcome("kept", resource, execution, f"production endpoint {production_endpoint} uses it"))
            continue
        deleted = delete_staging(sagemaker, resource, protected)
        outcomes.append(Outcome("deleted" if deleted else "already gone", resource, execution, reason))
    return outcomes


def sweep(executions: Executions, sagemaker: SageMaker, production_endpoint: str, now: datetime,
          retention: timedelta, new_run_starting: bool = False, requested: Iterable[str] = ()) -> ReapReport:
    """Reap every abandoned faulted execution of one state machine.

    `new_run_starting`: a run is about to start, so every faulted execution counts as superseded.
    `requested`: execution names or ARNs to reap whatever the rules say (only those are looked at).
    """
    wanted = set(requested)
    report = ReapReport(production_endpoint)
    latest = None if new_run_starting or wanted else executions.latest_start()
    protected: set[tuple[str, str]] | None = None
    for execution in sorted(executions.ended_faulted(), key=lambda item: item.stop):
        if wanted and not {execution.arn, execution.name} & wanted:
            continue
        if wanted:
            reason: str | None = "requested"
        elif new_run_starting:
            reason = "a new run is starting"
        else:
            reason = abandonment(execution, now, retention, latest)
        if reason is None:
            left = retention - (now - execution.stop)
            report.kept_executions.append((execution, f"kept for a redrive: reaped when a newer run starts "
                                                      f"or in {_hours(left)}"))
            continue
        if protected is None:  # asked once per sweep, and only when something is to be deleted
            protected = protected_resources(sagemaker, production_endpoint)
        report.outcomes += reap_execution(sagemaker, execution, executions.execution_input(execution), reason,
                                          protected, production_endpoint)
    return report


def parse_input(text: str | None) -> dict[str, Any]:
    """DescribeExecution's `input` (a JSON text); anything but an object counts as naming nothing."""
    try:
        document = json.loads(text or "{}")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
