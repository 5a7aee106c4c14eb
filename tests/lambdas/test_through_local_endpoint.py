"""Both handlers end to end through the real serving stack: a local endpoint (steps/serve.py
processes running an exported ONNX model) behind the local SageMaker Runtime router."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lambdas import runtime as runtime_module
from lambdas.evaluate.app import handler as evaluate
from lambdas.load_test.app import handler as load_test
from steps import recordio
from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.local.endpoints import LocalEndpoints
from workflow.local.runtime import ensure_runtime, stop_runtime

pytestmark = pytest.mark.slow
CLASSES = [f"c{index}" for index in range(10)]


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An InService local endpoint named `staging`, and the environment the local engine gives Lambdas."""
    model = export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), tmp_path / "model", (3, 48, 64), CLASSES)
    home = tmp_path / "home"
    endpoints = LocalEndpoints(home, cpu_count=2)
    endpoints.create_model("staging-model", str(model))
    endpoints.create_endpoint_config(
        "staging-config", [{"VariantName": "AllTraffic", "ModelName": "staging-model", "InitialInstanceCount": 1}]
    )
    endpoints.create_endpoint("staging", "staging-config")
    try:
        deadline = time.monotonic() + 120
        while endpoints.describe_endpoint("staging")["EndpointStatus"] == "Creating" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert endpoints.describe_endpoint("staging")["EndpointStatus"] == "InService"
        monkeypatch.setenv("DDCICD_SAGEMAKER_RUNTIME_URL", ensure_runtime(endpoints.root.parent))
        monkeypatch.setenv("DDCICD_S3_ROOT", str(tmp_path / "s3"))
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        runtime_module.session.cache_clear()
        runtime_module.sagemaker_runtime.cache_clear()
        yield "staging"
    finally:
        runtime_module.session.cache_clear()
        runtime_module.sagemaker_runtime.cache_clear()
        endpoints.delete_endpoint("staging")
        stop_runtime(endpoints.root.parent)


def write_jpeg_validation(directory: Path, count: int) -> str:
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"classes": CLASSES}))
    generator = np.random.default_rng(7)
    with recordio.IndexedRecordIO(str(directory / "validation.idx"), str(directory / "validation.rec"), "w") as writer:
        for key in range(count):
            image = generator.integers(0, 256, (96, 128, 3), dtype=np.uint8)
            writer.write_idx(key, recordio.pack_img(recordio.IRHeader(0, float(key % 10), key, 0), image))
    return "s3://ddcicd/processed"


def test_evaluate_and_load_test_through_a_local_endpoint(staging: str, tmp_path: Path) -> None:
    data_uri = write_jpeg_validation(tmp_path / "s3" / "ddcicd" / "processed", 40)
    result: dict[str, Any] = evaluate(
        {"endpoint_name": staging, "data_uri": data_uri, "output_uri": "s3://ddcicd/runs/r1/evaluation.json"}
    )
    assert result["images"] == result["evaluated"] == 40 and result["failed_invocations"] == 0
    assert 0.0 <= result["accuracy"] <= 1.0 and math.isfinite(result["log_loss"]) and result["log_loss"] > 0
    assert sum(map(sum, result["confusion_matrix"])) == 40
    assert (tmp_path / "s3/ddcicd/runs/r1/evaluation-confusion-matrix.png").stat().st_size > 1000

    shard = load_test(
        {"endpoint_name": staging, "data_uri": data_uri, "sample_size": 8, "max_requests": 120, "concurrency": 4,
         "slo": {"p99_ms": 60_000, "max_error_rate": 0.0}}
    )
    assert shard["successes"] == 120 and shard["errors"] == 0 and shard["slo_met"] is True
    assert 0 < shard["p50_ms"] <= shard["p99_ms"]

    missing = load_test(
        {"endpoint_name": "absent", "data_uri": data_uri, "max_requests": 3, "slo": {"p99_ms": 1, "max_error_rate": 0}}
    )
    assert missing["errors_by_kind"] == {"ValidationError": 3}
