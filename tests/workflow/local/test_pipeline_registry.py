"""The model registry through real pipeline runs on a tiny dataset, and `ddcicd models`.

One DDCICD_HOME: the first run registers its candidate and the promotion approves it; a
second run is compared with that approved version (the champion) and turned down at the
quality gate before registration; a run of a second pipeline (its own group) whose
candidate misses the SLO is registered and Rejected with the reason. Then `ddcicd models
deploy` moves production to another approved version and back (a rollback).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from botocore.validate import ParamValidator

from workflow.local.endpoints import LocalEndpoints
from workflow.local.model_registry import ModelRegistry, _service_model
from workflow.local.s3 import S3Root

pytestmark = pytest.mark.slow


def ddcicd(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DDCICD_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workflow.cli", *arguments], cwd=home, env=environment,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def listed(home: Path, *settings: str) -> list[dict[str, Any]]:
    result = ddcicd(home, "models", "list", "--json", *settings)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("registry-home")
    try:
        yield path
    finally:  # every endpoint process and the runtime router of this home
        stopped = ddcicd(path, "cleanup", "--all")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def first_run(home: Path, tiny_run_options: list[str]) -> subprocess.CompletedProcess[str]:
    result = ddcicd(home, "run", "--quiet", *tiny_run_options)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_a_promoted_candidate_is_an_approved_version_with_its_lineage(first_run: Any, home: Path) -> None:
    [version] = listed(home)
    assert (version["version"], version["status"], version["in_production"]) == (1, "Approved", True)
    assert version["approval_description"].startswith("promoted to production by arn:aws:states:")
    assert 0 <= version["accuracy"] <= 1 and version["log_loss"] > 0 and version["p99_ms"] > 0
    described = json.loads(ddcicd(home, "models", "describe", "1").stdout)
    report = ParamValidator().validate(described, _service_model().operation_model("DescribeModelPackage").output_shape)
    assert not report.has_errors(), report.generate_report()
    lineage = described["CustomerMetadataProperties"]
    execution = json.loads(ddcicd(home, "executions", "list", "--json").stdout)[0]
    assert lineage["ExecutionArn"].endswith(":" + execution["name"])
    [manifest] = (home / "s3").rglob(f"runs/{execution['name']}/processed/manifest.json")
    assert lineage["DatasetManifestSha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert len(lineage["ConfigHash"]) == 16 and lineage["SourceCommit"]
    [container] = described["InferenceSpecification"]["Containers"]
    assert S3Root(home / "s3").path(container["ModelDataUrl"]).is_file()


def test_the_champion_is_the_approved_version(first_run: Any, home: Path, tiny_run_options: list[str]) -> None:
    [champion] = listed(home)
    second = ddcicd(home, "run", "--quiet", *tiny_run_options, "--set", "quality_gate.min_log_loss_improvement=50")
    assert second.returncode == 1 and "QualityGateFailed" in second.stderr, second.stdout + second.stderr
    name = json.loads(ddcicd(home, "executions", "list", "--json").stdout)[0]["name"]
    history = ddcicd(home, "executions", "history", name, "--json")
    events = json.loads(history.stdout)
    evaluate = next(json.loads(e["taskScheduledEventDetails"]["parameters"]) for e in events
                    if e.get("taskScheduledEventDetails") and "production_metrics_uri" in e["taskScheduledEventDetails"]["parameters"])  # fmt: skip
    described = json.loads(ddcicd(home, "models", "describe", "1").stdout)
    assert evaluate["Payload"]["production_metrics_uri"] == described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    [evaluation] = (home / "s3").rglob(f"runs/{name}/evaluation/evaluation.json")
    production = json.loads(evaluation.read_text())["production"]
    assert production == {"accuracy": champion["accuracy"], "log_loss": champion["log_loss"]}
    assert [item["version"] for item in listed(home)] == [1], "a candidate the quality gate turns down is not registered"


def test_a_registered_candidate_that_misses_the_slo_is_rejected_with_the_reason(
    first_run: Any, home: Path, tiny_run_options: list[str]
) -> None:
    other = ("--set", "name=ddcicd-slo")  # its own group: no champion, so the quality gate passes
    run = ddcicd(home, "run", "--quiet", *tiny_run_options, *other, "--set", "load_test.p99_ms=0.001")
    assert run.returncode == 1 and "SloNotMet" in run.stderr, run.stdout + run.stderr
    [version] = listed(home, *other)
    assert version["status"] == "Rejected" and not version["in_production"]
    assert version["approval_description"] == "SloNotMet: the load test missed the latency or error-rate SLO"
    refused = ddcicd(home, "models", "deploy", "1", *other)
    assert refused.returncode != 0 and "Rejected, not Approved" in refused.stderr


def test_models_deploy_moves_production_to_another_version_and_back(first_run: Any, home: Path) -> None:
    registry, s3 = ModelRegistry(home / "model_registry.sqlite3"), S3Root(home / "s3")
    first = registry.describe_model_package({"ModelPackageName": "ddcicd/1"})
    [container] = first["InferenceSpecification"]["Containers"]
    copy = "s3://ddcicd-local/ddcicd/models/by-hand/model.tar.gz"  # another artifact: the same weights, copied
    s3.path(copy).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(s3.path(container["ModelDataUrl"]), s3.path(copy))
    arn = registry.create_model_package({
        "ModelPackageGroupName": "ddcicd", "ModelApprovalStatus": "PendingManualApproval",
        "InferenceSpecification": {**first["InferenceSpecification"], "Containers": [{**container, "ModelDataUrl": copy}]},
        "ModelMetrics": first["ModelMetrics"],
    })["ModelPackageArn"]  # fmt: skip
    registry.update_model_package({"ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ApprovalDescription": "approved by hand"})
    forward = ddcicd(home, "models", "deploy", "2")
    assert forward.returncode == 0, forward.stdout + forward.stderr
    assert "serves model version 2" in forward.stdout
    assert [(v["version"], v["in_production"]) for v in listed(home)] == [(2, True), (1, False)]
    endpoint = LocalEndpoints(home).describe_endpoint("ddcicd-production")
    assert endpoint["EndpointStatus"] == "InService" and "-v2-" in endpoint["EndpointConfigName"]
    back = ddcicd(home, "models", "deploy", "1")  # the rollback to yesterday's model
    assert back.returncode == 0, back.stdout + back.stderr
    versions = {v["version"]: v for v in listed(home)}
    assert versions[1]["in_production"] and versions[1]["status"] == "Approved"
    assert versions[2]["status"] == "Rejected" and versions[2]["approval_description"].startswith("rolled back to version 1")
    text = ddcicd(home, "models", "list").stdout
    assert any(line.startswith("*") and line.split()[1] == "1" for line in text.splitlines()), text
