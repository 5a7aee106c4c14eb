"""Guarded rollouts on real local endpoints under steady load: canary, linear, and rollbacks on alarms.

The new fleet's model is tiny (ResNet-20 on 32x32) so instances start in a second or two; the
broken one answers every second request with a 500 (DDCICD_SERVE_FAIL_EVERY, set through the
model's container Environment as SageMaker passes it), the slow one is the same network on
96x96 inputs (about 5x the latency).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.config import load_config
from workflow.definition import render_definition
from workflow.definition.endpoints import deployment_config
from workflow.engine import SystemClock, TaskContext
from workflow.local.alarms import put_metric_alarm, put_rollout_alarms
from workflow.local.sagemaker_control import SageMakerControlPlane
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.instances import Instance, is_running
from workflow.local.runtime import ensure_runtime
from workflow.local.steady_load import Answer, SteadyLoad


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=classes)),
                                       tmp_path_factory.mktemp(name), shape)
            for name, classes, shape in (("blue", 10, (3, 32, 32)), ("green", 4, (3, 32, 32)),
                                         ("slow", 4, (3, 96, 96)))}


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480))
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture()
def endpoints(tmp_path: Path) -> Iterator[LocalEndpoints]:
    local = LocalEndpoints(tmp_path, cpu_count=2)
    yield local
    local.shutdown()


def alarm(name: str, metric: str, threshold: float, period: int = 1, periods: int = 1, datapoints: int = 1) -> dict:
    statistic = {"Statistic": "Average"} if metric == "Invocation5XXErrors" else {"ExtendedStatistic": "p99"}
    return {"AlarmName": name, "Namespace": "AWS/SageMaker", "MetricName": metric, **statistic,
            "Threshold": threshold, "Period": period, "EvaluationPeriods": periods,
            "DatapointsToAlarm": datapoints, "ComparisonOperator": "GreaterThanThreshold"}


def deployment(kind: str, percent: int, wait: int, alarms: list[str], termination_wait: int = 0,
               max_seconds: int = 600) -> dict[str, Any]:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait}
    if kind != "ALL_AT_ONCE":
        routing["CanarySize" if kind == "CANARY" else "LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": percent}
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": termination_wait,
                                      "MaximumExecutionTimeoutInSeconds": max_seconds},
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]}}


def serve(endpoints: LocalEndpoints, archives: dict[str, Path], fleet: str, archive: str,
          environment: dict[str, str] | None = None) -> None:
    container: dict[str, Any] = {"ModelDataUrl": str(archives[archive])}
    if environment:
        container["Environment"] = environment
    endpoints.create_model(f"{fleet}-model", primary_container=container)
    endpoints.create_endpoint_config(fleet, [{"VariantName": fleet, "ModelName": f"{fleet}-model",
                                              "InitialInstanceCount": 1}])


def production(endpoints: LocalEndpoints, archives: dict[str, Path]) -> list[Instance]:
    serve(endpoints, archives, "blue", "blue")
    endpoints.create_endpoint("production", "blue")
    settle(endpoints, "Creating")
    return instances(endpoints)


def instances(endpoints: LocalEndpoints) -> list[Instance]:
    return [Instance.from_json(item) for item in json.loads(endpoints.state_path("production").read_text())["instances"]]


def settle(endpoints: LocalEndpoints, leaving: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = endpoints.describe_endpoint("production")
        if description["EndpointStatus"] != leaving:
            return description
        time.sleep(0.05)
    raise AssertionError(f"production still {leaving} after {timeout} s")


def rollout(endpoints: LocalEndpoints, jpeg: bytes, config: dict[str, Any]) -> tuple[dict[str, Any], list[Answer], list[dict]]:
    """Update production to `green` under load; returns the final description, every answer and
    the descriptions seen while Updating."""
    seen = []
    with SteadyLoad(ensure_runtime(endpoints.root.parent), "production", jpeg, concurrency=4) as load:
        time.sleep(0.5)
        endpoints.update_endpoint("production", "green", config)
        deadline = time.monotonic() + 120
        while (description := endpoints.describe_endpoint("production"))["EndpointStatus"] == "Updating":
            seen.append(description)
            assert time.monotonic() < deadline, "the rollout did not end within 120 s"
            time.sleep(0.1)
        time.sleep(1.0)  # the losing fleet drains and stops
    return description, load.stop(), seen


@pytest.mark.slow
@pytest.mark.parametrize("kind, percent, shares", [("CANARY", 25, [25, 100]), ("LINEAR", 34, [34, 68, 100])])
def test_a_good_model_rolls_out_in_steps_with_no_failed_request(
        endpoints: LocalEndpoints, archives: dict[str, Path], jpeg: bytes, kind: str, percent: int, shares: list[int]) -> None:
    old = production(endpoints, archives)
    serve(endpoints, archives, "green", "green")
    put_metric_alarm(endpoints.root.parent, alarm("errors", "Invocation5XXErrors", 0.01))
    put_metric_alarm(endpoints.root.parent, alarm("latency", "ModelLatency", 5_000_000, period=2, periods=2, datapoints=2))
    final, answers, seen = rollout(endpoints, jpeg, deployment(kind, percent, 2, ["errors", "latency"]))
    assert [answer for answer in answers if answer.status != 200] == []
    assert final["EndpointStatus"] == "InService" and final["EndpointConfigName"] == "green"
    assert "FailureReason" not in final
    assert not any(is_running(instance) for instance in old)
    steps = [step["percent"] for step in endpoints._load("production")["LastRollout"]["Steps"]]
    assert steps == shares
    # While a share baked, both fleets answered, the new one about its share.
    summaries = [item["PendingDeploymentSummary"] for item in seen if "PendingDeploymentSummary" in item]
    assert {summary["EndpointConfigName"] for summary in summaries} == {"green"}
    assert any(summary["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Baking" for summary in summaries)
    assert percent / 2 <= 100 * _first_share(answers) <= percent * 1.6
    assert answers[-1].variant == "green" and answers[0].variant == "blue"


def _first_share(answers: list[Answer]) -> float:
    """The new fleet's share of the 200 requests after its first answer (its first step)."""
    first_green = next(index for index, answer in enumerate(answers) if answer.variant == "green" or answer.status != 200)
    window = answers[first_green:first_green + 200]
    return sum(answer.variant == "green" or answer.status != 200 for answer in window) / len(window)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["errors", "latency"])
