"""Reaping abandoned faulted runs locally: real executions in the local engine, real endpoint processes.

Each "faulted run" is an execution of a small state machine that creates its staging model,
endpoint config and endpoint through the local SageMaker integration (the same Task resources
and execution input as the pipeline), then fails, as a fault after the staging endpoint
exists leaves it. The engine's clock is virtual, so the retention period passes at once.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from lambdas.reaper.reaping import ProductionProtected, Resource, delete_staging, protected_resources
from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.cli import cli
from workflow.config import PipelineConfig, load_config
from workflow.engine import Engine, VirtualClock
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.instances import Instance, is_running
from workflow.local.s3 import S3Root
from workflow.local.services import register_local_aws
from workflow.naming import execution_input
from workflow.reaping import LOG_NAME, CleanupError, LocalSageMaker, reap_before_new_run, reap_local

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z: runs in tests "ended" before the wall clock's now


def at(offset_seconds: float) -> str:
    return datetime.fromtimestamp(T0 + offset_seconds, timezone.utc).isoformat(timespec="seconds")
HOUR = 3600.0
MODEL_URI = "s3://ddcicd-local/ddcicd/test-models/model.tar.gz"
_BY_INPUT = {"StagingEndpointName.$": "$$.Execution.Input.StagingEndpointName",
             "StagingEndpointConfigName.$": "$$.Execution.Input.StagingEndpointConfigName",
             "ModelName.$": "$$.Execution.Input.ModelName"}  # fmt: skip
FAULTED_RUN = {
    "StartAt": "CreateModel",
    "States": {
        "CreateModel": {
            "Type": "Task", "Resource": "arn:aws:states:::sagemaker:createModel", "ResultPath": None,
            "Parameters": {"ModelName.$": _BY_INPUT["ModelName.$"], "ExecutionRoleArn": "arn:aws:iam::000000000000:role/x",
                           "PrimaryContainer": {"ModelDataUrl.$": "$$.Execution.Input.ModelDataUrl"}},
            "Next": "CreateStagingEndpointConfig",
        },
        "CreateStagingEndpointConfig": {
            "Type": "Task", "Resource": "arn:aws:states:::sagemaker:createEndpointConfig", "ResultPath": None,
            "Parameters": {"EndpointConfigName.$": _BY_INPUT["StagingEndpointConfigName.$"], "ProductionVariants": [
                {"VariantName": "AllTraffic", "ModelName.$": _BY_INPUT["ModelName.$"], "InitialInstanceCount": 1,
                 "InstanceType": "ml.m5.large"}]},
            "Next": "CreateStagingEndpoint",
        },
        "CreateStagingEndpoint": {
            "Type": "Task", "Resource": "arn:aws:states:::sagemaker:createEndpoint", "ResultPath": None,
            "Parameters": {"EndpointName.$": _BY_INPUT["StagingEndpointName.$"],
                           "EndpointConfigName.$": _BY_INPUT["StagingEndpointConfigName.$"]},
            "Next": "Evaluate",
        },
        "Evaluate": {"Type": "Fail", "Error": "Lambda.Unknown", "Cause": "a fault after the staging endpoint exists"},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def model_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), tmp_path_factory.mktemp("model"), (3, 16, 16))


@pytest.fixture
def config() -> PipelineConfig:
    return load_config()


@pytest.fixture
def endpoints(isolated_home: Path) -> Iterator[LocalEndpoints]:
    local = LocalEndpoints(isolated_home, cpu_count=2)
    yield local
    local.shutdown()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=T0)


@pytest.fixture
def engine(isolated_home: Path, endpoints: LocalEndpoints, clock: VirtualClock, model_archive: Path,
           config: PipelineConfig) -> Engine:  # fmt: skip
    s3 = S3Root.default()
    s3.put_file(model_archive, MODEL_URI)
    engine = Engine(isolated_home / "engine.sqlite3", clock=clock)
    register_local_aws(engine.integrations, s3, isolated_home)
    engine.create_state_machine(config.name, FAULTED_RUN)
    return engine


def faulted_run(engine: Engine, config: PipelineConfig, name: str, clock: VirtualClock, **names: str) -> dict[str, str]:
    """One execution that leaves its staging resources and ends FAILED; returns its input."""
    run_input = {**execution_input(config, name, "s3://ddcicd-local/ddcicd/datasets/d/"), "ModelDataUrl": MODEL_URI, **names}
    result = engine.run_execution(engine.state_machine_arn(config.name), run_input, name=name)
    assert (result["status"], result["error"]) == ("FAILED", "Lambda.Unknown"), result
    clock.advance(60)
    return run_input


def production(endpoints: LocalEndpoints, config: PipelineConfig, model: str | None = None) -> None:
    """The production endpoint, serving its own model or `model`."""
    if model is None:
        model = "production-model"
        endpoints.create_model(model, MODEL_URI)
    endpoints.create_endpoint_config("production-config", [{"VariantName": "AllTraffic", "ModelName": model}])
    endpoints.create_endpoint(config.endpoint.production_name, "production-config")


def staging_exists(endpoints: LocalEndpoints, run_input: dict[str, str]) -> dict[str, bool]:
    found = {}
    for kind, describe, key in (("endpoint", endpoints.describe_endpoint, "StagingEndpointName"),
                                ("endpoint-config", endpoints.describe_endpoint_config, "StagingEndpointConfigName"),
                                ("model", endpoints.describe_model, "ModelName")):  # fmt: skip
        try:
            describe(run_input[key])
            found[kind] = True
        except ValidationError:
            found[kind] = False
    return found


def processes_of(endpoints: LocalEndpoints, endpoint_name: str, timeout: float = 60) -> list[Instance]:
    """The endpoint's server processes, once it is InService."""
    deadline = time.monotonic() + timeout
    while endpoints.describe_endpoint(endpoint_name)["EndpointStatus"] != "InService":
        assert time.monotonic() < deadline, endpoints.describe_endpoint(endpoint_name)
        time.sleep(0.1)
    state = json.loads(endpoints.state_path(endpoint_name).read_text())
    return [Instance.from_json(item) for item in state["instances"]]


