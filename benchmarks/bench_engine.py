"""State transitions per second: the local engine vs moto's Step Functions interpreter, same run.

Workloads (the same ASL documents on both engines):
  chain  a 1,000-state Pass chain                      (1,000 transitions)
  map    an inline Map over 1,000 items, Pass inside   (1,001 transitions)
Both engines start the execution and are timed until it has ended. Our engine runs with
SQLite persistence on (every event committed as it happens) and the wall clock; moto runs
with `mock_aws(config={"stepfunctions": {"execute_state_machine": True}})`, its port of
LocalStack's interpreter.

Also measured: engine overhead per Task state (a chain of 200 Tasks calling an in-process
no-op Lambda, persistence on), target <= 5 ms.

    .venv/bin/python benchmarks/bench_engine.py [--repeat 3]

The last line is `RESULT engine <ratio>x target 5x PASS|FAIL`, where ratio is the smaller
of the two speed-ups and PASS also needs the Task overhead target.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow.engine import Engine, SystemClock  # noqa: E402

TARGET_RATIO = 5.0
TARGET_TASK_MS = 5.0
ROLE = "arn:aws:iam::123456789012:role/bench"


def pass_chain(length: int) -> dict[str, Any]:
    states = {f"P{index}": {"Type": "Pass", "Next": f"P{index + 1}"} for index in range(length - 1)}
    states[f"P{length - 1}"] = {"Type": "Pass", "End": True}
    return {"StartAt": "P0", "States": states}


def pass_map() -> dict[str, Any]:
    return {"StartAt": "M", "States": {"M": {"Type": "Map", "End": True, "ItemProcessor": {
        "ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": True}}}}}}


def task_chain(length: int) -> dict[str, Any]:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:noop"
    states = {f"T{index}": {"Type": "Task", "Resource": arn, "Next": f"T{index + 1}"} for index in range(length - 1)}
    states[f"T{length - 1}"] = {"Type": "Task", "Resource": arn, "End": True}
    return {"StartAt": "T0", "States": states}


def time_ours(directory: Path, definition: dict[str, Any], execution_input: Any, functions: dict[str, Any] | None = None) -> float:
    engine = Engine(directory / f"bench-{time.monotonic_ns()}.sqlite3", clock=SystemClock(), functions=functions)
    arn = engine.create_state_machine("bench", definition)
    started = time.perf_counter()
    result = engine.run_execution(arn, execution_input)
    elapsed = time.perf_counter() - started
    if result["status"] != "SUCCEEDED":
        raise RuntimeError(f"our engine ended {result['status']}: {result.get('error')} {result.get('cause')}")
    return elapsed


def time_moto(definition: dict[str, Any], execution_input: Any) -> float:
    import boto3
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(name="bench", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
        started = time.perf_counter()
        execution = client.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))["executionArn"]
        while True:
            status = client.describe_execution(executionArn=execution)["status"]
            if status != "RUNNING":
                break
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
    if status != "SUCCEEDED":
        raise RuntimeError(f"moto ended {status}")
    return elapsed


def best(measure: Callable[[], float], repeat: int) -> float:
    return min(measure() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest counts")
    parser.add_argument("--size", type=int, default=1000, help="states in the chain / items in the Map")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    size = args.size
    workloads = {
        "chain": (pass_chain(size), {}, size),
        "map": (pass_map(), list(range(size)), size + 1),
    }
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as scratch:
        directory = Path(scratch)
        for name, (definition, execution_input, transitions) in workloads.items():
            ours = best(lambda: time_ours(directory, definition, execution_input), args.repeat)
            theirs = best(lambda: time_moto(definition, execution_input), args.repeat)
            ratio = theirs / ours
            ratios.append(ratio)
            print(f"{name:6s} ours {transitions / ours:10.0f} transitions/s ({ours * 1000:8.1f} ms)   "
                  f"moto {transitions / theirs:10.0f} transitions/s ({theirs * 1000:8.1f} ms)   {ratio:6.1f}x")
        tasks = 200
        per_task = []
        for _ in range(args.repeat):
            elapsed = time_ours(directory, task_chain(tasks), {"x": 1}, {"noop": lambda event, context: event})
            per_task.append(elapsed / tasks * 1000)
        task_ms = min(per_task)
        print(f"task   engine overhead per Task state with SQLite on: {task_ms:.2f} ms "
              f"(median {statistics.median(per_task):.2f} ms, target <= {TARGET_TASK_MS} ms)")
    ratio = min(ratios)
    passed = ratio >= TARGET_RATIO and task_ms <= TARGET_TASK_MS
    print(f"RESULT engine {ratio:.1f}x target {TARGET_RATIO:g}x {'PASS' if passed else 'FAIL'}")


if __name__ == "__main__":
    main()
