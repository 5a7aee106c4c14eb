"""One boto3 session per command, its clients, and the account and partition it runs in.

Clients are made on first use, never at import time, so a test's `mock_aws()` is in place
before any client exists. boto3 clients are thread-safe, so the upload thread pool shares
them. With `aws.stepfunctions_endpoint_url` set (e.g. `ddcicd engine serve`), the Step
Functions client talks to that endpoint and every other service to AWS.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from workflow.config import PipelineConfig

# Standard retry mode: throttling and 5xx are retried by botocore with backoff and jitter.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=32)


class AwsError(RuntimeError):
    """An AWS-side problem the user can act on; the message names the resource."""


@dataclass
class AwsContext:
    config: PipelineConfig
    session: Any  # boto3.Session
    _clients: dict[str, Any] = field(default_factory=dict)
    _account: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_config(cls, config: PipelineConfig) -> AwsContext:
        """Credentials come from the usual chain (environment, profile, CodeBuild's role)."""
        return cls(config, boto3.Session(region_name=config.aws.region))

    @property
    def region(self) -> str:
        return self.config.aws.region

    @property
    def stepfunctions_endpoint_url(self) -> str | None:
        return self.config.aws.stepfunctions_endpoint_url

    def client(self, service: str) -> Any:
        """A client of `service`; Step Functions at `aws.stepfunctions_endpoint_url` when that is set."""
        with self._lock:
            if service not in self._clients:
                if service == "stepfunctions" and self.stepfunctions_endpoint_url:
                    # no "sync-" host prefix on a local endpoint (StartSyncExecution)
                    config = CLIENT_CONFIG.merge(Config(inject_host_prefix=False))
                    self._clients[service] = self.session.client(service, config=config, endpoint_url=self.stepfunctions_endpoint_url)
                else:
                    self._clients[service] = self.session.client(service, config=CLIENT_CONFIG)
            return self._clients[service]

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self.client("sts").get_caller_identity()["Account"]
        return self._account

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

    def state_machine_arn(self) -> str:
        """config.name's ARN; at a Step Functions endpoint, as that endpoint lists it (it needs no STS for the account)."""
        if self.stepfunctions_endpoint_url:
            return self._listed_state_machine_arn()
        return f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{self.config.name}"

    def _listed_state_machine_arn(self) -> str:
        paginator = self.client("stepfunctions").get_paginator("list_state_machines")
        for page in paginator.paginate():
            for machine in page["stateMachines"]:
                if machine["name"] == self.config.name:
                    return machine["stateMachineArn"]
        raise AwsError(f"no state machine {self.config.name} at {self.stepfunctions_endpoint_url}: deploy it with `ddcicd aws deploy`")

    def execution_arn(self, execution_name: str) -> str:
        machine = self.state_machine_arn()
        return machine.replace(":stateMachine:", ":execution:", 1) + f":{execution_name}"

    def s3_uri(self, *parts: str) -> str:
        """`s3://<bucket>/<prefix>/<parts...>`."""
        return "/".join([f"s3://{self.config.aws.bucket}", self.config.aws.prefix.strip("/"), *parts])


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b"); refuses anything else."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise AwsError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise AwsError(f"{uri!r} has no bucket name")
    return bucket, key
