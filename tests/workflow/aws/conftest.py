"""moto-backed AWS for the `ddcicd aws` tests: fake credentials, one bucket, the three roles.

No test touches the network: moto answers every boto3 call in-process, and the credentials
and region below are placeholders set before any client exists.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from moto import mock_aws

from workflow.aws.packaging import build_zip
from workflow.contracts.functions import PACKAGES
from workflow.aws.clients import AwsContext
from workflow.config import PipelineConfig, load_config

REGION = "eu-west-1"
BUCKET = "ddcicd-test-bucket"
TRUSTS = {"sagemaker": "sagemaker.amazonaws.com", "stepfunctions": "states.amazonaws.com", "lambda": "lambda.amazonaws.com",
          "reaper": "lambda.amazonaws.com"}


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "SF_EXECUTION_HISTORY_TYPE", "DDCICD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def overrides(moto: None) -> list[str]:
    """`--set` overrides naming the moto bucket and roles (created here, as infra/ would)."""
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    iam = boto3.client("iam", region_name=REGION)
    arns = {}
    for role, service in TRUSTS.items():
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
        arns[role] = iam.create_role(RoleName=f"ddcicd-{role}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    return [
        f"aws.region={REGION}",
        f"aws.bucket={BUCKET}",
        "aws.prefix=pipeline",
        f"aws.sagemaker_role_arn={arns['sagemaker']}",
        f"aws.stepfunctions_role_arn={arns['stepfunctions']}",
        f"aws.lambda_role_arn={arns['lambda']}",
        f"cleanup.reaper_role_arn={arns['reaper']}",
    ]


@pytest.fixture
def config(overrides: list[str]) -> PipelineConfig:
    return load_config(None, overrides)


@pytest.fixture
def context(config: PipelineConfig) -> AwsContext:
    return AwsContext.from_config(config)


@pytest.fixture(scope="session")
def lambda_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real zips, code only (the third-party wheels would need the package index)."""
    folder = tmp_path_factory.mktemp("lambda-zips")
    return {name: build_zip(name, folder, with_dependencies=False) for name in PACKAGES}
