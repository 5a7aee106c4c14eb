"""The stack's rollout alarms kept in step with the config's `endpoint.rollout`.

    stack_parameters(config)          # {"RolloutErrorRate": "0.01", ...}: infra/pipeline.yaml's overrides
    check_rollout_alarms(context)     # AwsError naming each difference, before anything is deployed

On AWS the alarms a guarded promotion names belong to the stack (infra/pipeline.yaml), while
their thresholds are read from the config everywhere else (the local alarms, the README's
numbers). `ddcicd aws stack-parameters` prints the overrides that make the stack's alarms
the config's, and `aws deploy` and `aws models deploy` refuse to go on when the alarms in
CloudWatch say otherwise: a rollout judged by thresholds nobody configured is worse than none.
"""
from __future__ import annotations

from typing import Any

from workflow.aws.clients import AwsContext, AwsError
from workflow.config import PipelineConfig
from workflow.definition.endpoints import deployment_config, rollout_alarms

COMPARED = ("Namespace", "MetricName", "Statistic", "ExtendedStatistic", "Threshold", "Period",
            "EvaluationPeriods", "DatapointsToAlarm", "ComparisonOperator")  # fmt: skip


def stack_parameters(config: PipelineConfig) -> dict[str, str]:
    """infra/pipeline.yaml's parameters that must match the config, as `--parameter-overrides` takes them.

    The stack gives both alarms one period, evaluation count and datapoints count; a config
    that sets them apart cannot be expressed there, and is refused with both values.
    """
    rollout = config.endpoint.rollout
    shared = {}
    for key, field in (("RolloutAlarmPeriod", "period_seconds"), ("RolloutEvaluationPeriods", "evaluation_periods"),
                       ("RolloutDatapointsToAlarm", "datapoints_to_alarm")):
        errors, latency = getattr(rollout.error_rate, field), getattr(rollout.p99_latency_ms, field)
        if errors != latency:
            raise AwsError(f"infra/pipeline.yaml gives both rollout alarms one {key}, but the config has "
                           f"endpoint.rollout.error_rate.{field}={errors} and endpoint.rollout.p99_latency_ms.{field}={latency}")
        shared[key] = str(errors)
    return {
        "ProjectName": config.name,
        "DataPrefix": config.aws.prefix,
        "RolloutErrorRate": f"{rollout.error_rate.threshold:g}",
        "RolloutP99LatencyMicroseconds": f"{rollout.p99_latency_ms.threshold * 1000:g}",
        **shared,
    }


def overrides_text(config: PipelineConfig) -> str:
    return " ".join(f"{key}={value}" for key, value in stack_parameters(config).items())


def check_rollout_alarms(context: AwsContext) -> list[str]:
    """The names of the alarms a guarded promotion will name, checked against CloudWatch; [] for ALL_AT_ONCE.

    AwsError lists every alarm that is missing or differs from the config, with the command
    that fixes it.
    """
    config = context.config
    if deployment_config(config) is None:
        return []
    wanted = {alarm["AlarmName"]: alarm for alarm in rollout_alarms(config)}
    found = {alarm["AlarmName"]: alarm for alarm in context.client("cloudwatch").describe_alarms(
        AlarmNames=list(wanted), AlarmTypes=["MetricAlarm"])["MetricAlarms"]}  # fmt: skip
    problems = []
    for name, alarm in wanted.items():
        actual = found.get(name)
        if actual is None:
            problems.append(f"{name} does not exist")
            continue
        for key in COMPARED:
            if _differs(alarm.get(key), actual.get(key)):
                problems.append(f"{name}.{key} is {actual.get(key)!r}, the config says {alarm.get(key)!r}")
        if _dimensions(alarm) != _dimensions(actual):
            problems.append(f"{name} watches {_dimensions(actual)}, the config's production is {_dimensions(alarm)}")
    if problems:
        raise AwsError("endpoint.rollout's alarms differ from CloudWatch's: " + "; ".join(problems)
                       + ". Deploy infra/pipeline.yaml with --parameter-overrides $(ddcicd aws stack-parameters)")
    return list(wanted)


def _differs(wanted: Any, actual: Any) -> bool:
    if isinstance(wanted, (int, float)) and isinstance(actual, (int, float)):
        return abs(float(wanted) - float(actual)) > 1e-9 * max(1.0, abs(float(wanted)))
    return wanted != actual


def _dimensions(alarm: dict[str, Any]) -> dict[str, str]:
    return {item["Name"]: item["Value"] for item in alarm.get("Dimensions", [])}


__all__ = ["check_rollout_alarms", "overrides_text", "stack_parameters"]
