"""Blue/green traffic shifting with automatic rollback: UpdateEndpoint's DeploymentConfig, locally.

    plan = parse_deployment_config(home, {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 60,
                                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}},
        "TerminationWaitInSeconds": 0, "MaximumExecutionTimeoutInSeconds": 600},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "ddcicd-rollout-errors"}]}})

Once the new fleet answers /ping, endpoints.py hands the endpoint's state to `begin`; every
refresh then calls `advance`, which moves `state["rollout"]["percent"]` (the new fleet's
share of requests, which the router reads from the state file) along SageMaker's schedule:

    ALL_AT_ONCE  100 %, bake WaitIntervalInSeconds
    CANARY       CanarySize, bake WaitIntervalInSeconds, then 100 %
    LINEAR       LinearStepSize, bake, + LinearStepSize, bake, ... 100 %
    then         TerminationWaitInSeconds at 100 %, and the old fleet stops

Until the old fleet stops, the alarms are evaluated on the new fleet's own metrics
(workflow/local/fleet_metrics.py); an alarm, or MaximumExecutionTimeoutInSeconds passing,
is a rollback: all traffic back to the old fleet, the new one stopped, the endpoint
InService on its old config with FailureReason saying why (as SageMaker leaves it).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workflow.local.alarms import AlarmError, describe_alarm, evaluate
from workflow.local.fleet_metrics import read_metrics

TYPES = ("ALL_AT_ONCE", "CANARY", "LINEAR")


class DeploymentConfigError(ValueError):
    """The DeploymentConfig is malformed; the message names the field."""


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DeploymentConfigError(f"DeploymentConfig.{where} {value!r} must be an integer from {low} to {high}")
    return value


def parse_deployment_config(home: Path, config: Any) -> dict[str, Any]:
    """The plan a rollout follows, with the alarms' documents read from the local store."""
    if not isinstance(config, dict):
        raise DeploymentConfigError(f"DeploymentConfig must be an object, got {type(config).__name__}")
    policy = config.get("BlueGreenUpdatePolicy")
    if not isinstance(policy, dict) or not isinstance(policy.get("TrafficRoutingConfiguration"), dict):
        raise DeploymentConfigError("DeploymentConfig.BlueGreenUpdatePolicy.TrafficRoutingConfiguration is required")
    routing = policy["TrafficRoutingConfiguration"]
    kind = routing.get("Type")
    if kind not in TYPES:
        raise DeploymentConfigError(f"DeploymentConfig...TrafficRoutingConfiguration.Type {kind!r} must be one of {', '.join(TYPES)}")
    where = "BlueGreenUpdatePolicy.TrafficRoutingConfiguration"
    step = 100
    if kind != "ALL_AT_ONCE":
        size_key = "CanarySize" if kind == "CANARY" else "LinearStepSize"
        size = routing.get(size_key)
        if not isinstance(size, dict) or size.get("Type") != "CAPACITY_PERCENT":
            raise DeploymentConfigError(f"DeploymentConfig.{where}.{size_key} must be {{Type: CAPACITY_PERCENT, Value}} "
                                        "(INSTANCE_COUNT is not supported locally)")
        step = _int(size.get("Value"), f"{where}.{size_key}.Value", 1, 100)
    alarms = []
    rollback = config.get("AutoRollbackConfiguration") or {}
    for index, item in enumerate(rollback.get("Alarms") or []):
        name = item.get("AlarmName") if isinstance(item, dict) else None
        try:
            alarms.append(describe_alarm(home, name))
        except AlarmError as error:
            raise DeploymentConfigError(f"DeploymentConfig.AutoRollbackConfiguration.Alarms[{index}]: {error}") from None
    return {
        "type": kind, "step": step,
        "wait": _int(routing.get("WaitIntervalInSeconds", 0), f"{where}.WaitIntervalInSeconds", 0, 3600),
        "termination_wait": _int(policy.get("TerminationWaitInSeconds", 0),
                                 "BlueGreenUpdatePolicy.TerminationWaitInSeconds", 0, 3600),
        "max_seconds": _int(policy.get("MaximumExecutionTimeoutInSeconds", 28800),
                            "BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds", 1, 28800),
        "alarms": alarms, "config": config,
    }


def begin(state: dict[str, Any], pending: dict[str, Any], now: float | None = None) -> None:
    """The new fleet is healthy: it gets its first share of traffic beside the old one."""
    now = time.time() if now is None else now
    plan = pending["deployment"]
    percent = min(100, plan["step"])
    state["rollout"] = {
        "EndpointConfigName": pending["EndpointConfigName"], "instances": pending["instances"],
        "weights": pending["weights"], "plan": plan, "percent": percent, "started": now,
        "traffic_since": now, "step_until": now + _wait_at(plan, percent),
        "history": [{"time": now, "percent": percent}],
    }
    state["pending"] = None


def _wait_at(plan: dict[str, Any], percent: int) -> float:
    if percent < 100:
        return plan["wait"]
    return (plan["wait"] if plan["type"] == "ALL_AT_ONCE" else 0) + plan["termination_wait"]


