"""`ddcicd endpoints ...` and `ddcicd serve`, run as the user runs them (a real `ddcicd` process)."""
from __future__ import annotations

import json
import time
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network = ResNet(ResNetConfig(num_layers=20, num_classes=10))
    return export_model_archive(network, tmp_path_factory.mktemp("model"), (3, 48, 64))


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    from workflow.local.endpoints import LocalEndpoints

    local = LocalEndpoints(tmp_path)
    local.shutdown()


def ddcicd(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DDCICD_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workflow.cli", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_create_list_invoke_and_delete_an_endpoint(home: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created = ddcicd(home, "endpoints", "create", "staging", "--model", str(model), "--instances", "2")
    assert created.returncode == 0, created.stderr
    assert re.search(r"endpoint staging created: InService, 2 instance\(s\); invoke at http://127\.0\.0\.1:\d+/endpoints/"
                     r"staging/invocations", created.stdout)

    listed = ddcicd(home, "endpoints", "list", "--json")
    document = json.loads(listed.stdout)
    assert [item["EndpointStatus"] for item in document["Endpoints"]] == ["InService"]
    assert ddcicd(home, "endpoints", "list").stdout.splitlines()[-1] == f"runtime: {document['RuntimeUrl']}"

    for key, value in {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("sagemaker-runtime", endpoint_url=document["RuntimeUrl"])
    png = b"\x89PNG\r\n\x1a\n" + bytes(10)
    with pytest.raises(client.exceptions.ModelError):
        client.invoke_endpoint(EndpointName="staging", ContentType="image/png", Body=png)

    again = ddcicd(home, "endpoints", "create", "staging", "--model", str(model))
    assert again.returncode == 2 and "already exists" in again.stderr

    time.sleep(1.0)  # the router publishes its per-fleet metrics every half second
    described = json.loads(ddcicd(home, "endpoints", "describe", "staging").stdout)
    assert described["EndpointStatus"] == "InService"
    fleet, = described["Traffic"]["Fleets"]
    # One request (the PNG), answered 400 by the container: counted, but not a 5xx.
    assert fleet["TrafficPercent"] == 100 and fleet["Requests"] == 1 and fleet["ErrorRate"] == 0.0
    guarded = ddcicd(home, "endpoints", "update", "staging", "--model", str(model), "--deployment-config",
                     json.dumps({"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE"}},
                                 "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "nope"}]}}))
    assert guarded.returncode == 2 and "alarm 'nope' does not exist" in guarded.stderr
    assert ddcicd(home, "endpoints", "delete", "staging").returncode == 0
    missing = ddcicd(home, "endpoints", "describe", "staging")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ('error: Could not find endpoint '
                                      '"arn:aws:sagemaker:us-east-1:000000000000:endpoint/staging".')


def test_serve_answers_ping_in_the_foreground_and_refuses_a_bad_model(tmp_path: Path, model: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "workflow.cli", "serve", "--model", str(model), "--port", "0"],
                               cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"junk")
    refused = subprocess.run([sys.executable, "-m", "workflow.cli", "serve", "--model", str(bad), "--port", "0"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "not a readable tar" in refused.stderr
