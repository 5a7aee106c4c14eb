"""steps.process survives every kind of bad input: each is skipped or converted, with its reason."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data.synth import synthesize
from steps.conversion import MAX_PIXELS, Target, _reduction, convert
from steps.imaging import ImageError
from steps.process import InputError, Settings, process, summary_lines
from steps.recordio import IndexedRecordIO, read_lst, unpack_img

SHAPE = Target.parse("3,48,64")


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 30, 30)).convert("CMYK").save(buffer, "JPEG")
    return buffer.getvalue()


def rotated_jpeg() -> bytes:
    """A JPEG stored on its side with EXIF orientation 6, as phones write them."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (30, 200, 30)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size (the pixels are never needed to refuse it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * 16


COLOUR = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)

# file -> (bytes, what the manifest must say: ("skipped"|"converted", words in the reason))
BAD_FILES: dict[str, tuple[bytes, str, str]] = {
    "c0/img_empty.jpg": (b"", "skipped", "empty file"),
    "c1/img_truncated.jpg": (jpeg(COLOUR)[:600], "skipped", "truncated JPEG"),
    "c1/img_corrupt.jpg": (jpeg(COLOUR)[:300] + b"\x00" * 500 + b"\xff\xd9", "skipped", "corrupt JPEG"),
    "c2/img_text.jpg": (b"this is not an image\n" * 10, "skipped", "not an image"),
    "c2/img_html.jpg": (b"<html><body>404</body></html>", "skipped", "not an image"),
    "c3/img_png_named_jpg.jpg": (png(COLOUR), "converted", "PNG (8-bit RGB) converted"),
    "c3/img_real.png": (png(COLOUR), "converted", "PNG (8-bit RGB) converted"),
    "c4/img_cmyk.jpg": (cmyk_jpeg(), "converted", "CMYK JPEG converted"),
    "c5/img_grey.jpg": (jpeg(COLOUR[:, :, 0]), "converted", "greyscale JPEG converted"),
    "c5/img_grey.png": (png(COLOUR[:, :, 0]), "converted", "PNG (8-bit greyscale) converted"),
    "c6/img_16bit.png": (png((COLOUR.astype(np.uint16) * 257)), "converted", "PNG (16-bit RGB) converted"),
    "c6/img_rgba.png": (png(np.dstack([COLOUR, COLOUR[:, :, :1]])), "converted", "PNG (8-bit RGBA) converted"),
    "c7/img_huge_png.png": (png_header_only(12000, 12000), "skipped", "image too large: 12000x12000"),
    "c7/img_bmp.jpg": (cv2.imencode(".bmp", COLOUR)[1].tobytes(), "converted", "BMP converted"),
    "c8/notes.txt": (b"hello", "skipped", "not an image file name"),
    "c9/img_rotated.jpg": (rotated_jpeg(), "converted", "turned upright (EXIF orientation 6)"),
}


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small clean dataset, then every kind of trouble added to it."""
    root = tmp_path_factory.mktemp("messy")
    synthesize(root, images=60, drivers=3, test_images=0, seed=2, width=80, height=60, workers=1)
    train = root / "imgs" / "train"
    csv_rows = []
    for relative, (data, _, _) in BAD_FILES.items():
        (train / relative).write_bytes(data)
        csv_rows.append(f"p002,{relative.split('/')[0]},{relative.split('/')[1]}")
    huge = np.zeros((12000, 12000), np.uint8)
    (train / "c8" / "img_huge.jpg").write_bytes(jpeg(huge, 10))  # read at 1/8 scale
    csv_rows.append("p012,c8,img_huge.jpg")
    csv_rows.append("p014,c9,img_missing.jpg")  # a row without its file
    (train / "c9" / "img_no_row.jpg").write_bytes(jpeg(COLOUR))  # a file without its row
    (train / "c10").mkdir()  # an unknown class folder
    (train / "c10" / "img_1.jpg").write_bytes(jpeg(COLOUR))
    (train / "stray.jpg").write_bytes(jpeg(COLOUR))  # outside the class folders
    (train / "c4" / "nested").mkdir()
    fd = os.open(os.path.join(os.fsencode(train / "c4"), b"img_\xff\xfe.jpg"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, jpeg(COLOUR))
    os.close(fd)
    csv_rows.append("p002,c11,img_5.jpg")  # an unknown class in the CSV
    csv_rows.append("p002,c0")  # a short row
    with (root / "driver_imgs_list.csv").open("a") as listing:
        listing.write("\n".join(csv_rows) + "\n")
    return root


@pytest.fixture(scope="module")
def result(messy: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("out")
    return process(messy, out, Settings(validation_drivers=1, resize=SHAPE, workers=2)), out


def reasons(manifest: dict, key: str) -> dict[str, str]:
    return {entry["path"]: entry["reason"] for entry in manifest[key]}


@pytest.mark.parametrize("relative", sorted(BAD_FILES))
def test_each_bad_file_is_skipped_or_converted_with_its_reason(result: tuple[dict, Path], relative: str) -> None:
    manifest, _ = result
    _, kind, words = BAD_FILES[relative]
    path = f"imgs/train/{relative}"
    assert path in reasons(manifest, kind), (path, manifest[kind])
    assert words in reasons(manifest, kind)[path]


def test_converted_images_are_stored_as_3_channel_jpegs_of_the_right_size(result: tuple[dict, Path]) -> None:
    manifest, out = result
    converted = set(reasons(manifest, "converted"))
    found = 0
    for name in ("train", "validation"):
        reader = IndexedRecordIO(out / f"{name}.idx", out / f"{name}.rec", "r")
        for index, _, path in read_lst(out / f"{name}.lst"):
            if path in converted:
                _, image = unpack_img(reader.read_idx(index))
                assert image.shape == (48, 64, 3), path
                found += 1
    assert found == len(converted)
    assert "imgs/train/c8/img_huge.jpg" in converted  # a greyscale 12000x12000 JPEG, read at 1/8 scale


@pytest.mark.parametrize(("path", "words"), [
    ("imgs/train/c9/img_missing.jpg", "listed in driver_imgs_list.csv but there is no such image file"),
    ("imgs/train/c9/img_no_row.jpg", "no row in driver_imgs_list.csv"),
    ("imgs/train/c10/", "unknown class folder"),
    ("imgs/train/stray.jpg", "not inside a class folder"),
    ("imgs/train/c4/nested/", "folder inside a class folder"),
    ("imgs/train/c4/img_\\xff\\xfe.jpg", "name is not valid UTF-8"),
])
def test_mismatches_between_files_and_csv_are_skipped(result: tuple[dict, Path], path: str, words: str) -> None:
    assert words in reasons(result[0], "skipped")[path]


def test_bad_csv_rows_are_reported_with_their_line(result: tuple[dict, Path]) -> None:
    by_reason = {reason: path for path, reason in reasons(result[0], "skipped").items()}
    assert any("unknown class 'c11'" in reason for reason in by_reason)
    assert any(path.startswith("driver_imgs_list.csv:") and "fields" in reason for reason, path in by_reason.items())


def test_good_images_all_make_it_and_the_summary_counts_reasons(result: tuple[dict, Path]) -> None:
    manifest, _ = result
    good = 60 + 1 + len([f for f in BAD_FILES.values() if f[1] == "converted"])  # + the huge JPEG
    assert manifest["splits"]["train"]["count"] + manifest["splits"]["validation"]["count"] == good
    lines = summary_lines(manifest)
    assert any(line.startswith("skipped ") and "2 truncated JPEG" not in line and "empty file" in line for line in lines)
    assert any(line.startswith("converted ") for line in lines)
    assert manifest["splits"]["validation"]["drivers"] and not (
        set(manifest["splits"]["validation"]["drivers"]) & set(manifest["splits"]["train"]["drivers"]))


def test_manifest_is_plain_utf8_json(result: tuple[dict, Path]) -> None:
    _, out = result
    (out / "manifest.json").read_bytes().decode("utf-8")


def test_huge_jpegs_are_decoded_at_reduced_scale_and_huge_others_refused() -> None:
    assert _reduction(12000, 12000, Target.keep()) == 4  # 3000x3000 <= MAX_PIXELS
    assert _reduction(12000, 12000, SHAPE) == 8
    assert _reduction(640, 480, Target.shorter(256)) == 1  # 5/8 scale would be slower than a full decode
    assert _reduction(640, 480, Target.shorter(200)) == 2
    with pytest.raises(ImageError, match="too large"):
        _reduction(40000, 40000, Target.keep())
    assert MAX_PIXELS >= 4000 * 4000


def test_exif_orientation_is_applied_like_cv2_imread(tmp_path: Path) -> None:
    (tmp_path / "rotated.jpg").write_bytes(rotated_jpeg())
    expected = cv2.imread(str(tmp_path / "rotated.jpg"))
    outcome = convert(rotated_jpeg(), Target.keep(), 95, False)
    image = cv2.imdecode(np.frombuffer(outcome.payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == expected.shape == (80, 60, 3)
    assert convert(rotated_jpeg(), Target.keep(), 95, True).payload == rotated_jpeg()  # readers turn it themselves


def test_convert_never_raises_on_random_bytes() -> None:
    rng = np.random.default_rng(1)
    for prefix in (b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00"):
        for size in (0, 1, 10, 100, 2000):
            outcome = convert(prefix + rng.bytes(size), SHAPE, 95, False)
            assert (outcome.payload is None) != (outcome.reason is None)


def test_unreadable_csv_or_no_images_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "train" / "c0").mkdir(parents=True)
    (tmp_path / "imgs" / "train" / "c0" / "img_1.jpg").write_bytes(jpeg(COLOUR))
    (tmp_path / "driver_imgs_list.csv").write_text("who,what\np002,c0\n")
    with pytest.raises(InputError, match=r"has columns \['who', 'what'\]; expected subject,classname,img"):
        process(tmp_path, tmp_path / "out", Settings(workers=1))
    (tmp_path / "driver_imgs_list.csv").write_bytes(b"subject,classname,img\np\xff,c0,img_1.jpg\n")
    with pytest.raises(InputError, match="not UTF-8"):
        process(tmp_path, tmp_path / "out", Settings(workers=1))
    (tmp_path / "driver_imgs_list.csv").unlink()
    (tmp_path / "imgs" / "train" / "c0" / "img_1.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="none of the 1 training images"):
        process(tmp_path, tmp_path / "out", Settings(workers=1))
    assert not (tmp_path / "out" / "manifest.json").exists()
