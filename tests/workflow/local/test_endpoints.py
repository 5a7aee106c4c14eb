"""Local endpoints: real server processes behind DescribeEndpoint's life cycle, reached with boto3."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import cv2
import numpy as np
import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from workflow.contracts.algorithms import ALGORITHMS
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.instances import Instance, is_running
from workflow.local.runtime import ensure_runtime, runtime_url, stop_runtime


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=count)),
                                       tmp_path_factory.mktemp(name), (3, 48, 64))
            for name, count in (("ten", 10), ("four", 4))}


@pytest.fixture()
def endpoints(tmp_path: Path) -> Iterator[LocalEndpoints]:
    local = LocalEndpoints(tmp_path, cpu_count=2)
    yield local
    local.shutdown()


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480))
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 signs every request; the local runtime ignores the signature."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def runtime_client(url: str):  # noqa: ANN201 - boto3 clients have no importable type
    return boto3.client("sagemaker-runtime", endpoint_url=url)


def deploy(endpoints: LocalEndpoints, name: str, model: Path, instances: int = 1, config: str | None = None) -> str:
    config = config or f"{name}-config"
    endpoints.create_model(f"{config}-model", str(model))
    endpoints.create_endpoint_config(config, [{"VariantName": "AllTraffic", "ModelName": f"{config}-model",
                                               "InitialInstanceCount": instances}])
    return config


def wait_for(endpoints: LocalEndpoints, name: str, leaving: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        description = endpoints.describe_endpoint(name)
        seen.append(description["EndpointStatus"])
        if description["EndpointStatus"] != leaving:
            return description
        time.sleep(0.1)
    raise AssertionError(f"{name} still {leaving} after {timeout} s: {seen[-3:]}")


def test_an_endpoint_goes_creating_then_in_service_and_answers_boto3_like_aws(
        endpoints: LocalEndpoints, models: dict[str, Path], jpeg: bytes) -> None:
    deploy(endpoints, "staging", models["ten"], instances=2)
    response = endpoints.create_endpoint("staging", "staging-config")
    assert response["EndpointArn"].endswith(":endpoint/staging")
    assert endpoints.describe_endpoint("staging")["EndpointStatus"] == "Creating"
    description = wait_for(endpoints, "staging", "Creating")
    assert description["EndpointStatus"] == "InService", description
    assert description["ProductionVariants"] == [
        {"VariantName": "AllTraffic", "CurrentInstanceCount": 2, "DesiredInstanceCount": 2,
         "CurrentWeight": 1.0, "DesiredWeight": 1.0}]

    client = runtime_client(ensure_runtime(endpoints.root.parent))
    answer = client.invoke_endpoint(EndpointName="staging", ContentType="application/x-image", Body=jpeg)
    assert answer["ContentType"] == "application/json" and answer["InvokedProductionVariant"] == "AllTraffic"
    probabilities = json.loads(answer["Body"].read())
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    ports = {item["Port"] for item in endpoints.list_endpoints()[0]["Instances"]}
    assert len(ports) == 2


def test_invoking_an_unknown_endpoint_is_a_validation_error_like_aws(endpoints: LocalEndpoints) -> None:
    client = runtime_client(ensure_runtime(endpoints.root.parent))
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.invoke_endpoint(EndpointName="nowhere", ContentType="application/x-image", Body=b"\xff\xd8\xff")
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "nowhere" in raised.value.response["Error"]["Message"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_bad_image_is_a_model_error_carrying_the_containers_4xx(
        endpoints: LocalEndpoints, models: dict[str, Path]) -> None:
    deploy(endpoints, "staging", models["ten"])
    endpoints.create_endpoint("staging", "staging-config")
    wait_for(endpoints, "staging", "Creating")
    client = runtime_client(ensure_runtime(endpoints.root.parent))
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(EndpointName="staging", ContentType="application/x-image", Body=b"not an image")
    error = raised.value.response
    assert error["OriginalStatusCode"] == 400 and "InvalidImage" in error["OriginalMessage"]


@pytest.mark.slow
def test_update_is_blue_green_and_fails_no_request_under_load(
        endpoints: LocalEndpoints, models: dict[str, Path], jpeg: bytes) -> None:
    deploy(endpoints, "production", models["ten"], config="blue")
    endpoints.create_endpoint("production", "blue")
    wait_for(endpoints, "production", "Creating")
    old = [Instance.from_json(item) for item in json.loads(endpoints.state_path("production").read_text())["instances"]]
    client = runtime_client(ensure_runtime(endpoints.root.parent))
    answers: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                body = client.invoke_endpoint(EndpointName="production", ContentType="image/jpeg", Body=jpeg)["Body"]
                answers.append(len(json.loads(body.read())))
            except Exception as error:  # noqa: BLE001 - every failure is what this test counts
                failures.append(repr(error))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        deploy(endpoints, "production", models["four"], config="green")
        endpoints.update_endpoint("production", "green")
        assert endpoints.describe_endpoint("production")["EndpointStatus"] == "Updating"
        description = wait_for(endpoints, "production", "Updating")
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert description["EndpointStatus"] == "InService" and description["EndpointConfigName"] == "green"
    assert answers[0] == 10 and answers[-1] == 4 and set(answers) == {10, 4}
    assert not any(is_running(instance) for instance in old)


def test_a_failed_update_keeps_the_old_config_in_service(
        endpoints: LocalEndpoints, models: dict[str, Path], tmp_path: Path) -> None:
    deploy(endpoints, "production", models["ten"], config="good")
    endpoints.create_endpoint("production", "good")
    wait_for(endpoints, "production", "Creating")
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tar")
    deploy(endpoints, "production", broken, config="bad")
    endpoints.update_endpoint("production", "bad")
    description = wait_for(endpoints, "production", "Updating")
    assert description["EndpointStatus"] == "InService" and description["EndpointConfigName"] == "good"
    assert "update to bad failed" in description["FailureReason"]
    assert "not a readable tar" in description["FailureReason"]


def test_an_endpoint_whose_server_dies_shows_failed_with_the_reason(
        endpoints: LocalEndpoints, models: dict[str, Path]) -> None:
    deploy(endpoints, "staging", models["ten"])
    endpoints.create_endpoint("staging", "staging-config")
    wait_for(endpoints, "staging", "Creating")
    pid = endpoints.list_endpoints()[0]["Instances"][0]["Pid"]
    os.kill(pid, signal.SIGKILL)
    description = wait_for(endpoints, "staging", "InService", timeout=10)
    assert description["EndpointStatus"] == "Failed"
    assert f"pid {pid}" in description["FailureReason"]


def test_creating_from_a_missing_model_file_fails_with_the_path(
        endpoints: LocalEndpoints, tmp_path: Path) -> None:
    deploy(endpoints, "staging", tmp_path / "absent.tar.gz")
    endpoints.create_endpoint("staging", "staging-config")
    description = endpoints.describe_endpoint("staging")
    assert description["EndpointStatus"] == "Failed" and "absent.tar.gz" in description["FailureReason"]


def _image(repository: str) -> str:
    return f"763104351884.dkr.ecr.us-east-1.amazonaws.com/{repository}:1"


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_model_in_its_algorithms_serving_image_is_served(
        algorithm: str, endpoints: LocalEndpoints, models: dict[str, Path]) -> None:
    image = _image(ALGORITHMS[algorithm].serving_image.repository)
    endpoints.create_model("m", primary_container={"Image": image, "ModelDataUrl": str(models["ten"])})
    endpoints.create_endpoint_config("c", [{"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1}])
    endpoints.create_endpoint("staging", "c")
    assert wait_for(endpoints, "staging", "Creating")["EndpointStatus"] == "InService"


def test_a_model_in_a_training_only_image_fails_to_serve_naming_the_image(
        endpoints: LocalEndpoints, models: dict[str, Path]) -> None:
    """As on AWS, where the PyTorch training image never passes the ping health check."""
    image = _image(ALGORITHMS["pytorch"].training_image.repository)
    endpoints.create_model("m", primary_container={"Image": image, "ModelDataUrl": str(models["ten"])})
    endpoints.create_endpoint_config("c", [{"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1}])
    endpoints.create_endpoint("staging", "c")
    description = endpoints.describe_endpoint("staging")
    assert description["EndpointStatus"] == "Failed"
    assert f"image '{image}' of model 'm' cannot serve it" in description["FailureReason"]
    with pytest.raises(ValidationError, match="pytorch-inference"):
        endpoints.model_archive("m")


def test_delete_stops_the_processes_and_forgets_the_endpoint(
        endpoints: LocalEndpoints, models: dict[str, Path]) -> None:
    deploy(endpoints, "staging", models["ten"])
    endpoints.create_endpoint("staging", "staging-config")
    wait_for(endpoints, "staging", "Creating")
    state = json.loads(endpoints.state_path("staging").read_text())
    endpoints.delete_endpoint("staging")
    assert not any(is_running(Instance.from_json(item)) for item in state["instances"])
    with pytest.raises(ValidationError, match='Could not find endpoint ".*endpoint/staging"'):
        endpoints.describe_endpoint("staging")


def test_names_and_duplicates_are_validated_like_sagemaker(endpoints: LocalEndpoints, models: dict[str, Path]) -> None:
    with pytest.raises(ValidationError, match="must be 1-63 characters"):
        endpoints.create_model("bad_name", str(models["ten"]))
    endpoints.create_model("m", str(models["ten"]))
    with pytest.raises(ValidationError, match="already existing model"):
        endpoints.create_model("m", str(models["ten"]))
    with pytest.raises(ValidationError, match="Could not find model"):
        endpoints.create_endpoint_config("c", [{"ModelName": "other", "InitialInstanceCount": 1}])
    with pytest.raises(ValidationError, match="InitialInstanceCount 0"):
        endpoints.create_endpoint_config("c", [{"ModelName": "m", "InitialInstanceCount": 0}])
    with pytest.raises(ValidationError, match="Could not find endpoint configuration"):
        endpoints.create_endpoint("e", "c")


def test_the_runtime_is_started_once_and_found_again(endpoints: LocalEndpoints) -> None:
    home = endpoints.root.parent
    assert runtime_url(home) is None
    url = ensure_runtime(home)
    assert ensure_runtime(home) == url == runtime_url(home)
    assert stop_runtime(home)
    deadline = time.monotonic() + 10
    while runtime_url(home) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime_url(home) is None
