"""Read and write `s3://bucket/key` objects, on AWS or on this machine.

On AWS every URI goes through boto3 `s3`. When the environment variable DDCICD_S3_ROOT is
set (the local engine sets it), `s3://bucket/key` is the file `$DDCICD_S3_ROOT/bucket/key`
instead, the way SageMaker local mode swaps `s3://` for `file://`. The handlers only ever
see `s3://` URIs, so the same event runs in both places:

    DDCICD_S3_ROOT=/tmp/s3   s3://ddcicd/processed/manifest.json -> /tmp/s3/ddcicd/processed/manifest.json
    (unset)                  s3://ddcicd/processed/manifest.json -> GetObject(Bucket=ddcicd, Key=processed/...)
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from lambdas.errors import InvalidEvent, ObjectNotFound, StorageError
from steps.atomic import write_atomically

S3_ROOT_VARIABLE = "DDCICD_S3_ROOT"
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`); anything else is an InvalidEvent."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidEvent(f"expected an s3://bucket/key URI, got {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise InvalidEvent(f"URI {uri!r} has no bucket")
    return bucket, key


def join_uri(prefix: str, name: str) -> str:
    """`s3://b/processed` + `manifest.json` -> `s3://b/processed/manifest.json`."""
    return prefix.rstrip("/") + "/" + name


def sibling_uri(uri: str, name: str) -> str:
    """The URI of `name` in the same "folder" as `uri` (a confusion-matrix PNG beside its JSON)."""
    return uri.rsplit("/", 1)[0] + "/" + name


def local_root() -> Path | None:
    """The local S3 root directory, or None when objects live in real S3."""
    root = os.environ.get(S3_ROOT_VARIABLE)
    return Path(root) if root else None


def local_path(uri: str) -> Path:
    """The file standing for `uri` under the local S3 root; refuses keys that climb out of it."""
    root = local_root()
    if root is None:
        raise StorageError(f"{S3_ROOT_VARIABLE} is not set, so {uri} has no local file")
    bucket, key = split_uri(uri)
    path = (root / bucket / key).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidEvent(f"URI {uri!r} points outside the local S3 root {root}")
    return path


@functools.cache
def s3_client() -> Any:
    """One boto3 S3 client per process, created on first use so moto can patch it in tests."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"max_attempts": 5, "mode": "standard"},
    )
    return boto3.client("s3", config=config)


def _is_missing(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return code in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


def read_bytes(uri: str) -> bytes:
    """The whole object; ObjectNotFound if it does not exist."""
    if local_root() is not None:
        path = local_path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(uri) from None
        except OSError as error:
            raise StorageError(f"cannot read {uri} ({path}): {error}") from error
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_uri(uri)
    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if _is_missing(error):
            raise ObjectNotFound(uri) from None
        raise StorageError(f"cannot read {uri}: {error}") from error
    except BotoCoreError as error:
        raise StorageError(f"cannot read {uri}: {error}") from error


def read_range(uri: str, start: int, end: int | None = None) -> bytes:
    """Bytes [start, end) of the object (to its end when `end` is None): an S3 ranged GET,
    so a few records of a large RecordIO file cost a few small reads, not a download."""
    if start < 0 or (end is not None and end <= start):
        raise StorageError(f"bad byte range [{start}, {end}) for {uri}")
    if local_root() is not None:
        path = local_path(uri)
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read() if end is None else handle.read(end - start)
        except FileNotFoundError:
            raise ObjectNotFound(uri) from None
        except OSError as error:
            raise StorageError(f"cannot read {uri} ({path}): {error}") from error
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_uri(uri)
    byte_range = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
    try:
        return s3_client().get_object(Bucket=bucket, Key=key, Range=byte_range)["Body"].read()
    except ClientError as error:
        if _is_missing(error):
            raise ObjectNotFound(uri) from None
        raise StorageError(f"cannot read {byte_range} of {uri}: {error}") from error
    except BotoCoreError as error:
        raise StorageError(f"cannot read {byte_range} of {uri}: {error}") from error


def exists(uri: str) -> bool:
    """Whether an object is at `uri` (the champion's metrics may not exist yet)."""
    if local_root() is not None:
        return local_path(uri).is_file()
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_uri(uri)
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _is_missing(error):
            return False
        raise StorageError(f"cannot look up {uri}: {error}") from error
    except BotoCoreError as error:
        raise StorageError(f"cannot look up {uri}: {error}") from error
    return True


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Store `data` at `uri`; locally the write is atomic (temp file, then rename)."""
    if local_root() is not None:
        path = local_path(uri)
        try:
            write_atomically(path, data, fsync=False)
        except OSError as error:
            raise StorageError(f"cannot write {uri} ({path}): {error}") from error
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_uri(uri)
    try:
        s3_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except (ClientError, BotoCoreError) as error:
        raise StorageError(f"cannot write {uri}: {error}") from error


def fetch(uri: str, directory: Path) -> Path:
    """A local file holding the object: the mapped file itself locally, a download into `directory` on AWS.

    Readers that need a real path (RecordIO) use this instead of `read_bytes`.
    """
    if local_root() is not None:
        path = local_path(uri)
        if not path.is_file():
            raise ObjectNotFound(uri)
        return path
    target = directory / split_uri(uri)[1].rsplit("/", 1)[-1]
    target.write_bytes(read_bytes(uri))
    return target


def list_uris(prefix_uri: str) -> list[str]:
    """Every object URI whose key starts with the prefix, sorted (S3 ListObjectsV2, paginated)."""
    if local_root() is not None:
        base = local_path(prefix_uri)
        if prefix_uri.endswith("/"):
            paths = sorted(path for path in base.rglob("*") if path.is_file()) if base.is_dir() else []
        else:
            paths = sorted(path for path in base.parent.glob(base.name + "*") if path.is_file())
        bucket, _ = split_uri(prefix_uri)
        bucket_root = local_path(f"s3://{bucket}/")
        return [f"s3://{bucket}/{path.relative_to(bucket_root).as_posix()}" for path in paths
                if not path.name.startswith(".")]  # fmt: skip
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(prefix_uri)
    uris: list[str] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            uris += [f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", [])]
    except (ClientError, BotoCoreError) as error:
        raise StorageError(f"cannot list {prefix_uri}: {error}") from error
    return sorted(uris)
