"""MXNet RecordIO, byte for byte, without MXNet.

SageMaker's built-in Image Classification algorithm reads its `train` and `validation`
channels as MXNet RecordIO, and MXNet's `im2rec.py` is how people usually make them.
Importing mxnet only to frame bytes would cost seconds of start-up and a heavy wheel in
every container, so this module writes and reads the same bytes itself. The names mirror
`mxnet.recordio` (`MXRecordIO` -> `RecordIO`, `MXIndexedRecordIO` -> `IndexedRecordIO`,
`IRHeader`, `pack`, `unpack`, `pack_img`, `unpack_img`); the `MX*` names are aliases so
code written against mxnet runs unchanged.

The framing (dmlc-core, include/dmlc/recordio.h and src/recordio.cc), little-endian::

    uint32 magic = 0xCED7230A
    uint32 lrecord = cflag << 29 | length      # length < 2**29
    bytes  payload[length], then zero padding to a multiple of 4

A payload that itself holds the magic word at a 4-byte-aligned offset would confuse a
reader that resynchronises on the magic word, so dmlc-core cuts the payload at each such
word, drops the word and writes the pieces as parts with cflag 1 (first), 2 (middle) and
3 (last); cflag 0 is a whole record. The reader glues the pieces back together with the
magic word between them. Example: payload ``b"ab\\0\\0" + MAGIC_BYTES + b"cd"`` is written
as a part (cflag 1, length 4, ``ab\\0\\0``) and a part (cflag 3, length 2, ``cd`` + 2 pad).

An image record's payload is an `IRHeader` packed as ``<IfQQ`` (flag, label, id, id2),
then, when flag > 0, `flag` float32 labels, then the encoded image. The `.idx` file has a
line ``key\\toffset`` per record; im2rec's `.lst` has ``index\\tlabel...\\tpath``.
"""
from __future__ import annotations

import hashlib
import io
import numbers
import os
import struct
from collections import namedtuple
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "IRHeader",
    "IndexedRecordIO",
    "MXIndexedRecordIO",
    "MXRecordIO",
    "RecordIO",
    "RecordIOError",
    "decode_records",
    "encode_record",
    "pack",
    "pack_img",
    "read_lst",
    "unpack",
    "unpack_img",
    "write_lst_line",
]

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_RECORD_BYTES = (1 << 29) - 1
_LENGTH_MASK = (1 << 29) - 1

# cflag values from dmlc-core
FULL, FIRST, MIDDLE, LAST = 0, 1, 2, 3

IRHeader = namedtuple("IRHeader", ["flag", "label", "id", "id2"])
IRHeader.__doc__ = """Image record header: flag (0 or number of float labels), label, id, id2."""
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24


class RecordIOError(ValueError):
    """A RecordIO file or record is malformed; the message says where."""


# ---------------------------------------------------------------------------------------
# framing: pure functions


