"""Faults, decisions and approvals of the main job, end to end through the CLI, with real processes.

One home serves every test (a production endpoint from a first tiny run, then):

* the fault matrix: ONE execution broken in turn at Process, Train, the staging endpoint,
  Evaluate, LoadTest, the production update and the clean-up. Each `ddcicd run`/`redrive`
  ends FAILED at the broken state, the fault is repaired, the next one set up further on,
  and the next redrive resumes exactly there: no state that finished in an earlier
  attempt is entered again. The last redrive SUCCEEDS.
* decisions: a rejected model ends QualityGateFailed with staging deleted and production
  untouched, and a redrive of it promotes nothing.
* approval: approve, reject, time out, and approve after the engine was killed and the
  execution redriven.

The damage is what happens to real runs: an unreadable object in S3 (a corrupt CSV,
checkpoint, RecordIO file or index) and SageMaker refusing calls (an API fault experiment
in the manner of AWS FIS, workflow/local/api_faults.py).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from workflow.approval import pending_approval
from workflow.engine import Engine
from workflow.engine.history import HistoryStore
from workflow.local.api_faults import start_experiment, stop_experiment
from workflow.local.endpoints import LocalEndpoints
from workflow.local.model_registry import ModelRegistry
from workflow.local.runtime import stop_runtime
from workflow.local.s3 import S3Root
from workflow.local.sns_integration import read_messages

pytestmark = pytest.mark.slow

# Retries of transient AWS errors kept short: a fault should end the run in seconds.
QUICK_RETRY = ["retry.max_attempts=1", "retry.interval_seconds=1"]
PRODUCTION = "ddcicd-production"


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "DDCICD_HOME": str(home)}


def ddcicd(home: Path, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflow.cli", *arguments], cwd=home, env=environment(home),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start(home: Path, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "workflow.cli", *arguments], cwd=home, env=environment(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def options(settings: list[str], *more: str) -> list[str]:
    return [part for pair in [*settings, *QUICK_RETRY, *more] for part in ("--set", pair)]


def executions(home: Path) -> list[dict[str, Any]]:
    """Newest first, as `ddcicd executions list --json` prints them."""
    result = ddcicd(home, "executions", "list", "--json")
    return json.loads(result.stdout) if result.returncode == 0 else []


def execution(home: Path, name: str) -> dict[str, Any]:
    return next(item for item in executions(home) if item["name"] == name)


def generations(home: Path, execution_arn: str) -> list[dict[str, set[str] | list[str]]]:
    """Per redrive generation: the top-level states entered (in order) and those that exited."""
    found: list[dict[str, Any]] = [{"entered": [], "exited": set()}]
    for event in HistoryStore(home / "engine.sqlite3").events(execution_arn):
        if event.type == "ExecutionRedriven":
            found.append({"entered": [], "exited": set()})
        elif not event.scope and event.type.endswith("StateEntered"):
            found[-1]["entered"].append(event.details["name"])
        elif not event.scope and event.type.endswith("StateExited"):
            found[-1]["exited"].add(event.details["name"])
    return found


def production_config(home: Path) -> str:
    return LocalEndpoints(home).describe_endpoint(PRODUCTION)["EndpointConfigName"]


def endpoint_names(home: Path) -> list[str]:
    return [item["EndpointName"] for item in LocalEndpoints(home).list_endpoints()]


def make_production_beatable(home: Path) -> None:
    """Champion/challenger compares with the champion's evaluation (the newest approved model
    version's ModelMetrics in the registry): make any new model better, so a run's promotion
    does not depend on which of two 1-epoch models is luckier."""
    registry = ModelRegistry(home / "model_registry.sqlite3")
    [champion] = registry.list_model_packages({"ModelPackageGroupName": "ddcicd", "ModelApprovalStatus": "Approved",
                                               "SortOrder": "Descending", "MaxResults": 1})["ModelPackageSummaryList"]  # fmt: skip
    described = registry.describe_model_package({"ModelPackageName": champion["ModelPackageArn"]})
    path = S3Root(home / "s3").path(described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"])
    document = json.loads(path.read_text())
    document.update(accuracy=0.0, log_loss=1000.0)
    path.write_text(json.dumps(document))


def wait_for(predicate: Any, timeout: float, what: str, process: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended while waiting for {what}: " + "".join(process.communicate()))
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def shut_down(home: Path) -> None:
    """Delete every endpoint of the home and stop its runtime router."""
    endpoints = LocalEndpoints(home)
    for endpoint in endpoints.list_endpoints():
        endpoints.delete_endpoint(endpoint["EndpointName"])
    stop_runtime(home)


# ------------------------------------------------------------------------------ the shared home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_run_settings: list[str]) -> Path:
    path = tmp_path_factory.mktemp("redrive-home")
    first = ddcicd(path, "run", "--quiet", *options(tiny_run_settings))
    assert first.returncode == 0, first.stdout + first.stderr
    yield path
    shut_down(path)


def runs_dir(home: Path, name: str) -> Path:
    return home / "s3" / "ddcicd-local" / "ddcicd" / "runs" / name


def corrupt(path: Path, keep: Path) -> None:
    """Replace an object with garbage, keeping the original to repair it later (links are broken, not written through)."""
    shutil.copyfile(path, keep)
    path.unlink()
    path.write_bytes(b"\x00garbage\x00" * 8)


def repair(path: Path, keep: Path) -> None:
    path.unlink()
    shutil.copyfile(keep, path)


# ------------------------------------------------------------------------------ fault matrix


@pytest.fixture(scope="module")
def fault_matrix(home: Path, tiny_run_settings: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs the chain once; each step records (state it must stop in, the command's result)."""
    spare = tmp_path_factory.mktemp("originals")
    dataset = home / "broken-dataset"
    shutil.copytree(next((home / "datasets").iterdir()), dataset)
    (dataset / "driver_imgs_list.csv").write_text("not,the,kaggle,columns\n")
    make_production_beatable(home)
    steps: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    result = ddcicd(home, "run", "--quiet", *options(tiny_run_settings), "--data", str(dataset))
    steps.append(("Process", result))
    name = next(item["name"] for item in executions(home) if item["status"] == "FAILED")
    run = runs_dir(home, name)
    staged_csv = next((home / "s3").glob("ddcicd-local/ddcicd/datasets/broken-dataset-*/driver_imgs_list.csv"))
    staged_csv.unlink()
    shutil.copyfile(next((home / "datasets").iterdir()) / "driver_imgs_list.csv", staged_csv)
    checkpoint = run / "checkpoints" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"not a torch checkpoint")

    def redrive(expected_state: str) -> None:
        steps.append((expected_state, ddcicd(home, "redrive", name)))

    redrive("Train")
    checkpoint.unlink()
    start_experiment(home, "sagemaker", ["CreateEndpoint"], "throttle")
    redrive("CreateStagingEndpointAgain")
    stop_experiment(home, "sagemaker")
    corrupt(run / "processed" / "validation.rec", spare / "validation.rec")
    redrive("Evaluate")
    repair(run / "processed" / "validation.rec", spare / "validation.rec")
    corrupt(run / "processed" / "validation.idx", spare / "validation.idx")
    redrive("LoadTest")
    repair(run / "processed" / "validation.idx", spare / "validation.idx")
    production_before = production_config(home)
    start_experiment(home, "sagemaker", ["UpdateEndpoint"], "internal")
    redrive("UpdateProductionEndpointAgain")
    production_after_update_fault = production_config(home)
    start_experiment(home, "sagemaker", ["DeleteEndpoint"], "unavailable")
    redrive("DeleteStagingEndpoint")
    stop_experiment(home, "sagemaker")
    redrive("PipelineSucceeded")
    return {"name": name, "steps": steps, "production": (production_before, production_after_update_fault),
            "arn": execution(home, name)["executionArn"]}