def log_lines(home: Path) -> list[str]:
    return (home / LOG_NAME).read_text().splitlines()


@pytest.mark.slow
def test_a_new_run_reaps_an_older_faulted_runs_staging_and_leaves_production_serving(
        engine: Engine, endpoints: LocalEndpoints, config: PipelineConfig, clock: VirtualClock, isolated_home: Path) -> None:
    production(endpoints, config)
    old = faulted_run(engine, config, "ddcicd-20270115-080000-aaaa", clock)
    assert staging_exists(endpoints, old) == {"endpoint": True, "endpoint-config": True, "model": True}
    report = reap_local(engine, engine.state_machine_arn(config.name), config, clock=clock)
    assert report.deleted == [] and len(report.kept_executions) == 1  # within retention, no newer run: kept

    report = reap_before_new_run(engine, engine.state_machine_arn(config.name), config, clock)

    assert staging_exists(endpoints, old) == {"endpoint": False, "endpoint-config": False, "model": False}
    assert [(outcome.action, outcome.resource.kind) for outcome in report.outcomes] == [
        ("deleted", "endpoint"), ("deleted", "endpoint-config"), ("deleted", "model")]
    assert {outcome.reason for outcome in report.outcomes} == {"a new run is starting"}
    assert endpoints.describe_endpoint(config.endpoint.production_name)["EndpointStatus"] in ("Creating", "InService")
    lines = log_lines(isolated_home)
    assert len(lines) == 3 and lines[0].endswith(f"deleted endpoint {old['StagingEndpointName']} of ddcicd-20270115-080000-aaaa "
                                                 f"(FAILED {at(0)}): a new run is starting")