def encode_record(payload: bytes | bytearray | memoryview) -> bytes:
    """Frame one payload exactly as dmlc-core's RecordIOWriter::WriteRecord does.

    >>> encode_record(b"abc") == MAGIC_BYTES + struct.pack("<I", 3) + b"abc\\0"
    True
    """
    data = bytes(payload)
    size = len(data)
    if size > MAX_RECORD_BYTES:
        raise RecordIOError(f"record of {size} bytes is too large: RecordIO records must be < 2**29 bytes")
    lower_align = size & ~3
    if lower_align and data.find(MAGIC_BYTES) >= 0:  # memchr-fast; the aligned scan only when needed
        words = np.frombuffer(data, dtype="<u4", count=lower_align // 4)
        cuts = (np.flatnonzero(words == MAGIC) * 4).tolist()
    else:
        cuts = []
    pieces: list[bytes] = []
    start = 0
    for cut in cuts:
        cflag = FIRST if start == 0 else MIDDLE
        pieces.append(MAGIC_BYTES + struct.pack("<I", cflag << 29 | (cut - start)))
        pieces.append(data[start:cut])
        start = cut + 4
    cflag = LAST if start != 0 else FULL
    pieces.append(MAGIC_BYTES + struct.pack("<I", cflag << 29 | (size - start)))
    pieces.append(data[start:])
    pieces.append(b"\0" * (-size % 4))
    return b"".join(pieces)


def _read_part(stream: IO[bytes], where: str) -> tuple[int, bytes] | None:
    """One framed part: (cflag, bytes) or None at a clean end of file."""
    head = stream.read(8)
    if not head:
        return None
    if len(head) != 8:
        raise RecordIOError(f"{where}: truncated record header ({len(head)} of 8 bytes)")
    magic, lrecord = struct.unpack("<II", head)
    if magic != MAGIC:
        raise RecordIOError(f"{where}: bad magic 0x{magic:08X}, expected 0x{MAGIC:08X}")
    cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
    padded = (length + 3) & ~3
    body = stream.read(padded)
    if len(body) != padded:
        raise RecordIOError(f"{where}: truncated record body ({len(body)} of {padded} bytes)")
    return cflag, body[:length]


def read_record(stream: IO[bytes], where: str = "<stream>") -> bytes | None:
    """The next whole record from `stream` (parts glued back), or None at end of file."""
    part = _read_part(stream, where)
    if part is None:
        return None
    cflag, body = part
    if cflag == FULL:
        return body
    if cflag != FIRST:
        raise RecordIOError(f"{where}: record starts with continuation flag {cflag}, expected 0 or 1")
    pieces = [body]
    while True:
        part = _read_part(stream, where)
        if part is None:
            raise RecordIOError(f"{where}: end of file inside a multi-part record")
        cflag, body = part
        if cflag not in (MIDDLE, LAST):
            raise RecordIOError(f"{where}: continuation flag {cflag} inside a multi-part record")
        pieces.append(MAGIC_BYTES)
        pieces.append(body)
        if cflag == LAST:
            return b"".join(pieces)


def decode_records(data: bytes) -> list[bytes]:
    """Every record in a whole RecordIO buffer, in order."""
    stream = io.BytesIO(data)
    records = []
    while (record := read_record(stream, f"<buffer> at byte {stream.tell()}")) is not None:
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------
# image records: pack / unpack as mxnet.recordio does


def pack(header: IRHeader | Sequence[Any], s: bytes) -> bytes:
    """Prefix `s` with an IRHeader; a label that is a sequence becomes flag = len(labels).

    >>> len(pack(IRHeader(0, 3.0, 7, 0), b"jpeg"))
    28
    """
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        header = header._replace(flag=0)
    else:
        label = np.asarray(header.label, dtype="<f4")
        header = header._replace(flag=label.size, label=0)
        s = label.tobytes() + s
    return struct.pack(_IR_FORMAT, *header) + s


def unpack(s: bytes) -> tuple[IRHeader, bytes]:
    """Split a record into its IRHeader (label an array when flag > 0) and the rest."""
    if len(s) < _IR_SIZE:
        raise RecordIOError(f"record of {len(s)} bytes is shorter than an IRHeader ({_IR_SIZE} bytes)")
    header = IRHeader(*struct.unpack(_IR_FORMAT, s[:_IR_SIZE]))
    s = s[_IR_SIZE:]
    if header.flag > 0:
        if len(s) < header.flag * 4:
            raise RecordIOError(f"record declares {header.flag} labels but has only {len(s)} bytes after its header")
        header = header._replace(label=np.frombuffer(s, dtype="<f4", count=header.flag).copy())
        s = s[header.flag * 4 :]
    return header, s


def pack_img(
    header: IRHeader | Sequence[Any], img: npt.NDArray[np.uint8], quality: int = 95, img_fmt: str = ".jpg"
) -> bytes:
    """Encode `img` (OpenCV BGR array) with OpenCV and pack it; quality as in mxnet (JPEG 0-100, PNG 0-9)."""
    import cv2

    fmt = img_fmt.upper()
    if fmt in (".JPG", ".JPEG"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == ".PNG":
        params = [cv2.IMWRITE_PNG_COMPRESSION, quality]
    else:
        params = []
    ok, buf = cv2.imencode(img_fmt, img, params)
    if not ok:
        raise RecordIOError(f"OpenCV could not encode an image of shape {img.shape} as {img_fmt!r}")
    return pack(header, buf.tobytes())


def unpack_img(s: bytes, iscolor: int = -1) -> tuple[IRHeader, npt.NDArray[np.uint8]]:
    """Unpack a record and decode its image with OpenCV (iscolor as cv2.imdecode's flags)."""
    import cv2

    header, payload = unpack(s)
    img = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), iscolor)
    if img is None:
        raise RecordIOError(f"record id={header.id}: payload of {len(payload)} bytes is not a decodable image")
    return header, img


