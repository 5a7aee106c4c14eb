"""Local `s3://bucket/key` URIs as files under one root directory.

The same mapping the Lambdas use (lambdas/storage.py, env DDCICD_S3_ROOT): the object
`s3://bucket/a/b` is the file `<root>/bucket/a/b`. Local jobs get their inputs the way
SageMaker gives them: the objects under an S3 prefix copied into the job's directory
(hard links when possible, so a 1 GB channel costs no copy), and their outputs uploaded
back under a prefix when the job ends.

    root = S3Root.default()                        # $DDCICD_HOME/s3
    root.path("s3://ddcicd/runs/x/train.rec")      # -> .../s3/ddcicd/runs/x/train.rec
    root.download_prefix("s3://ddcicd/raw/", job_dir / "input")
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from steps.atomic import replacing, write_atomically
from lambdas.storage import S3_ROOT_VARIABLE  # the variable the handlers map s3:// URIs with
from workflow.home import ddcicd_home

__all__ = ["NoSuchKey", "S3Root", "S3UriError", "S3_ROOT_VARIABLE", "split_uri"]


class S3UriError(ValueError):
    """Not an s3://bucket/key URI, or one that escapes the local root."""


class NoSuchKey(FileNotFoundError):
    """No object and no prefix under the URI (S3's NoSuchKey)."""


def split_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise S3UriError(f"expected an s3://bucket/key URI, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise S3UriError(f"URI {uri!r} has no bucket")
    return bucket, key


@dataclass(frozen=True)
class S3Root:
    """A directory standing in for S3."""

    directory: Path

    @classmethod
    def default(cls) -> S3Root:
        """$DDCICD_S3_ROOT if set, else $DDCICD_HOME/s3: the Lambdas resolve the same way."""
        configured = os.environ.get(S3_ROOT_VARIABLE)
        return cls(Path(configured).resolve() if configured else ddcicd_home() / "s3")

    def path(self, uri: str) -> Path:
        bucket, key = split_uri(uri)
        root = self.directory.resolve()
        path = (root / bucket / key).resolve() if key else (root / bucket).resolve()
        if not path.is_relative_to(root):
            raise S3UriError(f"URI {uri!r} points outside the local S3 root {root}")
        return path

    def uri(self, path: Path) -> str:
        relative = Path(path).resolve().relative_to(self.directory.resolve())
        return "s3://" + relative.as_posix()

    def exists(self, uri: str) -> bool:
        return self.path(uri).exists()

    def objects(self, prefix_uri: str) -> list[Path]:
        """Files whose key starts with the prefix, as S3 ListObjects matches keys.

        `s3://b/processed/train.rec` matches exactly that file (and `train.rec2` if there
        were one); `s3://b/processed/` matches everything below the folder.
        """
        base = self.path(prefix_uri)
        if prefix_uri.endswith("/"):
            return sorted(path for path in base.rglob("*") if path.is_file()) if base.is_dir() else []
        if base.is_file():
            return [base]
        if base.is_dir():
            return sorted(path for path in base.rglob("*") if path.is_file())
        parent = base.parent
        if not parent.is_dir():
            return []
        return sorted(path for path in parent.iterdir() if path.is_file() and path.name.startswith(base.name))

    def download_prefix(self, prefix_uri: str, destination: Path) -> list[Path]:
        """Copy (hard-link when possible) the objects under a prefix into a directory.

        Keys keep their path relative to the prefix's folder, as SageMaker's File mode does.
        """
        objects = self.objects(prefix_uri)
        if not objects:
            raise NoSuchKey(f"no objects under {prefix_uri} (local S3 root {self.directory})")
        base = self.path(prefix_uri)
        anchor = base if prefix_uri.endswith("/") or base.is_dir() else base.parent
        destination.mkdir(parents=True, exist_ok=True)
        copied = []
        for source in objects:
            target = destination / source.relative_to(anchor)
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source, target)
            copied.append(target)
        return copied

    def upload_directory(self, source: Path, prefix_uri: str) -> list[str]:
        """Put every file below `source` under the prefix; each write is atomic."""
        uris = []
        for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
            uri = prefix_uri.rstrip("/") + "/" + path.relative_to(source).as_posix()
            self.put_file(path, uri)
            uris.append(uri)
        return uris

    def put_file(self, source: Path, uri: str) -> Path:
        target = self.path(uri)
        with open(source, "rb") as data, replacing(target, fsync=False) as out:
            shutil.copyfileobj(data, out)
        return target

    def put_bytes(self, data: bytes, uri: str) -> Path:
        target = self.path(uri)
        write_atomically(target, data, fsync=False)
        return target

    def copy_object(self, source_uri: str, target_uri: str) -> Path:
        source = self.path(source_uri)
        if not source.is_file():
            raise NoSuchKey(f"no object at {source_uri}")
        return self.put_file(source, target_uri)


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)
