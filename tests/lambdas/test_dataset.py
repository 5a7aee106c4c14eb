"""Reading the processing step's validation data: whole (evaluate) or sampled by byte range (load test)."""
from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas import storage
from lambdas.dataset import read_validation_images, sample_validation_images
from lambdas.errors import InvalidData


def test_a_sample_is_read_by_byte_range_and_matches_the_full_read(kit: Any) -> None:
    data_uri = kit.write_processed([(label % 10, label % 10) for label in range(25)])
    everything = [item.image for item in read_validation_images(data_uri)]
    sample = sample_validation_images(data_uri, 6, "0/0")
    assert len(sample) == 6 and all(image in everything for image in sample)
    assert sample == sample_validation_images(data_uri, 6, "0/0")  # seeded
    assert sample != sample_validation_images(data_uri, 6, "0/1")  # another shard, another sample
    assert sorted(sample_validation_images(data_uri, 100, "x")) == sorted(everything)  # all, when asked for more


def test_a_broken_index_is_invalid_data(kit: Any) -> None:
    data_uri = kit.write_processed([(1, 1), (2, 2)])
    kit.put("processed/validation.idx", b"0\t0\nnot a line\n")
    with pytest.raises(InvalidData, match="validation.idx line 2 is not 'key<TAB>offset'"):
        sample_validation_images(data_uri, 1, "s")
    kit.put("processed/validation.idx", b"0\t3\n")
    with pytest.raises(InvalidData, match="record at byte 3"):
        sample_validation_images(data_uri, 1, "s")


def test_sampling_from_s3_uses_ranged_gets(kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data_uri = kit.write_processed([(label % 10, label % 10) for label in range(12)])
    local = sorted(sample_validation_images(data_uri, 4, "seed"))
    files = {name: (kit.root / kit.bucket / "processed" / name).read_bytes() for name in ("validation.rec", "validation.idx")}
    monkeypatch.delenv("DDCICD_S3_ROOT")
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    storage.s3_client.cache_clear()
    try:
        with mock_aws():
            client = boto3.client("s3")
            client.create_bucket(Bucket=kit.bucket)
            for name, body in files.items():
                client.put_object(Bucket=kit.bucket, Key=f"processed/{name}", Body=body)
            assert sorted(sample_validation_images(data_uri, 4, "seed")) == local
            assert storage.read_range(f"{data_uri}/validation.idx", 0, 2) == files["validation.idx"][:2]
    finally:
        storage.s3_client.cache_clear()
