"""upload-data: parallel, resumable by content, against moto's S3."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from workflow.aws.clients import AwsContext, AwsError
from workflow.aws.upload import DIGEST_KEY, sha256_of, upload_data
from workflow.cli import cli

BUCKET = "ddcicd-test-bucket"  # conftest.BUCKET


def make_dataset(root: Path) -> Path:
    for label in ("c0", "c1"):
        for index in range(3):
            path = root / "imgs" / "train" / label / f"img_{label}_{index}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{label}-{index}".encode() * (index + 1))
    (root / "driver_imgs_list.csv").write_text("subject,classname,img\n")
    (root / ".DS_Store").write_bytes(b"junk")
    return root


def keys(context: AwsContext) -> dict[str, int]:
    listing = context.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="pipeline/datasets/")
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def test_upload_sends_every_file_with_its_sha256(context: AwsContext, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "kaggle")
    seen: list[tuple[int, int]] = []
    report = upload_data(context, folder, f"s3://{BUCKET}/pipeline/datasets/kaggle/", workers=4,
                         progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert (report.uploaded, report.skipped) == (7, 0)
    uploaded = keys(context)
    assert "pipeline/datasets/kaggle/imgs/train/c1/img_c1_2.jpg" in uploaded
    assert "pipeline/datasets/kaggle/.DS_Store" not in uploaded
    assert len(uploaded) == 7
    head = context.client("s3").head_object(Bucket=BUCKET, Key="pipeline/datasets/kaggle/driver_imgs_list.csv")
    assert head["Metadata"][DIGEST_KEY] == sha256_of(folder / "driver_imgs_list.csv")
    assert seen[-1] == (7, 7)


def test_upload_resumes_skipping_identical_files_and_resends_changed_ones(context: AwsContext, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "kaggle")
    destination = f"s3://{BUCKET}/pipeline/datasets/kaggle/"
    upload_data(context, folder, destination, workers=4)
    # Same size, other bytes: only the checksum can tell.
    changed = folder / "imgs" / "train" / "c0" / "img_c0_0.jpg"
    changed.write_bytes(changed.read_bytes()[::-1])
    (folder / "imgs" / "train" / "c0" / "img_c0_9.jpg").write_bytes(b"new")
    report = upload_data(context, folder, destination, workers=4)
    assert (report.uploaded, report.skipped) == (2, 6)
    body = context.client("s3").get_object(Bucket=BUCKET, Key="pipeline/datasets/kaggle/imgs/train/c0/img_c0_0.jpg")["Body"].read()
    assert body == changed.read_bytes()


def test_upload_refuses_an_empty_folder(context: AwsContext, tmp_path: Path) -> None:
    with pytest.raises(AwsError, match="holds no files"):
        upload_data(context, tmp_path, f"s3://{BUCKET}/pipeline/datasets/empty/")


def test_upload_data_command_names_the_destination_and_the_next_step(overrides: list[str], tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "state-farm")
    arguments = ["aws", "upload-data", "--data", str(folder), *(f"--set={item}" for item in overrides)]
    first = CliRunner().invoke(cli, arguments)
    assert first.exit_code == 0, first.output
    assert f"s3://{BUCKET}/pipeline/datasets/state-farm/: 7 uploaded" in first.output
    assert "ddcicd aws start --dataset state-farm --wait" in first.output
    again = CliRunner().invoke(cli, arguments)
    assert "0 uploaded (0.0 MB), 7 already there" in again.output


def test_upload_data_to_a_missing_bucket_is_a_one_line_error(overrides: list[str], tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "kaggle")
    result = CliRunner().invoke(cli, ["aws", "upload-data", "--data", str(folder), *(f"--set={item}" for item in overrides),
                                      "--set", "aws.bucket=no-such-bucket"])  # fmt: skip
    assert result.exit_code == 2
    assert "NoSuchBucket" in result.output