def test_a_bad_canary_is_rolled_back_within_the_window_and_production_stays_on_the_old_config(
        endpoints: LocalEndpoints, archives: dict[str, Path], jpeg: bytes, fault: str) -> None:
    old = production(endpoints, archives)
    if fault == "errors":
        serve(endpoints, archives, "green", "green", {"DDCICD_SERVE_FAIL_EVERY": "2"})
        put_metric_alarm(endpoints.root.parent, alarm("guard", "Invocation5XXErrors", 0.1, period=2))
    else:
        serve(endpoints, archives, "green", "slow")
        # The blue fleet's p50 here; the slow one's p99 is several times that.
        with SteadyLoad(ensure_runtime(endpoints.root.parent), "production", jpeg, concurrency=4) as load:
            time.sleep(2)
        latencies = sorted(answer.ended - answer.started for answer in load.stop())
        threshold_us = 3 * latencies[len(latencies) // 2] * 1e6
        put_metric_alarm(endpoints.root.parent, alarm("guard", "ModelLatency", threshold_us, period=2))
    window = 2.0
    final, answers, _ = rollout(endpoints, jpeg, deployment("CANARY", 25, 60, ["guard"]))
    assert final["EndpointStatus"] == "InService" and final["EndpointConfigName"] == "blue"
    assert "rolled back" in final["FailureReason"] and "alarm guard in ALARM" in final["FailureReason"]
    assert [instance.pid for instance in instances(endpoints)] == [instance.pid for instance in old]
    assert all(is_running(instance) for instance in old)
    green = [answer for answer in answers if answer.variant == "green" or answer.status != 200]
    assert green, "the canary never got traffic"
    first_bad = min(answer.ended for answer in green if fault == "latency" or answer.status != 200)
    last_routed = max(answer.started for answer in green)
    assert last_routed - first_bad <= window + 2.0, (last_routed - first_bad, window)
    assert answers[-1].variant == "blue" and all(answer.status == 200 for answer in answers[-20:])
    if fault == "errors":
        during = [answer for answer in answers if first_bad - 0.5 <= answer.started <= last_routed]
        failed = [answer for answer in during if answer.status != 200]
        # Failures come only from the canary's share (and only half of its answers fail).
        assert 0 < len(failed) <= 0.25 * len(during) * 1.5, (len(failed), len(during))
    else:
        assert all(answer.status == 200 for answer in answers)


@pytest.mark.slow
def test_the_definitions_update_with_its_alarms_rolls_a_broken_canary_back_through_the_integration(
        endpoints: LocalEndpoints, archives: dict[str, Path], jpeg: bytes) -> None:
    """The promotion's UpdateEndpoint Parameters, as the ASL has them, through the engine's
    SageMaker integration, with the alarms `ddcicd run` puts: the wait loop then sees
    InService on the old config (PromotionRolledBack)."""
    config = load_config(overrides=["endpoint.rollout.mode=CANARY", "endpoint.rollout.canary_percent=30",
                                    "endpoint.rollout.bake_seconds=60", "endpoint.rollout.error_rate.threshold=0.1",
                                    "endpoint.rollout.error_rate.period_seconds=1", "endpoint.production_name=production"])
    assert put_rollout_alarms(endpoints.root.parent, config) == ["ddcicd-rollout-errors", "ddcicd-rollout-p99"]
    production(endpoints, archives)
    serve(endpoints, archives, "green", "green", {"DDCICD_SERVE_FAIL_EVERY": "2"})
    asl = render_definition(config)
    parameters = asl["States"]["UpdateProductionEndpoint"]["Parameters"]
    assert parameters["DeploymentConfig"] == deployment_config(config)
    control = SageMakerControlPlane(endpoints)
    context = TaskContext("arn:exec", "UpdateProductionEndpoint", "r", SystemClock(), threading.Event())
    with SteadyLoad(ensure_runtime(endpoints.root.parent), "production", jpeg, concurrency=4):
        control.invoke("arn:aws:states:::sagemaker:updateEndpoint",
                       dict(parameters, EndpointName="production", EndpointConfigName="green"), context)
        final = settle(endpoints, "Updating")
    assert final["EndpointConfigName"] == "blue" and "alarm ddcicd-rollout-errors in ALARM" in final["FailureReason"]
    assert final["LastDeploymentConfig"] == deployment_config(config)


def test_a_deployment_naming_an_unknown_alarm_or_a_bad_size_is_refused(
        endpoints: LocalEndpoints, archives: dict[str, Path]) -> None:
    serve(endpoints, archives, "blue", "blue")
    endpoints.create_endpoint("production", "blue")
    settle(endpoints, "Creating")
    serve(endpoints, archives, "green", "green")
    with pytest.raises(ValidationError, match=r"Alarms\[0\]: alarm 'missing' does not exist"):
        endpoints.update_endpoint("production", "green", deployment("CANARY", 10, 1, ["missing"]))
    with pytest.raises(ValidationError, match=r"CanarySize.Value 0 must be an integer from 1 to 100"):
        endpoints.update_endpoint("production", "green", deployment("CANARY", 0, 1, []))
    assert endpoints.describe_endpoint("production")["EndpointStatus"] == "InService"


@pytest.mark.slow
def test_a_new_fleet_instance_that_exits_mid_rollout_rolls_it_back(
        endpoints: LocalEndpoints, archives: dict[str, Path]) -> None:
    production(endpoints, archives)
    serve(endpoints, archives, "green", "green")
    endpoints.update_endpoint("production", "green", deployment("CANARY", 20, 600, []))
    deadline = time.monotonic() + 60
    while not (state := endpoints._load("production")).get("rollout"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    during = endpoints.describe_endpoint("production")
    assert during["EndpointStatus"] == "Updating" and during["ProductionVariants"][0]["CurrentWeight"] == 0.8
    assert during["PendingDeploymentSummary"]["ProductionVariants"][0]["CurrentWeight"] == 0.2
    os.kill(state["rollout"]["instances"][0]["pid"], signal.SIGKILL)
    final = settle(endpoints, "Updating")
    assert final["EndpointConfigName"] == "blue" and "of the new fleet exited" in final["FailureReason"]
    assert final["ProductionVariants"][0]["CurrentWeight"] == 1.0 and "PendingDeploymentSummary" not in final


@pytest.mark.slow
def test_production_variants_share_traffic_by_weight_and_describe_says_so(
        endpoints: LocalEndpoints, archives: dict[str, Path], jpeg: bytes) -> None:
    for name in ("a", "b"):
        endpoints.create_model(f"{name}-model", str(archives["blue"]))
    endpoints.create_endpoint_config("ab", [
        {"VariantName": "A", "ModelName": "a-model", "InitialInstanceCount": 1, "InitialVariantWeight": 3},
        {"VariantName": "B", "ModelName": "b-model", "InitialInstanceCount": 1, "InitialVariantWeight": 1}])
    endpoints.create_endpoint("production", "ab")
    described = settle(endpoints, "Creating")
    assert {item["VariantName"]: (item["CurrentWeight"], item["DesiredWeight"]) for item in described["ProductionVariants"]} == {
        "A": (3.0, 3.0), "B": (1.0, 1.0)}
    with SteadyLoad(ensure_runtime(endpoints.root.parent), "production", jpeg, concurrency=4) as load:
        while len(load.results) < 800:
            time.sleep(0.05)
    answers = load.stop()
    assert all(answer.status == 200 for answer in answers)
    share = sum(answer.variant == "A" for answer in answers) / len(answers)
    assert 0.68 <= share <= 0.82, share
