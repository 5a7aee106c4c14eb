"""Files that readers see whole or not at all: write a hidden sibling, then rename it over the target.

`os.replace` is atomic on one file system, so whoever reads the target (the next step, the
console, a resumed job, a supervisor waiting for a ready file) finds the old file or the
new one, never half of one; a writer killed mid-write leaves at most a hidden
`.<name>.<random>` beside it.

    write_atomically(path, data)                    # bytes known up front
    with replacing(path, fsync=False) as handle:    # streamed (a tar archive); renamed on success
        ...

`fsync=True` (the default) also flushes the data to the disk before the rename, so a power
cut cannot leave an empty file under the final name: model files, checkpoints and job
results. Files that are cheap to make again and written by the thousand (Batch Transform
outputs, the processing step's lists, local S3 objects) pass fsync=False.

Standard library only: the Lambda zips vendor this module with steps/recordio.py.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def open_sibling(path: str | os.PathLike[str]) -> tuple[BinaryIO, Path]:
    """A new hidden file beside `path`, open for binary writing, and its name.

    Created exclusively ("x") under a random name, so two writers of one target never share
    a temporary, and with the mode a plain open() gives (0666 less the umask), not
    mkstemp's 0600.
    """
    path = Path(path)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            return open(temporary, "xb"), temporary
        except FileExistsError:
            continue


@contextmanager
def replacing(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[BinaryIO]:
    """A handle whose contents replace `path` when the block ends; nothing changes if it raises.

    Creates `path`'s folder when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = open_sibling(path)
    try:
        with handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` in one step (see the module docstring)."""
    with replacing(path, fsync=fsync) as handle:
        handle.write(data)
