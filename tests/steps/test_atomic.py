"""steps.atomic: a target is replaced whole or left alone, with no temporary left behind."""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from steps.atomic import replacing, write_atomically


@pytest.mark.parametrize("fsync", [True, False])
def test_write_replaces_the_file_and_creates_its_folder(tmp_path: Path, fsync: bool) -> None:
    target = tmp_path / "a" / "b" / "model.json"
    write_atomically(target, b"old", fsync=fsync)
    write_atomically(target, b"new", fsync=fsync)
    assert target.read_bytes() == b"new"
    assert sorted(path.name for path in target.parent.iterdir()) == ["model.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "submission.csv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with replacing(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["submission.csv"]


def test_the_file_gets_the_mode_open_would_give_not_0600(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        write_atomically(tmp_path / "ready.json", b"{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "ready.json").stat().st_mode) == 0o640


def test_concurrent_writers_of_one_target_never_mix_their_bytes(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    payloads = [bytes([index]) * 200_000 for index in range(8)]
    threads = [threading.Thread(target=write_atomically, args=(target, payload), kwargs={"fsync": False})
               for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_bytes() in payloads
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]
