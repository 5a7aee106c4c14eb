"""`ddcicd aws upload-data`: copy a dataset folder to S3, in parallel, resumably.

Resuming is by content, not by name: every object is written with its SHA-256 in the
metadata (`x-amz-meta-sha256`), and a file whose key already exists with the same size and
the same digest is skipped. An interrupted upload therefore restarts where it stopped, and a
file changed since (same name, other bytes) is uploaded again. One ListObjectsV2 pass finds
what exists; HeadObject is asked only for keys whose size already matches.

    report = upload_data(context, Path("kaggle/"), "s3://bucket/ddcicd/datasets/kaggle/")
    report.uploaded, report.skipped, report.bytes_uploaded
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from boto3.s3.transfer import TransferConfig

from workflow.aws.clients import AwsContext, AwsError, split_s3_uri

DIGEST_KEY = "sha256"  # object metadata name (sent as x-amz-meta-sha256)
CHUNK = 1 << 20
# Parallelism comes from the file pool; big files (RecordIO) still go up in 64 MB parts.
TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)

Progress = Callable[[int, int], None]  # (files done, files total)


@dataclass(frozen=True)
class UploadReport:
    destination: str
    uploaded: int
    skipped: int
    bytes_uploaded: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(folder: Path) -> list[Path]:
    """Every regular file under `folder` except hidden ones (.DS_Store, editors' temp files)."""
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )  # fmt: skip


def existing_sizes(context: AwsContext, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under the prefix (one paginated listing)."""
    paginator = context.client("s3").get_paginator("list_objects_v2")
    sizes: dict[str, int] = {}
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = item["Size"]
    return sizes


def upload_data(
    context: AwsContext, folder: Path, destination: str, workers: int = 16, progress: Progress | None = None
) -> UploadReport:
    """Upload `folder` under the `destination` prefix; returns what was sent and what was skipped."""
    if not folder.is_dir():
        raise AwsError(f"{folder}: no such directory")
    bucket, prefix = split_s3_uri(destination.rstrip("/") + "/")
    files = local_files(folder)
    if not files:
        raise AwsError(f"{folder} holds no files to upload")
    sizes = existing_sizes(context, bucket, prefix)
    s3 = context.client("s3")

    def send(path: Path) -> int:
        """Returns the bytes sent, 0 when the object is already there with the same content."""
        key = prefix + path.relative_to(folder).as_posix()
        size = path.stat().st_size
        digest = sha256_of(path)
        if sizes.get(key) == size:
            metadata = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
            if metadata.get(DIGEST_KEY) == digest:
                return 0
        s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {DIGEST_KEY: digest}}, Config=TRANSFER)
        return max(size, 1)  # an empty file still counts as uploaded

    uploaded = skipped = sent_bytes = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="upload") as pool:
        futures = {pool.submit(send, path): path for path in files}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                sent = future.result()
                if sent:
                    uploaded += 1
                    sent_bytes += futures[future].stat().st_size
                else:
                    skipped += 1
                if progress is not None:
                    progress(done, len(files))
        except OSError as error:
            pool.shutdown(wait=True, cancel_futures=True)
            raise AwsError(f"cannot read {error.filename}: {error.strerror}") from error
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # one failure (or Ctrl-C) stops the queue
            raise
    return UploadReport(f"s3://{bucket}/{prefix}", uploaded, skipped, sent_bytes)