@pytest.mark.slow
def test_the_retention_period_reaps_a_faulted_run_and_stops_its_processes(
        engine: Engine, endpoints: LocalEndpoints, config: PipelineConfig, clock: VirtualClock) -> None:
    run = faulted_run(engine, config, "ddcicd-20270115-080000-bbbb", clock)
    instances = processes_of(endpoints, run["StagingEndpointName"])
    assert instances and all(is_running(instance) for instance in instances)
    arn = engine.state_machine_arn(config.name)

    clock.advance(23 * HOUR)
    kept = reap_local(engine, arn, config, clock=clock)
    assert kept.deleted == [] and staging_exists(endpoints, run)["endpoint"]
    assert "reaped when a newer run starts or in 0.983 h" in kept.lines()[0]

    clock.advance(1 * HOUR)
    report = reap_local(engine, arn, config, clock=clock)
    assert [outcome.resource.name for outcome in report.deleted] == [
        run["StagingEndpointName"], run["StagingEndpointConfigName"], run["ModelName"]]
    assert report.deleted[0].reason == "ended 24 h ago (retention 24 h)"
    assert not any(is_running(instance) for instance in instances)

    again = reap_local(engine, arn, config, clock=clock)  # idempotent: everything is already gone
    assert again.deleted == [] and {outcome.action for outcome in again.outcomes} == {"already gone"}


@pytest.mark.slow
def test_a_newer_run_supersedes_older_faulted_runs_but_the_newest_is_kept_for_a_redrive(
        engine: Engine, endpoints: LocalEndpoints, config: PipelineConfig, clock: VirtualClock) -> None:
    older = faulted_run(engine, config, "ddcicd-20270115-080000-cccc", clock)
    newer = faulted_run(engine, config, "ddcicd-20270115-080100-dddd", clock)
    report = reap_local(engine, engine.state_machine_arn(config.name), config, clock=clock)
    assert {outcome.resource.name for outcome in report.deleted} == {
        older["StagingEndpointName"], older["StagingEndpointConfigName"], older["ModelName"]}
    assert [execution.name for execution, _ in report.kept_executions] == ["ddcicd-20270115-080100-dddd"]
    assert staging_exists(endpoints, newer) == {"endpoint": True, "endpoint-config": True, "model": True}


@pytest.mark.slow
def test_production_is_never_touched_even_when_a_faulted_run_names_it(
        engine: Engine, endpoints: LocalEndpoints, config: PipelineConfig, clock: VirtualClock) -> None:
    """A run promoted before it faulted: production serves its model. Another run's input names
    the production endpoint as its staging one. Reaping everything keeps both."""
    promoted = faulted_run(engine, config, "ddcicd-20270115-080000-eeee", clock)
    production(endpoints, config, model=promoted["ModelName"])
    endpoints.create_model("other-model", MODEL_URI)
    confused = execution_input(config, "ddcicd-20270115-080100-ffff", "s3://ddcicd-local/ddcicd/datasets/d/")
    confused.update(StagingEndpointName=config.endpoint.production_name, StagingEndpointConfigName="production-config",
                    ModelName="other-model")
    result = engine.run_execution(engine.state_machine_arn(config.name), {**confused, "ModelDataUrl": MODEL_URI},
                                  name="ddcicd-20270115-080100-ffff")  # CreateModel fails: other-model exists
    assert result["status"] == "FAILED"

    report = reap_local(engine, engine.state_machine_arn(config.name), config, clock=clock, retention=timedelta(0))

    kept = {(outcome.resource.kind, outcome.resource.name) for outcome in report.kept}
    assert kept == {("model", promoted["ModelName"]), ("endpoint", "ddcicd-production"), ("endpoint-config", "production-config")}
    assert {outcome.resource.name for outcome in report.deleted} == {
        promoted["StagingEndpointName"], promoted["StagingEndpointConfigName"], "other-model"}
    assert endpoints.describe_endpoint("ddcicd-production")["EndpointConfigName"] == "production-config"
    assert endpoints.describe_model(promoted["ModelName"])["ModelName"] == promoted["ModelName"]
    # The guard under the plan: whatever asks, production's resources are refused.
    sagemaker = LocalSageMaker(endpoints)
    protected = protected_resources(sagemaker, "ddcicd-production")
    for resource in (Resource("endpoint", "DDCICD-PRODUCTION"), Resource("model", promoted["ModelName"])):
        with pytest.raises(ProductionProtected, match=f"refusing to delete {resource.kind} {resource.name}"):
            delete_staging(sagemaker, resource, protected)
    assert endpoints.describe_endpoint("ddcicd-production")["EndpointStatus"] in ("Creating", "InService")