# ---------------------------------------------------------------------------------------
# .lst files (im2rec's list format)


def write_lst_line(index: int, label: float | Sequence[float], path: str) -> str:
    """One im2rec `.lst` line: index, labels as %f, relative path, tab separated.

    >>> write_lst_line(4, 2, "c2/img_9.jpg")
    '4\\t2.000000\\tc2/img_9.jpg\\n'
    """
    labels = [label] if isinstance(label, numbers.Number) else list(label)
    return f"{index}\t" + "\t".join(f"{float(value):f}" for value in labels) + f"\t{path}\n"


def read_lst(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[float], str]]:
    """(index, labels, path) for each line of an im2rec `.lst` file."""
    with open(path, encoding="utf-8") as lst:
        for number, line in enumerate(lst, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise RecordIOError(f"{path}:{number}: expected index, label(s) and path separated by tabs, got {line!r}")
            try:
                yield int(fields[0]), [float(value) for value in fields[1:-1]], fields[-1]
            except ValueError as error:
                raise RecordIOError(f"{path}:{number}: {error}") from None


# ---------------------------------------------------------------------------------------
# files


class RecordIO:
    """Sequential RecordIO file, like mxnet.recordio.MXRecordIO (flag 'r' or 'w').

    Writes go to a temporary name in the same directory and are renamed into place by
    `close()`, so a crash never leaves a half-written `.rec` behind; leaving a `with`
    block through an exception discards the file instead.
    """

    def __init__(self, uri: str | os.PathLike[str], flag: str) -> None:
        if flag not in ("r", "w"):
            raise ValueError(f"RecordIO flag must be 'r' or 'w', got {flag!r}")
        self.uri = os.fspath(uri)
        self.flag = flag
        self.is_open = False
        self._handle: IO[bytes] | None = None
        self._temp: str | None = None
        self.open()

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        """(Re)open the file: from the start for reading, truncated for writing."""
        if self.flag == "w":
            self._temp = _temp_name(self.uri)
            self._handle = open(self._temp, "wb")
            self._sha256 = hashlib.sha256()
        else:
            self._handle = open(self.uri, "rb")
        self.is_open = True

    def close(self) -> None:
        """Close; in write mode, publish the file under its real name."""
        if not self.is_open or self._handle is None:
            return
        self._handle.close()
        self.is_open = False
        if self._temp is not None:
            os.replace(self._temp, self.uri)
            self._temp = None

    def abort(self) -> None:
        """Close without publishing anything written (write mode)."""
        if self._handle is not None:
            self._handle.close()
        self.is_open = False
        if self._temp is not None:
            Path(self._temp).unlink(missing_ok=True)
            self._temp = None

    def reset(self) -> None:
        """Back to the first record (read mode), as MXRecordIO.reset."""
        self.close()
        self.open()

    def __enter__(self) -> RecordIO:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        try:
            self.abort() if self.flag == "w" else self.close()
        except (OSError, AttributeError):
            pass

    # -- records -------------------------------------------------------------------------
    def _require(self, flag: str) -> IO[bytes]:
        if not self.is_open or self._handle is None:
            raise RecordIOError(f"{self.uri}: file is closed")
        if self.flag != flag:
            raise RecordIOError(f"{self.uri}: opened with flag {self.flag!r}, this needs {flag!r}")
        return self._handle

    def write(self, buf: bytes) -> None:
        """Append one record."""
        framed = encode_record(buf)
        self._require("w").write(framed)
        self._sha256.update(framed)

    def sha256(self) -> str:
        """Hex SHA-256 of everything written so far (write mode): a checksum without reading the file back."""
        return self._sha256.hexdigest()

    def read(self) -> bytes | None:
        """The next record, or None at the end of the file."""
        handle = self._require("r")
        return read_record(handle, f"{self.uri} at byte {handle.tell()}")

    def tell(self) -> int:
        """Byte offset of the next record (what `.idx` files store)."""
        if self._handle is None:
            raise RecordIOError(f"{self.uri}: file is closed")
        return self._handle.tell()

    def __iter__(self) -> Iterator[bytes]:
        while (record := self.read()) is not None:
            yield record


class IndexedRecordIO(RecordIO):
    """RecordIO with a `.idx` file (``key\\toffset`` lines) for random access, like MXIndexedRecordIO."""

    def __init__(
        self,
        idx_path: str | os.PathLike[str],
        uri: str | os.PathLike[str],
        flag: str,
        key_type: Callable[[str], Any] = int,
    ) -> None:
        self.idx_path = os.fspath(idx_path)
        self.key_type = key_type
        self.idx: dict[Any, int] = {}
        self.keys: list[Any] = []
        self._fidx: IO[str] | None = None
        self._idx_temp: str | None = None
        super().__init__(uri, flag)

    def open(self) -> None:
        super().open()
        self.idx = {}
        self.keys = []
        if self.flag == "w":
            self._idx_temp = _temp_name(self.idx_path)
            self._fidx = open(self._idx_temp, "w", encoding="utf-8", newline="\n")
            return
        with open(self.idx_path, encoding="utf-8") as fidx:
            for number, line in enumerate(fidx, start=1):
                fields = line.strip().split("\t")
                if len(fields) != 2:
                    raise RecordIOError(f"{self.idx_path}:{number}: expected 'key<TAB>offset', got {line!r}")
                key = self.key_type(fields[0])
                self.idx[key] = int(fields[1])
                self.keys.append(key)

    def close(self) -> None:
        if not self.is_open:
            return
        super().close()
        if self._fidx is not None:
            self._fidx.close()
            self._fidx = None
        if self._idx_temp is not None:
            os.replace(self._idx_temp, self.idx_path)
            self._idx_temp = None

    def abort(self) -> None:
        super().abort()
        if self._fidx is not None:
            self._fidx.close()
            self._fidx = None
        if self._idx_temp is not None:
            Path(self._idx_temp).unlink(missing_ok=True)
            self._idx_temp = None

    def seek(self, idx: Any) -> None:
        """Position the reader at the record with key `idx`."""
        handle = self._require("r")
        try:
            handle.seek(self.idx[idx])
        except KeyError:
            raise KeyError(f"{self.idx_path}: no record with key {idx!r}") from None

    def read_idx(self, idx: Any) -> bytes:
        """The record with key `idx`."""
        self.seek(idx)
        record = self.read()
        if record is None:
            raise RecordIOError(f"{self.uri}: index says key {idx!r} is at byte {self.idx[idx]}, past the end")
        return record

    def write_idx(self, idx: Any, buf: bytes) -> None:
        """Append a record under key `idx` and index it."""
        key = self.key_type(idx)
        position = self.tell()
        self.write(buf)
        assert self._fidx is not None
        self._fidx.write(f"{key}\t{position}\n")
        self.idx[key] = position
        self.keys.append(key)


def _temp_name(path: str) -> str:
    """A temporary sibling of `path`, so os.replace is an atomic rename on one file system."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}")


# drop-in names for code written against mxnet.recordio
MXRecordIO = RecordIO
MXIndexedRecordIO = IndexedRecordIO