STAGES = ["Process", "Train", "CreateStagingEndpointAgain", "Evaluate", "LoadTest", "UpdateProductionEndpointAgain",
          "DeleteStagingEndpoint"]  # fmt: skip


@pytest.mark.parametrize("index", range(len(STAGES)), ids=STAGES)
def test_a_fault_stops_the_run_at_the_broken_state(fault_matrix: dict[str, Any], index: int) -> None:
    name = fault_matrix["name"]
    state, result = fault_matrix["steps"][index]
    assert state == STAGES[index]
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"in state {state}:" in result.stdout, result.stdout
    assert f"ddcicd redrive {name}" in result.stdout and f"ddcicd cleanup --execution {name}" in result.stdout
    assert "a fault: everything made so far is kept" in result.stdout
    assert f"resume: ddcicd redrive {name}" in result.stderr
    if index >= 3:  # the staging endpoint exists from then on: kept, with its price on AWS
        assert f"staging endpoint {name}-staging (InService; 1 x ml.m5.large: $0.115/h on AWS" in result.stdout


def test_each_redrive_resumes_where_the_last_attempt_broke(fault_matrix: dict[str, Any], home: Path) -> None:
    found = generations(home, fault_matrix["arn"])
    assert len(found) == len(STAGES) + 1
    finished: set[str] = set()
    for number, generation in enumerate(found):
        if number > 0:
            assert generation["entered"][0] == STAGES[number - 1], (number, generation["entered"])
            again = finished & set(generation["entered"])
            assert not again, f"redrive #{number} ran again: {sorted(again)}"
        finished |= generation["exited"]


def test_after_the_repairs_the_redriven_run_promotes(fault_matrix: dict[str, Any], home: Path) -> None:
    name = fault_matrix["name"]
    state, last = fault_matrix["steps"][-1]
    assert last.returncode == 0, last.stdout + last.stderr
    assert f"{name}: SUCCEEDED (redrive #{len(STAGES)})" in last.stdout
    before, after_fault = fault_matrix["production"]
    assert after_fault == before, "a refused UpdateEndpoint must leave production as it was"
    assert production_config(home) == f"{name}-production-config"
    assert f"{name}-staging" not in endpoint_names(home)


