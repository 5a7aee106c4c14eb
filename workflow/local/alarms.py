"""A local stand-in for the CloudWatch alarms a deployment's AutoRollbackConfiguration names.

    put_metric_alarm(home, {"AlarmName": "ddcicd-rollout-errors", "Namespace": "AWS/SageMaker",
                            "MetricName": "Invocation5XXErrors", "Statistic": "Average",
                            "Threshold": 0.01, "Period": 60, "EvaluationPeriods": 1,
                            "DatapointsToAlarm": 1, "ComparisonOperator": "GreaterThanThreshold"})
    describe_alarm(home, "ddcicd-rollout-errors")

Why a store the runner fills, not a putMetricAlarm Task in the state machine: on AWS the
alarms belong to the stack (infra/pipeline.yaml) like the endpoint's autoscaling, and the
definition only names them in UpdateEndpoint's DeploymentConfig; so the ASL is the same on
both sides and needs no CloudWatch permissions. Locally `ddcicd run` writes the alarms from
the config here before it starts the execution (as `aws deploy` creates the stack), and a
local UpdateEndpoint reads them by name: an unknown name is refused, as AWS refuses it.

Documents use PutMetricAlarm's names. Two metrics are understood, per fleet:
Invocation5XXErrors with Statistic Average (the share of 5xx answers) and ModelLatency with
ExtendedStatistic p99 (microseconds, as SageMaker reports it).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from steps.atomic import write_atomically
from workflow.local.fleet_metrics import summarize

ALARM_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
METRICS = {"Invocation5XXErrors": ("Statistic", "Average"), "ModelLatency": ("ExtendedStatistic", "p99")}


class AlarmError(ValueError):
    """An alarm document or name is invalid or unknown; the message names it."""


def _path(home: Path, name: str) -> Path:
    if not isinstance(name, str) or not ALARM_NAME.match(name):
        raise AlarmError(f"AlarmName {name!r} must be 1-255 characters of A-Z, a-z, 0-9, _, . and -")
    return home / "cloudwatch" / "alarms" / f"{name}.json"


def put_metric_alarm(home: Path, alarm: dict[str, Any]) -> None:
    """PutMetricAlarm: create or replace, after checking what the local evaluation needs."""
    name = alarm.get("AlarmName")
    path = _path(home, name)
    metric = alarm.get("MetricName")
    if metric not in METRICS:
        raise AlarmError(f"alarm {name}: MetricName {metric!r} is not one local rollouts evaluate ({', '.join(METRICS)})")
    key, value = METRICS[metric]
    if alarm.get(key) != value:
        raise AlarmError(f"alarm {name}: {metric} needs {key} {value!r}, got {alarm.get(key)!r}")
    for field in ("Threshold", "Period", "EvaluationPeriods"):
        if not isinstance(alarm.get(field), (int, float)) or alarm[field] <= 0:
            raise AlarmError(f"alarm {name}: {field} must be a positive number, got {alarm.get(field)!r}")
    datapoints = alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"])
    if not isinstance(datapoints, int) or not 1 <= datapoints <= alarm["EvaluationPeriods"]:
        raise AlarmError(f"alarm {name}: DatapointsToAlarm {datapoints!r} must be 1 to EvaluationPeriods")
    if alarm.get("ComparisonOperator", "GreaterThanThreshold") != "GreaterThanThreshold":
        raise AlarmError(f"alarm {name}: only ComparisonOperator GreaterThanThreshold is evaluated locally")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({**alarm, "DatapointsToAlarm": datapoints}, indent=1).encode(), fsync=False)


def describe_alarm(home: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads(_path(home, name).read_text())
    except FileNotFoundError:
        raise AlarmError(f"alarm {name!r} does not exist (local alarms are under {home / 'cloudwatch' / 'alarms'})") from None


def datapoint(alarm: dict[str, Any], metrics: dict[str, Any], fleet: str, start: float, end: float) -> float | None:
    """The alarm's statistic for one period of one fleet, in its metric's unit; None: no data."""
    summary = summarize(metrics, fleet, start, end)
    if summary is None:
        return None
    if alarm["MetricName"] == "Invocation5XXErrors":
        return summary["error_rate"]
    return summary["p99_ms"] * 1000.0  # ModelLatency is in microseconds


def evaluate(alarm: dict[str, Any], metrics: dict[str, Any], fleet: str, since: float, now: float) -> str | None:
    """Why the alarm is in ALARM (M of the last N complete periods since `since` breach), or None.

    Periods are counted from `since` (when the fleet got traffic); missing data does not
    breach (CloudWatch's TreatMissingData notBreaching), so an idle canary never rolls back.
    """
    period = float(alarm["Period"])
    complete = int((now - since) // period)
    first = max(0, complete - int(alarm["EvaluationPeriods"]))
    values = [datapoint(alarm, metrics, fleet, since + index * period, since + (index + 1) * period)
              for index in range(first, complete)]
    breaching = [value for value in values if value is not None and value > alarm["Threshold"]]
    if len(breaching) < int(alarm["DatapointsToAlarm"]):
        return None
    shown = ", ".join(f"{value:g}" for value in breaching)
    return (f"alarm {alarm['AlarmName']} in ALARM: {alarm['MetricName']} {shown} > {alarm['Threshold']:g} "
            f"in {len(breaching)} of {len(values)} periods of {period:g} s")


def put_rollout_alarms(home: Path, config: Any) -> list[str]:
    """Put the alarms a guarded promotion of `config` names (workflow/definition/endpoints.py's
    rollout_alarms), as the stack does on AWS; returns their names. `ddcicd run` calls it."""
    from workflow.definition.endpoints import rollout_alarms

    alarms = rollout_alarms(config)
    for alarm in alarms:
        put_metric_alarm(home, alarm)
    return [alarm["AlarmName"] for alarm in alarms]
