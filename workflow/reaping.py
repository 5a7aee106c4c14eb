"""Clean-up of abandoned faulted runs on the local engine: `ddcicd cleanup` and the new-run hook.

    report = reap_local(engine, state_machine_arn, config)                  # retention + newer runs
    report = reap_local(engine, arn, config, retention=timedelta(0))        # every faulted run
    report = reap_local(engine, arn, config, execution="ddcicd-2026...")    # just that one
    report = reap_before_new_run(engine, arn, config)                       # a run is about to start

The rules and the deletion live in lambdas/reaper/reaping.py, shared with the reaper Lambda
that applies them on AWS (lambdas/ never imports workflow/, so the shared code is there).
Here they run over the local engine's store and the local SageMaker control plane
(workflow/local/endpoints.py, the same one the pipeline's createEndpoint and deleteEndpoint
reach). Every resource deleted or kept is appended as one line to $DDCICD_HOME/cleanup.log:

    2026-12-01T03:10:00+00:00 deleted endpoint ddcicd-...-staging of ddcicd-... (FAILED 2026-12-01T02:40:12+00:00): ended 24.2 h ago (retention 24 h)
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from lambdas.reaper.reaping import FAULTED, EndedExecution, ReapReport, Resource, parse_input, sweep
from workflow.config import PipelineConfig
from workflow.engine import Engine, EngineError
from workflow.engine.clock import Clock
from workflow.home import ddcicd_home
from workflow.local.endpoints import LocalEndpoints, ValidationError

LOG_NAME = "cleanup.log"


class CleanupError(ValueError):
    """A clean-up request that cannot be honoured (an execution that is not a faulted one)."""


class LocalExecutions:
    """The executions of one state machine in the local engine's store."""

    def __init__(self, engine: Engine, state_machine_arn: str) -> None:
        self.engine = engine
        self.state_machine_arn = state_machine_arn

    def _listing(self) -> list[dict[str, Any]]:
        try:
            return self.engine.list_executions(self.state_machine_arn)
        except EngineError:  # no such state machine yet: nothing ran
            return []

    def ended_faulted(self) -> list[EndedExecution]:
        return [EndedExecution(item["executionArn"], item["name"], item["status"], item["startDate"], item["stopDate"])
                for item in self._listing() if item["status"] in FAULTED and item["stopDate"] is not None]

    def latest_start(self) -> datetime | None:
        starts = [item["startDate"] for item in self._listing()]
        return max(starts) if starts else None

    def execution_input(self, execution: EndedExecution) -> dict[str, Any]:
        return parse_input(self.engine.describe_execution(execution.arn)["input"])


class LocalSageMaker:
    """DeleteEndpoint, DeleteEndpointConfig, DeleteModel and the production lookup, on local endpoints."""

    def __init__(self, endpoints: LocalEndpoints) -> None:
        self.endpoints = endpoints

    def delete(self, resource: Resource) -> bool:
        delete = {"endpoint": self.endpoints.delete_endpoint, "endpoint-config": self.endpoints.delete_endpoint_config,
                  "model": self.endpoints.delete_model}[resource.kind]
        try:
            delete(resource.name)
        except ValidationError:  # "Could not find ...": already gone
            return False
        return True

    def serving(self, endpoint_name: str) -> set[Resource]:
        try:
            endpoint = self.endpoints.describe_endpoint(endpoint_name)
        except ValidationError:
            return set()
        configs = {endpoint["EndpointConfigName"]}
        try:  # an update in progress: the config production is moving to (DescribeEndpoint's PendingDeploymentSummary)
            pending = json.loads(self.endpoints.state_path(endpoint_name).read_text()).get("pending") or {}
            configs.add(pending.get("EndpointConfigName"))
        except (OSError, ValueError):
            pass
        used = {Resource("endpoint", endpoint_name)}
        for config in configs - {None}:
            used.add(Resource("endpoint-config", config))
            try:
                variants = self.endpoints.describe_endpoint_config(config)["ProductionVariants"]
            except ValidationError:
                continue
            used.update(Resource("model", variant["ModelName"]) for variant in variants)
        return used


def _now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), tz=timezone.utc)


def record(report: ReapReport, home: Path, now: datetime) -> Path:
    """Append one line per resource deleted or kept to $DDCICD_HOME/cleanup.log (one write, O_APPEND)."""
    path = home / LOG_NAME
    lines = [f"{now.isoformat(timespec='seconds')} {line}\n" for line in report.lines()
             if not line.startswith("kept execution")]
    if lines:
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, "".join(lines).encode())
        finally:
            os.close(descriptor)
    return path


def reap_local(engine: Engine, state_machine_arn: str, config: PipelineConfig, *, clock: Clock | None = None,
               retention: timedelta | None = None, execution: str | None = None, new_run_starting: bool = False,
               home: Path | None = None) -> ReapReport:
    """One sweep of the local state machine; `retention` defaults to config `cleanup.retention_hours`,
    `clock` to the engine's (wall time, or a test's virtual clock).

    `execution` (name or ARN) reaps that one execution only, which must have ended FAILED,
    TIMED_OUT or ABORTED (CleanupError otherwise).
    """
    home = home or ddcicd_home()
    now = _now(clock or engine.clock)
    requested: tuple[str, ...] = ()
    if execution is not None:
        description = engine.describe_execution(execution)  # EngineError names an unknown one
        if description["status"] not in FAULTED:
            raise CleanupError(f"execution {description['name']} is {description['status']}: only FAILED, TIMED_OUT "
                               "or ABORTED executions have staging resources to clean up")
        requested = (description["executionArn"],)
        state_machine_arn = description["stateMachineArn"]
    report = sweep(
        LocalExecutions(engine, state_machine_arn),
        LocalSageMaker(LocalEndpoints(home)),
        config.endpoint.production_name,
        now,
        timedelta(hours=config.cleanup.retention_hours) if retention is None else retention,
        new_run_starting=new_run_starting,
        requested=requested,
    )
    record(report, home, now)
    return report


def reap_before_new_run(engine: Engine, state_machine_arn: str, config: PipelineConfig,
                        clock: Clock | None = None) -> ReapReport:
    """The local pipeline's hook: a new run is starting, so every faulted run before it is abandoned."""
    return reap_local(engine, state_machine_arn, config, clock=clock, new_run_starting=True)