def test_only_a_faulted_execution_can_be_reaped_by_name(engine: Engine, config: PipelineConfig) -> None:
    engine.create_state_machine("other", {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    engine.run_execution(engine.state_machine_arn("other"), {}, name="fine")
    with pytest.raises(CleanupError, match="execution fine is SUCCEEDED: only FAILED, TIMED_OUT or ABORTED"):
        reap_local(engine, engine.state_machine_arn(config.name), config, execution="fine")


@pytest.mark.slow
def test_the_cleanup_command_prints_what_it_removed_and_kept(
        engine: Engine, endpoints: LocalEndpoints, config: PipelineConfig, clock: VirtualClock, isolated_home: Path) -> None:
    """Run as a user would, on the wall clock (the runs ended at the virtual T0, months before it)."""
    production(endpoints, config)
    first = faulted_run(engine, config, "ddcicd-20260921-141320-1111", clock)
    second = faulted_run(engine, config, "ddcicd-20260921-141420-2222", clock)
    runner = CliRunner()

    result = runner.invoke(cli, ["cleanup", "--set", "cleanup.retention_hours=1000000"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [f"deleted {kind} {first[key]} of ddcicd-20260921-141320-1111 (FAILED {at(0)}): a newer run started at {at(60)}"
                         for kind, key in (("endpoint", "StagingEndpointName"), ("endpoint-config", "StagingEndpointConfigName"),
                                           ("model", "ModelName"))]  # fmt: skip
    assert lines[3].startswith(f"kept execution ddcicd-20260921-141420-2222 (FAILED {at(60)}): kept for a redrive: "
                               "reaped when a newer run starts or in ")
    assert lines[4:] == ["production endpoint ddcicd-production: untouched", f"recorded in {isolated_home / LOG_NAME}"]
    assert staging_exists(endpoints, second) == {"endpoint": True, "endpoint-config": True, "model": True}

    result = runner.invoke(cli, ["cleanup", "--execution", "ddcicd-20260921-141420-2222"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:3] == [
        f"deleted {kind} {second[key]} of ddcicd-20260921-141420-2222 (FAILED {at(60)}): requested"
        for kind, key in (("endpoint", "StagingEndpointName"), ("endpoint-config", "StagingEndpointConfigName"), ("model", "ModelName"))]

    result = runner.invoke(cli, ["cleanup", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["nothing to remove: no abandoned staging resources",
                                          "production endpoint ddcicd-production: untouched"]
    assert endpoints.describe_endpoint("ddcicd-production")["EndpointStatus"] in ("Creating", "InService")
    assert len(log_lines(isolated_home)) == 6


def test_the_cleanup_command_refuses_bad_requests(engine: Engine) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["cleanup", "--older-than", "soon"])
    assert result.exit_code == 2 and "'soon' is not a duration: use e.g. 0, 30m, 2h or 1d" in result.output
    result = runner.invoke(cli, ["cleanup", "--execution", "nope"])
    assert result.exit_code == 2 and "execution 'nope' does not exist" in result.output
    result = runner.invoke(cli, ["cleanup", "--execution", "x", "--older-than", "1h"])
    assert result.exit_code == 2 and "--execution and --older-than do not go together" in result.output


@pytest.mark.slow
def test_cleanup_all_stops_every_local_process_production_included(
        engine: Engine, endpoints: LocalEndpoints, config: PipelineConfig, clock: VirtualClock) -> None:
    pytest.importorskip("workflow.local.processes")  # stop_all comes with the console-hardening branch
    production(endpoints, config)
    run = faulted_run(engine, config, "ddcicd-20260921-141320-3333", clock)
    instances = processes_of(endpoints, config.endpoint.production_name) + processes_of(endpoints, run["StagingEndpointName"])
    assert all(is_running(instance) for instance in instances)

    result = CliRunner().invoke(cli, ["cleanup", "--all"])

    assert result.exit_code == 0, result.output
    assert f"deleted endpoint {run['StagingEndpointName']}" in result.output  # past retention on the wall clock
    assert "stopped endpoint ddcicd-production instance" in result.output
    assert not any(is_running(instance) for instance in instances)
