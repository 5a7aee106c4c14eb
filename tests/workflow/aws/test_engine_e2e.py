"""The real pipeline through `ddcicd aws deploy|start|redrive|status` against `ddcicd engine serve` (a real process).

Step Functions is the local engine's API (`--stepfunctions-endpoint-url`), with the local
SageMaker, S3 and Lambda integrations behind its Task states; moto answers what `aws deploy`
also does on AWS (S3 code upload, Lambdas, autoscaling). The data and the job code are in the
engine's local S3, where `ddcicd run` stages them.

A clean `aws start --wait` SUCCEEDS. Then, on a second pipeline (its own production, so the
quality gate's champion/challenger test does not reject an identical model), the fault: the
dataset is not there yet, so Process fails (the execution stops at Process, redrivable; the
root cause is printed from the history). Once the data is staged, `ddcicd aws redrive --wait`
resumes at Process and the run SUCCEEDS.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from tests.workflow.local.conftest import TINY_RUN
from workflow.cli import cli
from workflow.config import load_config
from workflow.local.endpoints import LocalEndpoints
from workflow.local.pipeline import stage_code
from workflow.local.runtime import stop_runtime
from workflow.local.s3 import S3Root

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
BUCKET = "ddcicd-test-bucket"  # conftest.BUCKET


@pytest.fixture
def engine_url(isolated_home: Path) -> Iterator[str]:
    """`ddcicd engine serve --port 0` over this test's DDCICD_HOME; stops it and every local endpoint afterwards."""
    environment = {**os.environ, "DDCICD_HOME": str(isolated_home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "workflow.cli", "engine", "serve", "--port", "0"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=isolated_home)  # fmt: skip
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), process.stderr.read()  # type: ignore[union-attr]
        yield url
    finally:
        process.terminate()
        process.wait(30)
        endpoints = LocalEndpoints(isolated_home)
        for endpoint in endpoints.list_endpoints():
            endpoints.delete_endpoint(endpoint["EndpointName"])
        stop_runtime(isolated_home)


def aws(settings: list[str], *arguments: str) -> Any:
    return CliRunner().invoke(cli, ["aws", *arguments, *(f"--set={item}" for item in settings)])


def test_the_pipeline_runs_faults_and_redrives_on_the_engine_api(
    overrides: list[str], engine_url: str, lambda_zips: dict[str, Path], tmp_path: Path
) -> None:
    settings = [*overrides, *TINY_RUN, f"aws.stepfunctions_endpoint_url={engine_url}"]
    config = load_config(None, settings)
    s3 = S3Root.default()
    stage_code(s3, config)
    from data.synth import synthesize

    dataset = tmp_path / "tiny"
    synthesize(dataset, images=config.data.images, drivers=config.data.drivers, test_images=config.data.test_images, seed=0)

    zips = tmp_path / "zips"
    zips.mkdir()
    for package, path in lambda_zips.items():
        shutil.copy(path, zips / f"{package}.zip")
    deployed = aws(settings, "deploy", "--lambda-zips", str(zips))
    assert deployed.exit_code == 0, deployed.output
    assert f"state machine arn:aws:states:{config.aws.region}:" in deployed.stdout and ": created" in deployed.stdout
    uri = f"s3://{BUCKET}/pipeline/datasets/tiny/"
    shutil.copytree(dataset, s3.path(f"s3://{BUCKET}/pipeline/datasets/staged/"), dirs_exist_ok=True)

    # a clean run: deploy, start --wait, SUCCEEDED (production now serves its model)
    clean = aws(settings, "start", "--data-uri", f"s3://{BUCKET}/pipeline/datasets/staged/", "--wait", "--poll", "0.5")
    assert clean.exit_code == 0, clean.output
    assert ": SUCCEEDED" in clean.stdout

    # a second pipeline (its own production and prefix, so no champion to beat), with a fault: the dataset is not staged yet,
    # so Process fails and the run stops there
    settings = [*settings, "name=ddcicd-second", "endpoint.production_name=ddcicd-second-production", "aws.prefix=second"]
    stage_code(s3, load_config(None, settings))
    deployed = aws(settings, "deploy", "--lambda-zips", str(zips))
    assert deployed.exit_code == 0, deployed.output

    faulted = aws(settings, "start", "--data-uri", uri, "--wait", "--poll", "0.5", "--summary-out", str(tmp_path / "faulted.json"))
    assert faulted.exit_code == 1, faulted.output
    assert "failed in state Process: " in faulted.stdout
    assert "  cause: " in faulted.stdout
    summary = json.loads((tmp_path / "faulted.json").read_text())
    assert (summary["status"], summary["failure"]["state"], summary["failure"]["redrivable"]) == ("FAILED", "Process", True)
    name = summary["name"]
    assert f"resume: ddcicd aws redrive {name}" in faulted.stderr

    shutil.copytree(dataset, s3.path(uri), dirs_exist_ok=True)  # repair: stage the data
    redriven = aws(settings, "redrive", name, "--wait", "--poll", "0.5")
    assert redriven.exit_code == 0, redriven.output
    assert f"execution {name}: SUCCEEDED (redriven 1x)" in redriven.stdout
    status = aws(settings, "status", name, "--json")
    assert json.loads(status.stdout)["status"] == "SUCCEEDED"

    listed = aws(settings, "executions", "--json")
    assert [item["status"] for item in json.loads(listed.stdout)] == ["SUCCEEDED"]
