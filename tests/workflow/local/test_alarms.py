"""Local CloudWatch alarms over the router's per-fleet metrics: M of N periods, as CloudWatch counts."""
from __future__ import annotations

from pathlib import Path

import pytest

from workflow.local.alarms import AlarmError, describe_alarm, evaluate, put_metric_alarm
from workflow.local.fleet_metrics import FleetMetrics, read_metrics, summarize, write_metrics


def _alarm(metric: str = "Invocation5XXErrors", threshold: float = 0.1, periods: int = 3, datapoints: int = 2) -> dict:
    statistic = {"Statistic": "Average"} if metric == "Invocation5XXErrors" else {"ExtendedStatistic": "p99"}
    return {"AlarmName": "guard", "MetricName": metric, **statistic, "Threshold": threshold, "Period": 10,
            "EvaluationPeriods": periods, "DatapointsToAlarm": datapoints}


def _metrics(tmp_path: Path, per_period: list[tuple[int, int, float]]) -> dict:
    """Requests, 5xx answers and latency (ms) of fleet 'green' in consecutive 10 s periods from t=1000."""
    metrics = FleetMetrics()
    for period, (requests, errors, milliseconds) in enumerate(per_period):
        for index in range(requests):
            metrics.record("production", "green", 500 if index < errors else 200, milliseconds, now=1000 + period * 10 + 1)
        metrics.record("production", "blue", 500, 1.0, now=1000 + period * 10 + 1)  # another fleet: never counted
    write_metrics(tmp_path, metrics.take(now=1000))
    return read_metrics(tmp_path, "production")


def test_an_alarm_needs_m_of_the_last_n_complete_periods_to_breach(tmp_path: Path) -> None:
    metrics = _metrics(tmp_path, [(100, 20, 5.0), (100, 0, 5.0), (100, 30, 5.0), (100, 50, 5.0)])
    alarm = _alarm()
    assert evaluate(alarm, metrics, "green", 1000, 1025) is None  # periods 0, 1 complete: one breach
    assert "2 of 3 periods" in evaluate(alarm, metrics, "green", 1000, 1030)  # 0.2, 0, 0.3
    assert "0.3, 0.5 > 0.1" in evaluate(alarm, metrics, "green", 1000, 1040)  # the last 3: 0, 0.3, 0.5
    assert evaluate(alarm, metrics, "blue", 1000, 1040) is not None and evaluate(alarm, metrics, "none", 1000, 1040) is None


def test_p99_latency_is_read_from_the_histogram_in_microseconds(tmp_path: Path) -> None:
    metrics = _metrics(tmp_path, [(100, 0, 5.0), (100, 0, 50.0)])
    assert summarize(metrics, "green", 1000, 1010)["p99_ms"] == pytest.approx(5.0, rel=0.06)
    alarm = _alarm("ModelLatency", threshold=20_000, periods=1, datapoints=1)
    assert evaluate(alarm, metrics, "green", 1000, 1010) is None
    assert "ModelLatency" in evaluate(alarm, metrics, "green", 1000, 1020)


def test_alarms_are_stored_by_name_and_checked(tmp_path: Path) -> None:
    put_metric_alarm(tmp_path, _alarm())
    assert describe_alarm(tmp_path, "guard")["DatapointsToAlarm"] == 2
    with pytest.raises(AlarmError, match="does not exist"):
        describe_alarm(tmp_path, "other")
    with pytest.raises(AlarmError, match="AlarmName '../x'"):
        describe_alarm(tmp_path, "../x")
    with pytest.raises(AlarmError, match="MetricName 'CPUUtilization'"):
        put_metric_alarm(tmp_path, dict(_alarm(), MetricName="CPUUtilization"))
    with pytest.raises(AlarmError, match="DatapointsToAlarm 4 must be 1 to EvaluationPeriods"):
        put_metric_alarm(tmp_path, _alarm(datapoints=4))
    with pytest.raises(AlarmError, match="needs ExtendedStatistic 'p99'"):
        put_metric_alarm(tmp_path, dict(_alarm("ModelLatency"), ExtendedStatistic="p50"))
