"""The console's Models page: GET /api/models and #/models in a real browser.

Three registered versions (two approved, one rejected) of real model archives, their
metric documents in the local S3 root, and production deployed to version 3 through
`deploy_version` (a real local endpoint), so "which one is in production" is the endpoint's.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.config import load_config
from workflow.home import ddcicd_home
from workflow.local.endpoints import LocalEndpoints
from workflow.local.model_registry import ModelRegistry
from workflow.local.model_versions import deploy_version
from workflow.local.runtime import stop_runtime
from workflow.local.s3 import S3Root

TOKEN = "test-token-0123456789"  # conftest.TOKEN
METRICS = {1: (0.61, 1.20, 35.0), 2: (0.55, 1.45, 910.0), 3: (0.72, 0.95, 41.5)}  # accuracy, log loss, p99


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), tmp_path_factory.mktemp("model"), (3, 16, 16))


@pytest.fixture()
def registered(setup: Any, archive: Path) -> Iterator[dict[int, str]]:
    """Versions 1-3 with their documents; production on version 3; returns version -> execution ARN."""
    s3, registry = S3Root.default(), ModelRegistry.default()
    registry.create_model_package_group({"ModelPackageGroupName": "ddcicd"})
    executions = {}
    for version, (accuracy, log_loss, p99) in METRICS.items():
        run = f"s3://ddcicd-local/ddcicd/runs/run-{version}"
        for uri, document in ((f"{run}/evaluation/evaluation.json", {"accuracy": accuracy, "log_loss": log_loss}),
                              (f"{run}/load-test/load-test.json", {"p99_ms": p99, "error_rate": 0.0})):  # fmt: skip
            s3.path(uri).parent.mkdir(parents=True, exist_ok=True)
            s3.path(uri).write_text(json.dumps(document))
        s3.path(f"{run}/model/model.tar.gz").parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, s3.path(f"{run}/model/model.tar.gz"))
        executions[version] = f"arn:aws:states:us-east-1:000000000000:execution:ddcicd:run-{version}"
        status, reason = ("Rejected", "SloNotMet: the load test missed the latency or error-rate SLO") if version == 2 else ("Approved", "promoted")
        registry.create_model_package({
            "ModelPackageGroupName": "ddcicd", "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {"Containers": [{"Image": "ddcicd/serve", "ModelDataUrl": f"{run}/model/model.tar.gz"}]},
            "ModelMetrics": {"ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": f"{run}/evaluation/evaluation.json"},
                "Constraints": {"ContentType": "application/json", "S3Uri": f"{run}/load-test/load-test.json"}}},
            "CustomerMetadataProperties": {"ExecutionArn": executions[version]},
        })  # fmt: skip
        registry.update_model_package({"ModelPackageArn": f"ddcicd/{version}", "ModelApprovalStatus": status, "ApprovalDescription": reason})
    deploy_version(load_config(), 3, timeout=120)
    yield executions
    endpoints = LocalEndpoints()
    for endpoint in endpoints.list_endpoints():
        endpoints.delete_endpoint(endpoint["EndpointName"])
    stop_runtime(ddcicd_home())


@pytest.mark.slow
def test_the_api_lists_versions_with_metrics_and_production(registered: dict[int, str], console: str, http: Any) -> None:
    reply = http(console, "GET", "/api/models")
    assert reply.status == 200
    models = reply.json()
    assert (models["group"], models["production"]) == ("ddcicd", "ddcicd-production")
    rows = [(v["version"], v["status"], v["log_loss"], v["p99_ms"], v["in_production"]) for v in models["versions"]]
    assert rows == [(3, "Approved", 0.95, 41.5, True), (2, "Rejected", 1.45, 910.0, False), (1, "Approved", 1.20, 35.0, False)]
    assert models["versions"][0]["execution_arn"] == registered[3]
    assert http(console, "GET", "/api/models?pipeline=other").json()["versions"] == []  # another pipeline's group
    refused = http(console, "GET", "/api/models?pipeline=bad%7Bname")
    assert refused.status == 400 and "pipeline" in refused.json()["error"]


def test_no_versions_yet(setup: Any, console: str, http: Any) -> None:
    reply = http(console, "GET", "/api/models")
    assert reply.status == 200 and reply.json()["versions"] == []


@pytest.mark.browser
@pytest.mark.slow
def test_the_models_page(registered: dict[int, str], console: str, page: Any) -> None:
    page.goto(f"{console}/?token={TOKEN}#/")
    page.click("#models-link")
    page.wait_for_selector("table.models tbody tr")
    assert "serves version 3" in page.text_content("#production-note")
    versions = page.eval_on_selector_all("table.models tbody tr", "rows => rows.map(r => r.dataset.version)")
    assert versions == ["3", "2", "1"]
    production = page.eval_on_selector_all("tr.in-production", "rows => rows.map(r => r.dataset.version)")
    assert production == ["3"]
    assert "SloNotMet" in page.text_content('tr[data-version="2"] td.reason')
    assert page.get_attribute('tr[data-version="3"] a[href^="#/execution/"]', "href").endswith(registered[3].replace(":", "%3A"))
    assert page.get_attribute('tr[data-version="3"] a[href^="/report"]', "href") == f"/report?arn={registered[3].replace(':', '%3A')}"
    # the plot: one point per version for each series, oldest (v1) to newest (v3) left to right
    for series in ("series-loss", "series-p99"):
        points = page.eval_on_selector_all(f"#models-plot circle.{series}", "cs => cs.map(c => [+c.getAttribute('cx'), +c.getAttribute('cy')])")
        assert len(points) == 3 and points[0][0] < points[1][0] < points[2][0]
    loss = page.eval_on_selector_all("#models-plot circle.series-loss", "cs => cs.map(c => +c.getAttribute('cy'))")
    assert loss[1] < loss[0] < loss[2], "SVG y grows downwards: v2 has the highest log loss, v3 the lowest"
    ticks = page.eval_on_selector_all("#models-plot text.tick.production", "ts => ts.map(t => t.textContent)")
    assert ticks == ["v3"]
