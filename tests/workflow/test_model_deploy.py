"""`models deploy` through the promotion's guarded rollout, on real local endpoints under steady load.

Versions of tiny real model archives in the local registry. Production starts on version 1;
a CANARY deployment of a broken version 2 is rolled back by the config's alarms: one whose
container answers every second request with a 500 (DDCICD_SERVE_FAIL_EVERY in its
Environment, as SageMaker passes it) by the error-rate alarm, one about 5x slower by the p99
alarm. Production keeps version 1 and the registry says Rejected with the reason. Version 3,
a good one, then rolls out in steps with no failed request.
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
    for name, shape in (("fast", (3, 32, 32)), ("slow", (3, 96, 96))):  # the same network, ~5x the latency
        export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), tmp_path / name, shape)
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


@pytest.mark.parametrize("fault", ["errors", "latency"])
def test_a_broken_version_is_rolled_back_and_rejected_and_a_good_one_rolls_out(
        registry: ModelRegistry, tmp_path: Path, fault: str) -> None:
    archive, slow = next((tmp_path / "fast").glob("*.tar.gz")), next((tmp_path / "slow").glob("*.tar.gz"))
    register(registry, archive, 1)
    deploy_version(load_config(), 1, timeout=120)  # production on version 1, all at once
    if fault == "errors":
        register(registry, archive, 2, {"DDCICD_SERVE_FAIL_EVERY": "2"})
    else:
        register(registry, slow, 2)
    register(registry, archive, 3)
    frame = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))[1].tobytes()
    settings = list(GUARDED)
    if fault == "latency":  # three times version 1's median under this load: the slow one's p99 is well above
        with SteadyLoad(ensure_runtime(ddcicd_home()), "ddcicd-production", frame, concurrency=4) as load:
            time.sleep(2)
        latencies = sorted(answer.ended - answer.started for answer in load.stop())
        settings += [f"endpoint.rollout.p99_latency_ms.threshold={3000 * latencies[len(latencies) // 2]:.3f}",
                     "endpoint.rollout.p99_latency_ms.period_seconds=2"]  # fmt: skip
    alarm = "ddcicd-rollout-errors" if fault == "errors" else "ddcicd-rollout-p99"
    config = load_config(overrides=settings)
    endpoints = LocalEndpoints()
    before = endpoints.describe_endpoint("ddcicd-production")["EndpointConfigName"]

    with SteadyLoad(ensure_runtime(ddcicd_home()), "ddcicd-production", frame, concurrency=4) as load:
        time.sleep(0.5)
        with pytest.raises(VersionError) as rolled_back:
            deploy_version(config, 2, timeout=120)
    answers = load.stop()
    assert "rolled back" in str(rolled_back.value) and f"back on {before}" in str(rolled_back.value)
    production = endpoints.describe_endpoint("ddcicd-production")
    assert production["EndpointConfigName"] == before and f"alarm {alarm} in ALARM" in production["FailureReason"]
    failed = [answer for answer in answers if answer.status != 200]
    if fault == "errors":
        assert failed and len(failed) <= 0.3 * len(answers), (len(failed), len(answers))  # bounded by the canary's share
    else:
        assert not failed
    listed = {row["version"]: row for row in versions(config)}
    assert listed[2]["status"] == "Rejected" and listed[2]["approval_description"].startswith("PromotionRolledBack: ")
    assert f"alarm {alarm} in ALARM" in listed[2]["approval_description"]
    assert listed[1]["in_production"] and listed[3]["status"] == "Approved"
    if fault == "latency":
        return  # the good rollout after it: once is enough

    good = load_config(overrides=[*GUARDED, "endpoint.rollout.bake_seconds=1"])
    with SteadyLoad(ensure_runtime(ddcicd_home()), "ddcicd-production", frame, concurrency=4) as load:
        deployed = deploy_version(good, 3, timeout=120)
    answers = load.stop()
    assert deployed["EndpointStatus"] == "InService" and "-v3-" in deployed["EndpointConfigName"]
    assert answers and all(answer.status == 200 for answer in answers)
    listed = {row["version"]: row for row in versions(good)}
    assert listed[3]["in_production"] and listed[3]["status"] == "Approved"
    assert listed[3]["approval_description"].startswith("deployed to production by models deploy")
