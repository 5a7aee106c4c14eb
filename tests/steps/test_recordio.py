"""steps.recordio: the bytes MXNet/dmlc-core write, and round trips through the file classes."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steps.recordio import (
    MAGIC_BYTES,
    IndexedRecordIO,
    IRHeader,
    MXIndexedRecordIO,
    RecordIO,
    RecordIOError,
    decode_records,
    encode_record,
    pack,
    pack_img,
    read_lst,
    unpack,
    unpack_img,
    write_lst_line,
)


def lrec(cflag: int, length: int) -> bytes:
    return struct.pack("<I", cflag << 29 | length)


# ---- exact bytes ---------------------------------------------------------------------


def test_magic_is_little_endian_0xced7230a() -> None:
    assert MAGIC_BYTES == bytes([0x0A, 0x23, 0xD7, 0xCE])


def test_whole_record_is_header_payload_and_zero_padding() -> None:
    assert encode_record(b"abcde") == MAGIC_BYTES + lrec(0, 5) + b"abcde\0\0\0"
    assert encode_record(b"abcd") == MAGIC_BYTES + lrec(0, 4) + b"abcd"
    assert encode_record(b"") == MAGIC_BYTES + lrec(0, 0)


def test_payload_with_aligned_magic_is_split_into_parts_like_dmlc_core() -> None:
    payload = b"abcd" + MAGIC_BYTES + b"efghij"
    assert encode_record(payload) == (
        MAGIC_BYTES + lrec(1, 4) + b"abcd"
        + MAGIC_BYTES + lrec(3, 6) + b"efghij\0\0"
    )


def test_magic_at_start_middle_and_end_gives_empty_parts() -> None:
    payload = MAGIC_BYTES + MAGIC_BYTES + b"wxyz" + MAGIC_BYTES
    assert encode_record(payload) == (
        MAGIC_BYTES + lrec(1, 0)
        + MAGIC_BYTES + lrec(2, 0)
        + MAGIC_BYTES + lrec(2, 4) + b"wxyz"
        + MAGIC_BYTES + lrec(3, 0)
    )


def test_unaligned_magic_is_not_split() -> None:
    payload = b"ab" + MAGIC_BYTES + b"cd"
    assert encode_record(payload) == MAGIC_BYTES + lrec(0, 8) + payload


def test_magic_in_the_unaligned_tail_is_not_split() -> None:
    # dmlc-core only scans up to the last whole 4-byte word of the payload
    payload = b"abcde" + MAGIC_BYTES[:3]
    assert encode_record(payload)[4:8] == lrec(0, 8)


def test_irheader_is_24_bytes_little_endian() -> None:
    packed = pack(IRHeader(0, 3.0, 7, 0), b"img")
    assert packed == struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"img"


def test_multi_label_header_sets_flag_and_prefixes_float32_labels() -> None:
    packed = pack(IRHeader(0, [1.0, 2.5, 4.0], 9, 0), b"img")
    assert packed[:24] == struct.pack("<IfQQ", 3, 0.0, 9, 0)
    assert packed[24:36] == np.array([1.0, 2.5, 4.0], dtype="<f4").tobytes()
    header, rest = unpack(packed)
    assert header.flag == 3 and header.id == 9 and rest == b"img"
    assert header.label.tolist() == [1.0, 2.5, 4.0]


def test_lst_line_matches_im2rec() -> None:
    assert write_lst_line(12, 3, "c3/img_1.jpg") == "12\t3.000000\tc3/img_1.jpg\n"
    assert write_lst_line(1, [1, 0.5], "a.jpg") == "1\t1.000000\t0.500000\ta.jpg\n"


def test_read_lst_parses_written_lines(tmp_path: Path) -> None:
    lst = tmp_path / "x.lst"
    lst.write_text(write_lst_line(0, 2, "c2/a.jpg") + write_lst_line(5, [1, 2], "b c.jpg"))
    assert list(read_lst(lst)) == [(0, [2.0], "c2/a.jpg"), (5, [1.0, 2.0], "b c.jpg")]


# ---- property tests -------------------------------------------------------------------

magic_heavy = st.lists(
    st.one_of(st.just(MAGIC_BYTES), st.binary(min_size=0, max_size=9)), max_size=20
).map(b"".join)
payloads = st.one_of(st.binary(max_size=300), magic_heavy)


@given(st.lists(payloads, max_size=8))
def test_encode_then_decode_gives_back_every_payload(records: list[bytes]) -> None:
    data = b"".join(encode_record(record) for record in records)
    assert len(data) % 4 == 0
    assert decode_records(data) == records


@given(payloads)
def test_no_part_body_contains_an_aligned_magic_word(payload: bytes) -> None:
    data = encode_record(payload)
    words = np.frombuffer(data, dtype="<u4")
    # magic words appear only as part headers: every other header word is a length
    position = 0
    while position < len(words):
        assert words[position] == 0xCED7230A
        length = int(words[position + 1]) & ((1 << 29) - 1)
        body = words[position + 2 : position + 2 + (length + 3) // 4]
        assert 0xCED7230A not in body[: length // 4].tolist()
        position += 2 + (length + 3) // 4


@settings(max_examples=30, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=6))
def test_indexed_file_round_trip_in_any_order(tmp_path_factory: pytest.TempPathFactory, records: list[bytes]) -> None:
    folder = tmp_path_factory.mktemp("rec")
    with IndexedRecordIO(folder / "a.idx", folder / "a.rec", "w") as writer:
        for key, record in enumerate(records):
            writer.write_idx(key * 3, record)
    reader = IndexedRecordIO(folder / "a.idx", folder / "a.rec", "r")
    assert reader.keys == [key * 3 for key in range(len(records))]
    for key in reversed(reader.keys):
        assert reader.read_idx(key) == records[key // 3]
    reader.close()
    assert list(RecordIO(folder / "a.rec", "r")) == records


@given(
    st.one_of(st.floats(-1e6, 1e6, width=32), st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=5)),
    st.integers(0, 2**64 - 1),
    magic_heavy,
)
def test_pack_unpack_round_trip(label: float | list[float], record_id: int, body: bytes) -> None:
    header, rest = unpack(pack(IRHeader(0, label, record_id, 0), body))
    assert rest == body and header.id == record_id
    if isinstance(label, list):
        assert header.flag == len(label) and header.label.tolist() == label
    else:
        assert header.flag == 0 and header.label == label


# ---- files ----------------------------------------------------------------------------


def test_idx_file_is_key_tab_offset(tmp_path: Path) -> None:
    with MXIndexedRecordIO(str(tmp_path / "a.idx"), str(tmp_path / "a.rec"), "w") as writer:
        writer.write_idx(0, b"12345")  # 8 header + 8 padded body
        writer.write_idx(1, b"x")
    assert (tmp_path / "a.idx").read_text() == "0\t0\n1\t16\n"


def test_writer_publishes_only_on_close(tmp_path: Path) -> None:
    writer = RecordIO(tmp_path / "a.rec", "w")
    writer.write(b"abc")
    assert not (tmp_path / "a.rec").exists()
    writer.close()
    assert (tmp_path / "a.rec").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "a.rec"]


def test_exception_inside_with_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with IndexedRecordIO(tmp_path / "a.idx", tmp_path / "a.rec", "w") as writer:
            writer.write_idx(0, b"abc")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_reset_rereads_from_the_start(tmp_path: Path) -> None:
    with RecordIO(tmp_path / "a.rec", "w") as writer:
        writer.write(b"one")
        writer.write(b"two")
    reader = RecordIO(tmp_path / "a.rec", "r")
    assert reader.read() == b"one"
    reader.reset()
    assert [reader.read(), reader.read(), reader.read()] == [b"one", b"two", None]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\0\0\0\0" + lrec(0, 0), "bad magic"),
        (MAGIC_BYTES + lrec(0, 8) + b"abc", "truncated record body"),
        (MAGIC_BYTES[:3], "truncated record header"),
        (MAGIC_BYTES + lrec(1, 0), "end of file inside a multi-part record"),
        (MAGIC_BYTES + lrec(3, 0), "starts with continuation flag 3"),
    ],
)
def test_corrupt_files_raise_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(RecordIOError, match=message):
        decode_records(data)


def test_pack_img_unpack_img_round_trip_png_is_lossless() -> None:
    image = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    header, decoded = unpack_img(pack_img(IRHeader(0, 4.0, 2, 0), image, quality=3, img_fmt=".png"))
    assert header.label == 4.0 and header.id == 2
    np.testing.assert_array_equal(decoded, image)


def test_pack_img_jpeg_is_what_opencv_encodes() -> None:
    image = np.full((32, 48, 3), 120, dtype=np.uint8)
    _, expected = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    header, payload = unpack(pack_img(IRHeader(0, 1.0, 0, 0), image, quality=90))
    assert payload == expected.tobytes()
    _, decoded = unpack_img(pack_img(IRHeader(0, 1.0, 0, 0), image, quality=90))
    assert decoded.shape == (32, 48, 3)


def test_unpack_img_of_garbage_raises() -> None:
    with pytest.raises(RecordIOError, match="not a decodable image"):
        unpack_img(pack(IRHeader(0, 1.0, 5, 0), b"not an image"))


def test_writer_sha256_is_the_file_checksum(tmp_path: Path) -> None:
    import hashlib

    with RecordIO(tmp_path / "a.rec", "w") as writer:
        for payload in (b"x" * 5, MAGIC_BYTES * 3, b""):
            writer.write(payload)
        digest = writer.sha256()
    assert digest == hashlib.sha256((tmp_path / "a.rec").read_bytes()).hexdigest()
