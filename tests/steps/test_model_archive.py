"""steps.model_archive: every member of a model archive is size-capped from its tar header before
it is read, so a gzip bomb posing as a model fails at load, naming the member (issue 17 item 9)."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from steps import model_archive
from steps.export import pack_model_dir
from steps.model_archive import MAX_MEMBER_BYTES, ModelArchiveError, read_model_archive

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = json.dumps({"classes": ["a", "b"], "image_shape": "3,48,64"}).encode()


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def gzip_bomb(path: Path, onnx_bytes: int) -> Path:
    """model.tar.gz: a real model.json, then a model.onnx of `onnx_bytes` zeros, streamed
    through gzip (1.5 GiB of zeros compress to 7 MB), as an attacker would upload it."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        def write(data: bytes) -> None:
            out.write(compressor.compress(data))

        write(_tar_header("model.json", len(DOCUMENT)) + DOCUMENT + bytes(-len(DOCUMENT) % 512))
        write(_tar_header("model.onnx", onnx_bytes))
        chunk = bytes(1 << 24)
        for start in range(0, onnx_bytes, len(chunk)):
            write(chunk[: min(len(chunk), onnx_bytes - start)])
        write(bytes(-onnx_bytes % 512) + bytes(1024))  # padding, then the end-of-archive blocks
        out.write(compressor.flush())
    return path


def archive_of(path: Path, files: dict[str, bytes]) -> Path:
    """model.tar.gz packed by the training job's own packer (files in name order)."""
    folder = path.with_suffix(".d")
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return pack_model_dir(folder, path)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gzip_bomb(tmp_path_factory.mktemp("bomb") / "model.tar.gz", MAX_MEMBER_BYTES + (512 << 20))


def test_a_gzip_bomb_is_refused_from_its_tar_header_naming_the_member(bomb: Path) -> None:
    assert bomb.stat().st_size < 16 << 20
    started = time.monotonic()
    with pytest.raises(ModelArchiveError, match=r"member 'model.onnx' is 1610612736 bytes uncompressed, "
                                                r"over the limit of 1073741824 bytes per member"):
        read_model_archive(bomb)
    assert time.monotonic() - started < 2  # nothing inflated past the header


def test_a_server_given_the_bomb_exits_2_in_bounded_memory(bomb: Path) -> None:
    """The real `python -m steps.serve`, its peak RSS read by a parent that waits for it."""
    probe = ("import resource, subprocess, sys; done = subprocess.run([sys.executable, '-m', 'steps.serve', "
             f"'--model', {str(bomb)!r}, '--port', '0'], capture_output=True, text=True); "
             "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "print(done.stderr, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    code, peak_kb = (int(value) for value in done.stdout.split())
    assert code == 2 and "member 'model.onnx' is 1610612736 bytes uncompressed" in done.stderr
    # The interpreter with onnxruntime, OpenCV and aiohttp imported is about 120 MB here; the
    # bomb's 1.5 GiB never reach memory.
    assert peak_kb < 300 * 1024, peak_kb


def test_model_json_has_its_own_small_cap(tmp_path: Path) -> None:
    archive = archive_of(tmp_path / "model.tar.gz", {"model.json": b" " * (2 << 20), "model.onnx": b"x"})
    with pytest.raises(ModelArchiveError, match=r"member 'model.json' is 2097152 bytes uncompressed, "
                                                r"over the limit of 1048576 bytes per JSON member"):
        read_model_archive(archive)


def test_the_total_and_the_member_count_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = archive_of(tmp_path / "model.tar.gz", {"model.pt": bytes(3000), "extra.bin": bytes(3000),
                                                     "model.json": DOCUMENT, "model.onnx": b"x"})
    monkeypatch.setattr(model_archive, "MAX_ARCHIVE_BYTES", 5000)
    with pytest.raises(ModelArchiveError, match=rf"members add up to {6001 + len(DOCUMENT)} bytes uncompressed at "
                                                r"'model.pt', over the limit of 5000 bytes for the archive"):
        read_model_archive(archive)
    monkeypatch.setattr(model_archive, "MAX_ARCHIVE_BYTES", 1 << 30)
    monkeypatch.setattr(model_archive, "MAX_MEMBERS", 3)
    with pytest.raises(ModelArchiveError, match=r"has more than 3 members \(at 'model.pt'\)"):
        read_model_archive(archive)


def test_a_model_directory_is_capped_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.json").write_bytes(DOCUMENT)
    (tmp_path / "model.onnx").write_bytes(bytes(2000))
    monkeypatch.setattr(model_archive, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(ModelArchiveError, match=r"model.onnx is 2000 bytes, over the limit of 1000 for model.onnx"):
        read_model_archive(tmp_path)


def test_a_truncated_archive_or_json_that_is_not_an_object_is_a_clear_error(tmp_path: Path) -> None:
    whole = archive_of(tmp_path / "whole.tar.gz", {"model.json": DOCUMENT, "model.onnx": bytes(100_000)}).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelArchiveError, match="is not a readable tar archive"):
        read_model_archive(tmp_path / "cut.tar.gz")
    listed = archive_of(tmp_path / "list.tar.gz", {"model.json": b"[1, 2]", "model.onnx": b"x"})
    with pytest.raises(ModelArchiveError, match="model.json is a list, not an object"):
        read_model_archive(listed)
