"""Guarded rollouts: how fast a broken canary is rolled back, and what weighted routing costs.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_rollout.py [--seconds 5] [--rounds 2]

1. Rollback: production serves a good model (ResNet-20, 3x32x32, untrained: weights do not
   change the cost); UpdateEndpoint to a canary (25 %) whose model answers every second
   request with a 500 (DDCICD_SERVE_FAIL_EVERY=2 in its container Environment), guarded by
   an Invocation5XXErrors alarm of 2 periods of 2 s, 2 of 2 to alarm: a 4 s evaluation
   window. Under steady load (4 clients), the time from the first bad response the clients
   see to the rollback (the endpoint's state file has no rollout any more, so the router
   sends nothing to the canary; polled every 20 ms without moving the endpoint along), and
   to the start of the last request routed to the canary. Target: <= window + 2 s.
2. Router overhead: p50 latency at concurrency 8 through the router, for the same two
   server processes (one worker each) behind one endpoint, once as one fleet of two
   instances (weighted routing off) and once as a rollout holding 50 % on each (on).
   Rounds alternate off/on; the median p50 of each is compared. Target: on <= 1.05 x off.

Last line: `RESULT rollout <p50 off/on>x target 0.95x PASS|FAIL` (PASS needs the rollback
target as well). The machine is shared (2 cores, other jobs): figures are noisy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from steps.export import export_model_archive  # noqa: E402
from steps.model import ResNet, ResNetConfig  # noqa: E402
from workflow.local.alarms import put_metric_alarm  # noqa: E402
from workflow.local.endpoints import LocalEndpoints  # noqa: E402
from workflow.local.runtime import ensure_runtime  # noqa: E402
from workflow.local.steady_load import SteadyLoad  # noqa: E402

PERIOD, PERIODS = 2, 2
WINDOW = PERIOD * PERIODS
OVERHEAD_TARGET = 1.05


def _jpeg() -> bytes:
    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480))
    return cv2.imencode(".jpg", image)[1].tobytes()


def _config(endpoints: LocalEndpoints, name: str, archive: Path, instances: int = 1,
            environment: dict[str, str] | None = None) -> None:
    container = {"ModelDataUrl": str(archive), **({"Environment": environment} if environment else {})}
    endpoints.create_model(f"{name}-model", primary_container=container)
    endpoints.create_endpoint_config(name, [{"VariantName": name, "ModelName": f"{name}-model",
                                             "InitialInstanceCount": instances}])


def _wait(endpoints: LocalEndpoints, endpoint: str, leaving: str) -> dict:
    while (description := endpoints.describe_endpoint(endpoint))["EndpointStatus"] == leaving:
        time.sleep(0.05)
    return description


def _canary(percent: int, wait: int, alarms: list[str]) -> dict:
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
        "Type": "CANARY", "WaitIntervalInSeconds": wait, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": percent}}},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]}}


def rollback_seconds(endpoints: LocalEndpoints, archive: Path, jpeg: bytes, run: int) -> tuple[float, float]:
    """(first bad answer -> rollout gone from the state, first bad answer -> last request routed to the canary)."""
    endpoint = f"rollback{run}"
    _config(endpoints, f"good{run}", archive)
    _config(endpoints, f"bad{run}", archive, environment={"DDCICD_SERVE_FAIL_EVERY": "2"})
    endpoints.create_endpoint(endpoint, f"good{run}")
    _wait(endpoints, endpoint, "Creating")
    state_path = endpoints.state_path(endpoint)
    with SteadyLoad(ensure_runtime(endpoints.root.parent), endpoint, jpeg, concurrency=4) as load:
        time.sleep(0.5)
        endpoints.update_endpoint(endpoint, f"bad{run}", _canary(25, 600, ["bench-errors"]))
        started = time.monotonic()
        saw_rollout = False
        back_at = None
        while time.monotonic() - started < 120:
            state = json.loads(state_path.read_text())
            saw_rollout = saw_rollout or bool(state.get("rollout"))
            if saw_rollout and not state.get("rollout"):
                back_at = time.time()
                break
            time.sleep(0.02)
        time.sleep(0.5)
    answers = load.stop()
    endpoints.delete_endpoint(endpoint)
    if back_at is None:
        raise SystemExit("the broken canary was not rolled back within 120 s")
    first_bad = min(answer.ended for answer in answers if answer.status != 200)
    last_canary = max(answer.started for answer in answers if answer.variant == f"bad{run}" or answer.status != 200)
    return back_at - first_bad, last_canary - first_bad


def p50_ms(url: str, endpoint: str, jpeg: bytes, seconds: float) -> float:
    with SteadyLoad(url, endpoint, jpeg, concurrency=8) as load:
        time.sleep(seconds)
    answers = load.stop()
    assert all(answer.status == 200 for answer in answers), "a request failed during the overhead run"
    return statistics.median(answer.ended - answer.started for answer in answers) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per overhead measurement")
    parser.add_argument("--rounds", type=int, default=2, help="rollbacks, and off/on overhead pairs")
    args = parser.parse_args(argv)
    jpeg = _jpeg()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as scratch:
        home = Path(scratch)
        archive = export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), home / "model", (3, 32, 32))
        endpoints = LocalEndpoints(home / "home", cpu_count=1)  # one worker per server in every layout
        try:
            put_metric_alarm(endpoints.root.parent, {
                "AlarmName": "bench-errors", "MetricName": "Invocation5XXErrors", "Statistic": "Average",
                "Threshold": 0.1, "Period": PERIOD, "EvaluationPeriods": PERIODS, "DatapointsToAlarm": PERIODS})
            rollbacks = [rollback_seconds(endpoints, archive, jpeg, run) for run in range(args.rounds)]
            for to_state, to_last in rollbacks:
                print(f"rollback: first bad answer -> traffic back {to_state:.2f} s, -> last canary request "
                      f"{to_last:.2f} s (window {WINDOW} s)")
            worst = max(max(pair) for pair in rollbacks)

            _config(endpoints, "pair", archive, instances=2)
            _config(endpoints, "blue", archive)
            _config(endpoints, "green", archive)
            endpoints.create_endpoint("off", "pair")
            endpoints.create_endpoint("on", "blue")
            _wait(endpoints, "off", "Creating")
            _wait(endpoints, "on", "Creating")
            endpoints.update_endpoint("on", "green", _canary(50, 3600, []))
            while not json.loads(endpoints.state_path("on").read_text()).get("rollout"):
                time.sleep(0.05)
            url = ensure_runtime(endpoints.root.parent)
            p50_ms(url, "off", jpeg, 1.0)  # warm both paths
            p50_ms(url, "on", jpeg, 1.0)
            off, on = [], []
            for _ in range(args.rounds):
                off.append(p50_ms(url, "off", jpeg, args.seconds))
                on.append(p50_ms(url, "on", jpeg, args.seconds))
            split = endpoints.traffic("on")["Fleets"]
            print("weighted run split: " + ", ".join(f"{fleet['EndpointConfigName']} {fleet['Requests']} requests"
                                                     for fleet in split))
        finally:
            endpoints.shutdown()
    p50_off, p50_on = statistics.median(off), statistics.median(on)
    ratio = p50_off / p50_on
    print(f"p50 at concurrency 8: off {', '.join(f'{value:.2f}' for value in off)} ms, "
          f"on {', '.join(f'{value:.2f}' for value in on)} ms; medians {p50_off:.2f} / {p50_on:.2f} ms "
          f"(on adds {100 * (p50_on / p50_off - 1):+.1f} %)")
    rollback_ok = worst <= WINDOW + 2.0
    overhead_ok = p50_on <= OVERHEAD_TARGET * p50_off
    print(f"rollback worst {worst:.2f} s vs target {WINDOW + 2.0:g} s: {'ok' if rollback_ok else 'MISSED'}; "
          f"weighted routing overhead {'ok' if overhead_ok else 'MISSED'} (shared 2-core machine: noisy)")
    verdict = "PASS" if rollback_ok and overhead_ok else "FAIL"
    print(f"RESULT rollout {ratio:.3f}x target {1 / OVERHEAD_TARGET:.2f}x {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
