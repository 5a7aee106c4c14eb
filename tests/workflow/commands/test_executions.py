"""`ddcicd executions list|describe|history`, `ddcicd stop` and `ddcicd redrive` over a real store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from workflow.cli import cli
from workflow.engine import Engine, VirtualClock
from workflow.home import engine_store_path

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DDCICD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def seed(home: Path) -> Engine:
    engine = Engine(engine_store_path(), clock=VirtualClock())
    ok = engine.create_state_machine("demo", {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"n": 1}, "End": True}}})
    bad = engine.create_state_machine("broken", {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Gate.Failed",
                                                                                   "Cause": "accuracy 0.41 < 0.80"}}})
    engine.run_execution(ok, {}, name="good-run")
    engine.run_execution(bad, {}, name="bad-run")
    return engine


def test_list_shows_executions_and_json_is_parseable(home: Path) -> None:
    seed(home)
    runner = CliRunner()
    result = runner.invoke(cli, ["executions", "list"])
    assert result.exit_code == 0, result.output
    assert "good-run" in result.output and "SUCCEEDED" in result.output and "bad-run" in result.output
    listed = json.loads(runner.invoke(cli, ["executions", "list", "--json"]).output)
    assert {item["name"]: item["status"] for item in listed} == {"good-run": "SUCCEEDED", "bad-run": "FAILED"}


def test_describe_and_history_show_what_happened(home: Path) -> None:
    seed(home)
    runner = CliRunner()
    described = runner.invoke(cli, ["executions", "describe", "bad-run"])
    assert described.exit_code == 0, described.output
    assert "Gate.Failed" in described.output and "accuracy 0.41 < 0.80" in described.output
    history = runner.invoke(cli, ["executions", "history", "bad-run"])
    lines = history.output.splitlines()
    assert [line.split()[3] for line in lines] == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    events = json.loads(runner.invoke(cli, ["executions", "history", "good-run", "--json"]).output)
    assert events[-1]["executionSucceededEventDetails"]["output"] == '{"n":1}'


def test_unknown_execution_and_missing_store_are_one_line_errors(home: Path) -> None:
    env = {**os.environ, "DDCICD_HOME": str(home), "PYTHONPATH": str(REPO)}
    missing = subprocess.run([sys.executable, "-m", "workflow.cli", "executions", "list"], cwd=REPO, env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no local executions:") and missing.stderr.count("\n") == 1
    seed(home)
    unknown = subprocess.run([sys.executable, "-m", "workflow.cli", "executions", "describe", "nope"], cwd=REPO, env=env,
                             capture_output=True, text=True)
    assert unknown.returncode == 2
    assert "'nope' does not exist" in unknown.stderr


def test_stop_refuses_a_finished_execution(home: Path) -> None:
    seed(home)
    result = CliRunner().invoke(cli, ["stop", "good-run"], standalone_mode=True)
    assert result.exit_code == 2
    assert "is SUCCEEDED, not RUNNING" in result.output


def test_cli_start_up_does_not_import_the_heavy_sdks() -> None:
    code = "import sys, workflow.cli, workflow.commands.executions; print('sagemaker' in sys.modules, 'stepfunctions' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


def test_redrive_resumes_the_failed_state_and_exits_1_when_it_fails_again(home: Path) -> None:
    seed(home)
    env = {**os.environ, "DDCICD_HOME": str(home), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "workflow.cli", "redrive", "bad-run"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "ExecutionRedriven" in result.stdout and "bad-run: FAILED (redrive #1)" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("error: execution bad-run ended FAILED in state ")
    assert "Gate.Failed: accuracy 0.41 < 0.80" in result.stderr.splitlines()[-1]
    again = subprocess.run([sys.executable, "-m", "workflow.cli", "redrive", "good-run"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "only FAILED, ABORTED or TIMED_OUT can be redriven" in again.stderr


def test_stop_reaches_an_execution_running_in_another_process(home: Path) -> None:
    env = {**os.environ, "DDCICD_HOME": str(home), "PYTHONPATH": str(REPO)}
    store = engine_store_path()
    store.parent.mkdir(parents=True, exist_ok=True)
    slow_run = REPO / "tests" / "workflow" / "engine" / "fixtures" / "slow_run.py"
    process = subprocess.Popen([sys.executable, str(slow_run), str(store)], cwd=REPO, env=env)
    try:
        runner = CliRunner()
        deadline = time.monotonic() + 60
        while "followed" not in runner.invoke(cli, ["executions", "list"]).output:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        stopped = runner.invoke(cli, ["stop", "followed", "--cause", "test stop"])
        assert stopped.exit_code == 0, stopped.output
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    described = json.loads(CliRunner().invoke(cli, ["executions", "describe", "followed", "--json"]).output)
    assert (described["status"], described["error"], described["cause"]) == ("ABORTED", "Stopped", "test stop")


def test_history_follow_prints_events_until_the_execution_ends(home: Path) -> None:
    engine = Engine(engine_store_path())
    machine = engine.create_state_machine("slow", {"StartAt": "Hold", "States": {
        "Hold": {"Type": "Wait", "Seconds": 1, "Next": "Done"}, "Done": {"Type": "Pass", "End": True}}})  # fmt: skip
    engine.start_execution(machine, {}, name="followed-run")
    result = CliRunner().invoke(cli, ["executions", "history", "followed-run", "--follow"])
    assert result.exit_code == 0, result.output
    kinds = [line.split()[1] for line in result.output.splitlines()]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded"
    assert kinds.count("WaitStateExited") == 1 and len(kinds) == len(set(kinds))  # each event once
    assert engine.wait(engine.describe_execution("followed-run")["executionArn"])["status"] == "SUCCEEDED"
