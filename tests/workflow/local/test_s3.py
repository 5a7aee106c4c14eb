from pathlib import Path

import pytest

from workflow.local.s3 import NoSuchKey, S3Root, S3UriError


@pytest.fixture
def root(tmp_path: Path) -> S3Root:
    return S3Root(tmp_path / "s3")


def test_uris_map_to_files_under_bucket_folders(root: S3Root) -> None:
    root.put_bytes(b"x", "s3://bucket/runs/a/train.rec")
    assert (root.directory / "bucket/runs/a/train.rec").read_bytes() == b"x"
    assert root.uri(root.directory / "bucket/runs/a/train.rec") == "s3://bucket/runs/a/train.rec"


def test_a_key_prefix_matches_like_list_objects(root: S3Root) -> None:
    for key in ("p/train.rec", "p/train.idx", "p/validation.rec", "p/sub/x.jpg"):
        root.put_bytes(key.encode(), f"s3://b/{key}")
    assert [path.name for path in root.objects("s3://b/p/train.rec")] == ["train.rec"]
    assert [path.name for path in root.objects("s3://b/p/train")] == ["train.idx", "train.rec"]
    assert len(root.objects("s3://b/p/")) == 4


def test_download_keeps_paths_relative_to_the_prefix(root: S3Root, tmp_path: Path) -> None:
    root.put_bytes(b"1", "s3://b/raw/imgs/train/c0/img_1.jpg")
    root.put_bytes(b"2", "s3://b/raw/driver_imgs_list.csv")
    copied = root.download_prefix("s3://b/raw/", tmp_path / "job")
    assert sorted(path.relative_to(tmp_path / "job").as_posix() for path in copied) == [
        "driver_imgs_list.csv", "imgs/train/c0/img_1.jpg",
    ]  # fmt: skip


def test_download_of_nothing_says_where_it_looked(root: S3Root, tmp_path: Path) -> None:
    with pytest.raises(NoSuchKey, match="no objects under s3://b/missing/"):
        root.download_prefix("s3://b/missing/", tmp_path / "job")


def test_upload_then_copy_object(root: S3Root, tmp_path: Path) -> None:
    (tmp_path / "out/sub").mkdir(parents=True)
    (tmp_path / "out/sub/m.json").write_text("{}")
    assert root.upload_directory(tmp_path / "out", "s3://b/runs/x/") == ["s3://b/runs/x/sub/m.json"]
    root.copy_object("s3://b/runs/x/sub/m.json", "s3://b/production/metrics.json")
    assert root.path("s3://b/production/metrics.json").read_text() == "{}"
    assert not list(root.directory.rglob("*.part"))


@pytest.mark.parametrize("uri", ["/etc/passwd", "s3://", "s3://b/../../etc/passwd", "http://b/k"])
def test_bad_uris_are_refused(root: S3Root, uri: str) -> None:
    with pytest.raises(S3UriError):
        root.path(uri)
