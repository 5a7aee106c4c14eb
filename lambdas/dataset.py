"""The processing step's validation data, as the handlers need it: classes and labelled JPEG bytes.

The processing step writes, under one prefix (DESIGN.md, "Files between steps"):

    <data_uri>/manifest.json        {"classes": ["c0", ..., "c9"], ...}  (index = label)
    <data_uri>/validation.rec       MXNet RecordIO, one IRHeader + encoded image per record
    <data_uri>/validation.idx       key<TAB>offset per record

Evaluate reads every record in order, so it fetches only the .rec. The load test needs a
small sample: it reads the .idx, picks records and fetches just their byte ranges. Images stay encoded: the endpoint takes `application/x-image` bytes, so
no decoding (and no OpenCV) is needed inside a Lambda. RecordIO framing comes from
`steps.recordio`, the same module the processing job writes with; the Lambda zip carries
it under the same import path (see workflow/aws/packaging.py).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

from lambdas import storage
from lambdas.errors import InvalidData
from steps import recordio


@dataclass(frozen=True)
class LabelledImage:
    """One validation image: its encoded bytes and its class index."""

    label: int
    image: bytes


def read_classes(data_uri: str) -> list[str]:
    """The class names from `<data_uri>/manifest.json`, index = label."""
    uri = storage.join_uri(data_uri, "manifest.json")
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as error:
        raise InvalidData(f"{uri} is not JSON: {error}") from None
    classes = manifest.get("classes") if isinstance(manifest, dict) else None
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(name, str) for name in classes):
        raise InvalidData(f"{uri} has no usable 'classes' list (need at least two names), got {classes!r}")
    return classes


def read_validation_images(data_uri: str, class_count: int | None = None) -> list[LabelledImage]:
    """Every record of `<data_uri>/validation.rec`, in file order; labels checked against `class_count`."""
    uri = storage.join_uri(data_uri, "validation.rec")
    try:
        records = recordio.decode_records(storage.read_bytes(uri))
    except recordio.RecordIOError as error:
        raise InvalidData(f"{uri} is not valid RecordIO: {error}") from None
    images = []
    for position, record in enumerate(records):
        try:
            header, image = recordio.unpack(record)
        except recordio.RecordIOError as error:
            raise InvalidData(f"{uri} record {position}: {error}") from None
        label_value = header.label if header.flag == 0 else header.label[0]
        label = int(round(float(label_value)))
        if class_count is not None and not 0 <= label < class_count:
            raise InvalidData(f"{uri} record {position} has label {label_value}, outside 0..{class_count - 1}")
        images.append(LabelledImage(label=label, image=image))
    if not images:
        raise InvalidData(f"{uri} holds no records")
    return images


def _read_index(uri: str) -> list[int]:
    """Record offsets from a `.idx` file (`key<TAB>offset` lines), sorted."""
    offsets = []
    for number, line in enumerate(storage.read_bytes(uri).decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            offsets.append(int(line.split("\t")[1]))
        except (IndexError, ValueError):
            raise InvalidData(f"{uri} line {number} is not 'key<TAB>offset': {line[:80]!r}") from None
    if not offsets:
        raise InvalidData(f"{uri} lists no records")
    return sorted(set(offsets))


def sample_validation_images(data_uri: str, count: int, seed: str) -> list[bytes]:
    """`count` encoded images (or all, if fewer) picked at random with `seed`, read by byte range
    through validation.idx."""
    rec_uri = storage.join_uri(data_uri, "validation.rec")
    offsets = _read_index(storage.join_uri(data_uri, "validation.idx"))
    ends: dict[int, int | None] = dict(zip(offsets, [*offsets[1:], None]))
    chosen = sorted(random.Random(seed).sample(offsets, min(count, len(offsets))))
    images = []
    for offset in chosen:
        where = f"{rec_uri} record at byte {offset}"
        try:
            records = recordio.decode_records(storage.read_range(rec_uri, offset, ends[offset]))
            if not records:
                raise recordio.RecordIOError("no record there")
            images.append(recordio.unpack(records[0])[1])
        except recordio.RecordIOError as error:
            raise InvalidData(f"{where}: {error}") from None
    return images
