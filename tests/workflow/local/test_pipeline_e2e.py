"""The main job end to end on a tiny dataset, through the CLI, with real processes.

Two runs share one DDCICD_HOME: the first deploys production; the second demands a
log-loss improvement no retrain can give, so its model is rejected, production stays on
the first model and the staging endpoint is deleted. Thresholds are loose because the
point here is the wiring, not accuracy (that is steps/train's test and benchmark).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow.local.endpoints import LocalEndpoints
from workflow.local.runtime import stop_runtime
from workflow.local.s3 import S3Root

pytestmark = pytest.mark.slow

def ddcicd(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DDCICD_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workflow.cli", *arguments], cwd=home, env=environment,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipeline-home")
    yield path
    endpoints = LocalEndpoints(path)
    for endpoint in endpoints.list_endpoints():
        endpoints.delete_endpoint(endpoint["EndpointName"])
    stop_runtime(path)


@pytest.fixture(scope="module")
def first_run(home: Path, tiny_run_options: list[str]) -> subprocess.CompletedProcess[str]:
    return ddcicd(home, "run", "--quiet", *tiny_run_options, "--set", "batch_score.enabled=true")


def test_first_run_deploys_production(first_run: subprocess.CompletedProcess[str], home: Path) -> None:
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    assert "SUCCEEDED" in first_run.stdout
    assert "production endpoint: ddcicd-production at http://127.0.0.1:" in first_run.stdout
    endpoints = {item["EndpointName"]: item for item in LocalEndpoints(home).list_endpoints()}
    assert list(endpoints) == ["ddcicd-production"], "staging must be deleted after promotion"
    assert endpoints["ddcicd-production"]["EndpointStatus"] == "InService"
    metrics = json.loads(S3Root(home / "s3").path("s3://ddcicd-local/ddcicd/production/metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and metrics["log_loss"] > 0


def test_batch_scoring_writes_the_kaggle_submission(first_run: subprocess.CompletedProcess[str], home: Path) -> None:
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    [submission] = (home / "s3").rglob("submission.csv")
    [sample] = (home / "datasets").rglob("sample_submission.csv")
    rows = [line.split(",") for line in submission.read_text().splitlines()]
    expected = [line.split(",")[0] for line in sample.read_text().splitlines()]
    assert [row[0] for row in rows] == expected  # header first, then the sample's order
    assert all(abs(sum(map(float, row[1:])) - 1) < 1e-4 for row in rows[1:])


def test_history_has_every_stage(first_run: subprocess.CompletedProcess[str], home: Path) -> None:
    listing = json.loads(ddcicd(home, "executions", "list", "--json").stdout)
    assert [item["status"] for item in listing] == ["SUCCEEDED"]
    history = ddcicd(home, "executions", "history", listing[0]["name"]).stdout
    for state in ("Process", "Train", "Evaluate", "LoadTest", "UpdateProductionEndpoint", "CreateProductionEndpoint"):
        if state == "UpdateProductionEndpoint":
            continue  # the first deployment creates production
        assert state in history, state


def test_a_model_that_does_not_beat_production_is_rejected(
    first_run: subprocess.CompletedProcess[str], home: Path, tiny_run_options: list[str]
) -> None:
    assert first_run.returncode == 0
    local = LocalEndpoints(home)
    before = local.describe_endpoint("ddcicd-production")["EndpointConfigName"]
    second = ddcicd(home, "run", "--quiet", *tiny_run_options, "--set", "quality_gate.min_log_loss_improvement=50")
    assert second.returncode == 1, second.stdout + second.stderr
    assert "QualityGateFailed" in second.stderr
    assert "QualityGate rejected" in second.stdout
    after = {item["EndpointName"]: item for item in local.list_endpoints()}
    assert list(after) == ["ddcicd-production"], "the rejected model's staging endpoint must be deleted"
    assert after["ddcicd-production"]["EndpointConfigName"] == before, "production must stay untouched"