# ------------------------------------------------------------------------------ decisions


def test_a_rejected_model_is_a_decision_a_redrive_does_not_change(home: Path, tiny_run_settings: list[str]) -> None:
    production = production_config(home)
    rejected = ddcicd(home, "run", "--quiet", *options(tiny_run_settings, "quality_gate.min_accuracy=1"))
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    assert "in state PipelineFailed: QualityGateFailed" in rejected.stderr
    assert "a decision, not a fault" in rejected.stdout and "would end the same way" in rejected.stdout
    name = executions(home)[0]["name"]
    assert f"{name}-staging" not in endpoint_names(home), "a decision deletes the staging endpoint"
    assert production_config(home) == production
    again = ddcicd(home, "redrive", name)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "ended by a decision (QualityGateFailed); a redrive ends the same way" in again.stderr
    assert execution(home, name)["status"] == "FAILED"
    entered = generations(home, execution(home, name)["executionArn"])[1]["entered"]
    assert entered == ["PipelineFailed"]
    assert production_config(home) == production


# ------------------------------------------------------------------------------ approval


def waiting(home: Path) -> Any:
    engine = Engine(home / "engine.sqlite3")
    for item in engine.list_executions(status_filter="RUNNING"):
        pending = pending_approval(engine, item["executionArn"])
        if pending is not None:
            return pending
    return None


def start_with_approval(home: Path, settings: list[str], *more: str) -> tuple[subprocess.Popen[str], Any]:
    make_production_beatable(home)
    run = start(home, "run", "--quiet", *options(settings, "approval.required=true", *more))
    return run, wait_for(lambda: waiting(home), 300, "the approval request", run)


def test_approve_promotes_with_the_figures_published(home: Path, tiny_run_settings: list[str]) -> None:
    run, pending = start_with_approval(home, tiny_run_settings)
    [message] = [item for item in read_messages(home, "arn:aws:sns:us-east-1:000000000000:ddcicd-approval")
                 if json.loads(item["Message"])["execution_name"] == pending.execution_name]  # fmt: skip
    body = json.loads(message["Message"])
    assert body["task_token"] == pending.token
    assert body["evaluation"]["accuracy"] == pending.evaluation["accuracy"] and "p99_ms" in body["load_test"]
    assert body["commands"]["approve"] == f"ddcicd approve {pending.execution_name}"
    approved = ddcicd(home, "approve", pending.execution_name)
    assert approved.returncode == 0, approved.stderr
    assert f"{pending.execution_name}: approved by " in approved.stdout and "evaluation: accuracy" in approved.stdout
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stdout + stderr
    assert production_config(home) == f"{pending.execution_name}-production-config"
    nothing = ddcicd(home, "approve", pending.execution_name)
    assert nothing.returncode == 2 and "is SUCCEEDED and not waiting for an approval" in nothing.stderr


def test_reject_cleans_up_and_names_the_reason(home: Path, tiny_run_settings: list[str]) -> None:
    production = production_config(home)
    run, pending = start_with_approval(home, tiny_run_settings)
    rejected = ddcicd(home, "approve", pending.execution_name, "--reject", "--reason", "p99 too close to the SLO")
    assert rejected.returncode == 0, rejected.stderr
    assert "rejected by" in rejected.stdout and "p99 too close to the SLO" in rejected.stdout
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stdout + stderr
    assert "ApprovalRejected: p99 too close to the SLO" in stderr
    assert production_config(home) == production
    assert f"{pending.execution_name}-staging" not in endpoint_names(home)


def test_an_approval_nobody_gives_times_out_as_a_rejection(home: Path, tiny_run_settings: list[str]) -> None:
    production = production_config(home)
    run, pending = start_with_approval(home, tiny_run_settings, "approval.timeout_seconds=2")
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stdout + stderr
    assert "ApprovalTimedOut" in stderr and "a decision" in stdout
    assert production_config(home) == production
    assert f"{pending.execution_name}-staging" not in endpoint_names(home)


def test_an_approval_survives_a_killed_engine_and_a_redrive(home: Path, tiny_run_settings: list[str]) -> None:
    run, first = start_with_approval(home, tiny_run_settings)
    run.kill()  # SIGKILL while the run waits: nothing recorded, the token dies with the attempt
    run.communicate(timeout=60)
    assert execution(home, first.execution_name)["status"] == "ABORTED"
    assert ddcicd(home, "approve", first.execution_name).returncode == 2
    redriven = start(home, "redrive", first.execution_name)
    second = wait_for(lambda: waiting(home), 120, "the redriven approval request", redriven)
    assert second.execution_name == first.execution_name and second.token != first.token
    approved = ddcicd(home, "approve", first.execution_name)
    assert approved.returncode == 0, approved.stderr
    stdout, stderr = redriven.communicate(timeout=300)
    assert redriven.returncode == 0, stdout + stderr
    assert production_config(home) == f"{first.execution_name}-production-config"