def advance(state: dict[str, Any], metrics_directory: Path, now: float | None = None) -> str | None:
    """One step: 'rollback' (with state['rollout']['reason']), 'finish', or None to keep going."""
    now = time.time() if now is None else now
    rollout = state["rollout"]
    plan = rollout["plan"]
    if plan["alarms"]:
        metrics = read_metrics(metrics_directory, state["EndpointName"])
        for alarm in plan["alarms"]:
            reason = evaluate(alarm, metrics, rollout["EndpointConfigName"], rollout["traffic_since"], now)
            if reason is not None:
                rollout["reason"] = reason
                return "rollback"
    if now - rollout["started"] > plan["max_seconds"]:
        rollout["reason"] = f"the deployment did not finish within MaximumExecutionTimeoutInSeconds ({plan['max_seconds']} s)"
        return "rollback"
    if now < rollout["step_until"]:
        return None
    if rollout["percent"] >= 100:
        return "finish"
    rollout["percent"] = 100 if plan["type"] == "CANARY" else min(100, rollout["percent"] + plan["step"])
    rollout["step_until"] = now + _wait_at(plan, rollout["percent"])
    rollout["history"].append({"time": now, "percent": rollout["percent"]})
    return None


def pending_summary(state: dict[str, Any]) -> dict[str, Any] | None:
    """DescribeEndpoint's PendingDeploymentSummary for a rollout in progress (or None)."""
    rollout = state.get("rollout")
    pending = state.get("pending")
    if rollout is None and not (pending and pending.get("deployment")):
        return None
    source = rollout or pending
    counts: dict[str, int] = {}
    for item in source["instances"]:
        counts[item["variant"]] = counts.get(item["variant"], 0) + 1
    if rollout is None:
        status, weight = "Creating", 0.0
    else:
        # Baking while a share bakes; at 100 % the old fleet waits out TerminationWaitInSeconds.
        status = "Baking" if rollout["percent"] < 100 else "ActivatingTraffic"
        weight = rollout["percent"] / 100
    variants = [{"VariantName": name, "CurrentInstanceCount": count, "DesiredInstanceCount": count,
                 "CurrentWeight": round(source["weights"].get(name, 1.0) * weight, 4),
                 "DesiredWeight": source["weights"].get(name, 1.0),
                 "VariantStatus": [{"Status": status}]} for name, count in counts.items()]
    return {"EndpointConfigName": source["EndpointConfigName"], "ProductionVariants": variants}


def roll_back(state: dict[str, Any], drain_seconds: float, now: str) -> None:
    """All traffic back on the old fleet; the new one drains and stops; InService on the old config."""
    rollout = state.pop("rollout")
    state["draining"] = state["draining"] + rollout["instances"]
    state["drain_after"] = time.time() + drain_seconds
    state["LastRollout"] = _record(rollout, "RolledBack")
    state.update(EndpointStatus="InService", LastModifiedTime=now,
                 FailureReason=f"update to {rollout['EndpointConfigName']} rolled back: {rollout['reason']}")


def finish(state: dict[str, Any], drain_seconds: float, now: str) -> None:
    """The new fleet serves everything: it becomes the endpoint's, the old one drains and stops."""
    rollout = state.pop("rollout")
    state["draining"] = state["draining"] + state["instances"]
    state["drain_after"] = time.time() + drain_seconds
    state["LastRollout"] = _record(rollout, "Completed")
    state.update(instances=rollout["instances"], weights=rollout["weights"],
                 EndpointConfigName=rollout["EndpointConfigName"], LastModifiedTime=now)


def _record(rollout: dict[str, Any], outcome: str) -> dict[str, Any]:
    """What `ddcicd endpoints describe` shows of the last rollout: its steps and its end."""
    return {"EndpointConfigName": rollout["EndpointConfigName"], "Outcome": outcome, "Started": rollout["started"],
            "Ended": time.time(), "Steps": rollout["history"], "Reason": rollout.get("reason")}


def traffic(state: dict[str, Any], metrics: dict[str, Any], window: float = 60.0, now: float | None = None) -> list[dict[str, Any]]:
    """Each fleet's share of requests now, and its requests, 5xx share and p99 over the last `window` s."""
    from workflow.local.fleet_metrics import summarize

    now = time.time() if now is None else now
    rollout = state.get("rollout")
    percent = rollout["percent"] if rollout else 0
    fleets = [(state["EndpointConfigName"], 100 - percent)] + ([(rollout["EndpointConfigName"], percent)] if rollout else [])
    rows = []
    for config, share in fleets:
        summary = summarize(metrics, config, now - window, now + 1) or {}
        rows.append({"EndpointConfigName": config, "TrafficPercent": share, "WindowSeconds": window,
                     "Requests": summary.get("requests", 0), "ErrorRate": summary.get("error_rate"),
                     "P99Ms": None if "p99_ms" not in summary else round(summary["p99_ms"], 2)})
    return rows
