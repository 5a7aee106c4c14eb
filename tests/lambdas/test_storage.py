"""The storage helper: s3:// under a local root, and the same calls against S3 (moto)."""
from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from lambdas import storage
from lambdas.errors import InvalidEvent, ObjectNotFound


def test_local_root_maps_bucket_and_key_to_a_file(s3_root: Path) -> None:
    storage.write_bytes("s3://ddcicd-test/a/b/result.json", b"{}")
    assert (s3_root / "ddcicd-test/a/b/result.json").read_bytes() == b"{}"
    assert storage.read_bytes("s3://ddcicd-test/a/b/result.json") == b"{}"
    assert storage.exists("s3://ddcicd-test/a/b/result.json")
    assert not storage.exists("s3://ddcicd-test/a/b/other.json")
    assert [path.name for path in (s3_root / "ddcicd-test/a/b").iterdir()] == ["result.json"]  # no temp files left


def test_keys_cannot_climb_out_of_the_local_root(s3_root: Path) -> None:
    with pytest.raises(InvalidEvent, match="outside the local S3 root"):
        storage.read_bytes("s3://ddcicd-test/../../etc/passwd")


def test_uris_must_be_s3(s3_root: Path) -> None:
    with pytest.raises(InvalidEvent, match="expected an s3://bucket/key URI, got 'file:///x'"):
        storage.read_bytes("file:///x")


def test_missing_local_object_is_object_not_found(s3_root: Path) -> None:
    with pytest.raises(ObjectNotFound, match="no object at s3://ddcicd-test/missing"):
        storage.read_bytes("s3://ddcicd-test/missing")


def test_without_a_local_root_the_same_calls_use_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DDCICD_S3_ROOT", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    storage.s3_client.cache_clear()
    try:
        with mock_aws():
            boto3.client("s3").create_bucket(Bucket="ddcicd-aws")
            storage.write_bytes("s3://ddcicd-aws/x/y.json", b"[1]", "application/json")
            assert storage.read_bytes("s3://ddcicd-aws/x/y.json") == b"[1]"
            assert storage.exists("s3://ddcicd-aws/x/y.json") and not storage.exists("s3://ddcicd-aws/x/z")
            assert storage.fetch("s3://ddcicd-aws/x/y.json", tmp_path).read_bytes() == b"[1]"
            with pytest.raises(ObjectNotFound):
                storage.read_bytes("s3://ddcicd-aws/x/z")
    finally:
        storage.s3_client.cache_clear()
