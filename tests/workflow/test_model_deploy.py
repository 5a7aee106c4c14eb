"""`models deploy` through the promotion's guarded rollout, on real local endpoints under steady load.

Versions of tiny real model archives in the local registry. Production starts on version 1;
a CANARY deployment of version 2, whose container answers every second request with a 500
(DDCICD_SERVE_FAIL_EVERY in its Environment, as SageMaker passes it), is rolled back by the
config's error-rate alarm: production keeps version 1 and the registry says Rejected with
SageMaker's reason. Version 3, a good one, then rolls out in steps with no failed request.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.config import load_config
from workflow.home import ddcicd_home
from workflow.local.endpoints import LocalEndpoints
from workflow.local.model_registry import ModelRegistry
from workflow.local.model_versions import VersionError, deploy_version, versions
from workflow.local.runtime import ensure_runtime, stop_runtime
from workflow.local.s3 import S3Root
from workflow.local.steady_load import SteadyLoad

pytestmark = pytest.mark.slow
GUARDED = ["endpoint.rollout.mode=CANARY", "endpoint.rollout.canary_percent=30", "endpoint.rollout.bake_seconds=60",
           "endpoint.rollout.error_rate.threshold=0.1", "endpoint.rollout.error_rate.period_seconds=1",
           "endpoint.poll_seconds=1"]  # fmt: skip


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), tmp_path, (3, 32, 32))
    registry = ModelRegistry.default()
    registry.create_model_package_group({"ModelPackageGroupName": "ddcicd"})
    yield registry
    endpoints = LocalEndpoints()
    for endpoint in endpoints.list_endpoints():
        endpoints.delete_endpoint(endpoint["EndpointName"])
    stop_runtime(ddcicd_home())


def register(registry: ModelRegistry, archive: Path, version: int, environment: dict[str, str] | None = None) -> None:
    uri = f"s3://ddcicd-local/ddcicd/runs/run-{version}/model/model.tar.gz"
    path = S3Root.default().path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, path)
    container = {"Image": "ddcicd/serve", "ModelDataUrl": uri, **({"Environment": environment} if environment else {})}
    arn = registry.create_model_package({"ModelPackageGroupName": "ddcicd", "ModelApprovalStatus": "PendingManualApproval",
                                         "InferenceSpecification": {"Containers": [container]}})["ModelPackageArn"]  # fmt: skip
    registry.update_model_package({"ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ApprovalDescription": "promoted"})


def test_a_broken_version_is_rolled_back_and_rejected_and_a_good_one_rolls_out(registry: ModelRegistry, tmp_path: Path) -> None:
    archive = next(tmp_path.glob("*.tar.gz"))
    register(registry, archive, 1)
    deploy_version(load_config(), 1, timeout=120)  # production on version 1, all at once
    register(registry, archive, 2, {"DDCICD_SERVE_FAIL_EVERY": "2"})
    register(registry, archive, 3)
    config = load_config(overrides=GUARDED)
    frame = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))[1].tobytes()
    endpoints = LocalEndpoints()
    before = endpoints.describe_endpoint("ddcicd-production")["EndpointConfigName"]

    with SteadyLoad(ensure_runtime(ddcicd_home()), "ddcicd-production", frame, concurrency=4) as load:
        time.sleep(0.5)
        with pytest.raises(VersionError) as rolled_back:
            deploy_version(config, 2, timeout=120)
    answers = load.stop()
    assert "rolled back" in str(rolled_back.value) and f"back on {before}" in str(rolled_back.value)
    production = endpoints.describe_endpoint("ddcicd-production")
    assert production["EndpointConfigName"] == before and "alarm ddcicd-rollout-errors in ALARM" in production["FailureReason"]
    failed = [answer for answer in answers if answer.status != 200]
    assert failed and len(failed) <= 0.3 * len(answers), (len(failed), len(answers))  # bounded by the canary's share
    listed = {row["version"]: row for row in versions(config)}
    assert listed[2]["status"] == "Rejected" and listed[2]["approval_description"].startswith("PromotionRolledBack: ")
    assert "alarm ddcicd-rollout-errors in ALARM" in listed[2]["approval_description"]
    assert listed[1]["in_production"] and listed[3]["status"] == "Approved"

    good = load_config(overrides=[*GUARDED, "endpoint.rollout.bake_seconds=1"])
    with SteadyLoad(ensure_runtime(ddcicd_home()), "ddcicd-production", frame, concurrency=4) as load:
        deployed = deploy_version(good, 3, timeout=120)
    answers = load.stop()
    assert deployed["EndpointStatus"] == "InService" and "-v3-" in deployed["EndpointConfigName"]
    assert answers and all(answer.status == 200 for answer in answers)
    listed = {row["version"]: row for row in versions(good)}
    assert listed[3]["in_production"] and listed[3]["status"] == "Approved"
    assert listed[3]["approval_description"].startswith("deployed to production by models deploy")
