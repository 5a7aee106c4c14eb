"""Reading a model archive (model.tar.gz, or the directory SageMaker unpacks it into) with
every file size-capped before it is read: a gzip bomb posing as a model fails at load with
the member named, not by exhausting memory.

    >>> onnx_bytes, document = read_model_archive("model.tar.gz")
"""
from __future__ import annotations

import json
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any


class ModelArchiveError(ValueError):
    """The model archive is missing, unreadable or lacks model.onnx / model.json."""


# What a model archive may hold, uncompressed, before anything is read into memory: a gzip
# bomb (a few MB that inflate to many GB) is refused from the tar headers, naming the member.
MAX_MEMBER_BYTES = 1 << 30  # one file: ResNet-152's model.onnx is 230 MB, four times that fits
MAX_JSON_BYTES = 1 << 20  # model.json is a few kB
MAX_ARCHIVE_BYTES = 3 << 30  # all files together (model.onnx, model.pt, an int8 graph, ...)
MAX_MEMBERS = 1000


def read_model_archive(path: str | os.PathLike[str]) -> tuple[bytes, dict[str, Any]]:
    """Return (model.onnx bytes, model.json document) from a model.tar.gz or a directory."""
    found = read_model_files(path, ("model.onnx", "model.json"))
    return found["model.onnx"], _json_object(path, found["model.json"])


PRECISIONS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}  # as steps/quantize.py writes them


def read_served_model(path: str | os.PathLike[str], precision: str | None = None) -> tuple[bytes, dict[str, Any], str]:
    """(graph bytes, model.json document, "fp32" or "int8"): the graph model.json's "serving"
    section names as served (fp32 for archives without one), or the `precision` asked for."""
    found = read_model_files(path, ("model.json",), optional=tuple(PRECISIONS.values()))
    document = _json_object(path, found["model.json"])
    serving = document.get("serving") if isinstance(document.get("serving"), dict) else {}
    chosen = precision or serving.get("served") or "fp32"
    if chosen not in PRECISIONS:
        raise ModelArchiveError(f"{path}: precision {chosen!r} is not one of {sorted(PRECISIONS)}")
    if PRECISIONS[chosen] not in found:
        raise ModelArchiveError(f"{path} has no {PRECISIONS[chosen]} for precision {chosen}"
                                + ("" if precision else " (model.json says it is served)"))
    return found[PRECISIONS[chosen]], document, chosen


def _json_object(path: str | os.PathLike[str], data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelArchiveError(f"{path}: model.json is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise ModelArchiveError(f"{path}: model.json is a {type(document).__name__}, not an object")
    return document


def _member_cap(name: str) -> int:
    return MAX_JSON_BYTES if name.endswith(".json") else MAX_MEMBER_BYTES


def read_model_files(path: str | os.PathLike[str], names: tuple[str, ...],
                     optional: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The named files (by base name) of a model.tar.gz or a model directory, each checked
    against its size cap before it is read; `optional` ones are left out when absent."""
    path = Path(path)
    if path.is_dir():
        found = {}
        for name in (*names, *optional):
            file = path / name
            if not file.is_file():
                if name in optional:
                    continue
                raise ModelArchiveError(f"{file} is missing")
            size = file.stat().st_size
            if size > _member_cap(name):
                raise ModelArchiveError(f"{file} is {size} bytes, over the limit of {_member_cap(name)} for {name}")
            found[name] = file.read_bytes()
        return found
    if not path.is_file():
        raise ModelArchiveError(f"model archive {path} does not exist")
    try:
        found = _read_tar_members(path, {*names, *optional})
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        reason = "; ".join(line.strip("- ") for line in str(error).splitlines() if line.strip())
        raise ModelArchiveError(f"{path} is not a readable tar archive ({reason})") from error
    missing = [name for name in names if name not in found]
    if missing:
        raise ModelArchiveError(f"{path} has no {missing[0]} (files read: {sorted(found)})")
    return found


def _read_tar_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """One pass over the tar headers: caps checked on each header before its data is read or
    skipped (skipping a gzip member inflates it, so the total cap bounds the time too)."""
    found: dict[str, bytes] = {}
    total = 0
    with tarfile.open(path, "r:*") as archive:
        for count, member in enumerate(archive, start=1):
            if count > MAX_MEMBERS:
                raise ModelArchiveError(f"{path} has more than {MAX_MEMBERS} members (at {member.name!r})")
            if not member.isfile():
                continue
            name = Path(member.name).name
            if member.size > _member_cap(name):
                raise ModelArchiveError(f"{path}: member {member.name!r} is {member.size} bytes uncompressed, "
                                        f"over the limit of {_member_cap(name)} bytes per {'JSON ' if name.endswith('.json') else ''}member")
            total += member.size
            if total > MAX_ARCHIVE_BYTES:
                raise ModelArchiveError(f"{path}: members add up to {total} bytes uncompressed at {member.name!r}, "
                                        f"over the limit of {MAX_ARCHIVE_BYTES} bytes for the archive")
            if name in wanted and name not in found:
                handle = archive.extractfile(member)
                assert handle is not None  # isfile() members always have a file object
                found[name] = handle.read(member.size)
    return found
