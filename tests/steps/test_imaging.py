"""steps.imaging: sniffing, header probes, both decoders, and the shared resize rules."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from steps.imaging import (ImageError, Problem, decode, decode_jpeg, decode_opencv, encode_jpeg, exif_orientation, fit,
                           probe, resize, resize_shorter_side, sniff)

PIXELS = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8), (80, 60),
                    interpolation=cv2.INTER_CUBIC)


def encoded(extension: str, image: np.ndarray = PIXELS) -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header declaring a size, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


@pytest.mark.parametrize(("extension", "kind"), [(".jpg", "JPEG"), (".png", "PNG"), (".bmp", "BMP"),
                                                 (".tiff", "TIFF"), (".webp", "WebP")])
def test_the_format_comes_from_the_bytes(extension: str, kind: str) -> None:
    assert sniff(encoded(extension)) == kind
    assert sniff(b"GIF89a" + encoded(extension)) == "GIF"
    assert sniff(b"<html>" + encoded(extension)) is None


def test_probe_reads_jpeg_and_png_headers_without_decoding() -> None:
    jpeg = probe(encoded(".jpg"))
    assert (jpeg.kind, jpeg.width, jpeg.height, jpeg.colorspace) == ("JPEG", 80, 60, "YCbCr")
    grey = probe(encoded(".jpg", PIXELS[..., 0]))
    assert grey.colorspace == "Gray"
    bomb = probe(png_claiming(60000, 50000))
    assert (bomb.width, bomb.height, bomb.depth, bomb.colorspace) == (60000, 50000, 16, "RGBA")
    assert probe(encoded(".bmp")) == probe(encoded(".bmp"), "BMP")


@pytest.mark.parametrize("extension", [".bmp", ".tiff", ".webp"])
def test_probe_reads_the_size_of_every_other_format_opencv_would_decode(extension: str) -> None:
    header = probe(encoded(extension))
    assert (header.width, header.height) == (80, 60)
    lossless = probe(encoded(extension, PIXELS), None) if extension != ".webp" else probe(
        cv2.imencode(".webp", PIXELS, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    assert (lossless.width, lossless.height) == (80, 60)


def test_probe_reads_a_gif_screen_size() -> None:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "GIF")
    assert (probe(buffer.getvalue()).kind, probe(buffer.getvalue()).width, probe(buffer.getvalue()).height) == ("GIF", 80, 60)


@pytest.mark.parametrize(("data", "problem", "words"), [
    (b"\xff\xd8\xff\xe0 not really", Problem.HEADER, "corrupt JPEG header"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, Problem.HEADER, "corrupt PNG: no IHDR chunk"),
    (b"hello world", Problem.FORMAT, "not an image: unrecognised content starting 68656c6c6f20776f"),
])
def test_an_unreadable_header_says_what_and_why(data: bytes, problem: Problem, words: str) -> None:
    with pytest.raises(ImageError, match=words) as caught:
        probe(data)
    assert caught.value.problem is problem


def test_decode_refuses_a_bomb_from_its_header_and_names_its_size() -> None:
    with pytest.raises(ImageError, match="image too large: 60000x50000 pixels") as caught:
        decode(png_claiming(60000, 50000), "RGB", 48, 64, max_pixels=40_000_000)
    assert (caught.value.problem, caught.value.kind, caught.value.size) == (Problem.TOO_LARGE, "PNG", (60000, 50000))


def test_the_pixel_cap_counts_the_full_size_even_when_the_jpeg_decodes_at_reduced_scale() -> None:
    data = encoded(".jpg", cv2.resize(PIXELS, (640, 480)))
    assert decode(data, "RGB", 48, 64, max_pixels=640 * 480).shape == (60, 80, 3)  # decoded at 1/8
    with pytest.raises(ImageError, match="image too large: 640x480 pixels"):
        decode(data, "RGB", 48, 64, max_pixels=640 * 480 - 1)


def test_the_memory_cap_counts_what_the_decoder_would_hold() -> None:
    progressive = io.BytesIO()
    Image.fromarray(cv2.resize(PIXELS, (640, 480))).save(progressive, "JPEG", progressive=True)
    data = progressive.getvalue()
    # 640x480 4:2:0: 4800 luma + 2 x 1200 chroma blocks of 64 coefficients, 2 bytes each, buffered whole
    coefficients = (4800 + 2 * 1200) * 64 * 2
    assert decode(data, "RGB", 48, 64, max_pixels=10**6, max_bytes=coefficients + 80 * 60 * 3 * 2).shape == (60, 80, 3)
    with pytest.raises(ImageError, match="progressive/multi-scan YCbCr JPEG needs about 0 MB") as caught:
        decode(data, "RGB", 48, 64, max_pixels=10**6, max_bytes=coefficients)
    assert caught.value.problem is Problem.TOO_LARGE and caught.value.size == (640, 480)


def test_decode_jpeg_honours_min_factor_alone() -> None:
    data = encoded(".jpg", cv2.resize(PIXELS, (640, 480)))
    assert decode_jpeg(data, "RGB", min_factor=8).shape == (60, 80, 3)
    assert decode_jpeg(data, "RGB", min_factor=4).shape == (120, 160, 3)


@pytest.mark.parametrize("extension", [".jpg", ".png", ".bmp"])
def test_decode_gives_rgb_or_a_single_grey_channel(extension: str) -> None:
    data = encoded(extension)
    rgb = decode(data, "RGB")
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - PIXELS[..., ::-1]).mean() < 3  # RGB, not OpenCV's BGR
    assert decode(data, "GRAY").shape == (60, 80, 1)


def test_cmyk_jpegs_go_through_opencv_when_the_header_was_probed() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 30, 30)).convert("CMYK").save(buffer, "JPEG")
    image = decode(buffer.getvalue(), "RGB", max_pixels=10**6)
    assert image.shape == (60, 80, 3) and abs(int(image[..., 0].mean()) - 200) < 10
    big = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 30, 30)).convert("CMYK").save(big, "JPEG")
    assert decode(big.getvalue(), "RGB", 48, 64, max_pixels=10**6).shape == (60, 80, 3)  # reduced scale too


def test_sixteen_bit_input_comes_out_as_eight_bit() -> None:
    data = encoded(".png", PIXELS.astype(np.uint16) * 257)
    assert decode_opencv(data, cv2.IMREAD_UNCHANGED, "PNG").dtype == np.uint8
    np.testing.assert_array_equal(decode_opencv(data, cv2.IMREAD_UNCHANGED, "PNG"), PIXELS)


def test_corrupt_data_behind_a_good_header_is_a_corrupt_error() -> None:
    data = encoded(".jpg")
    with pytest.raises(ImageError, match="corrupt JPEG: ") as caught:
        decode_jpeg(data[:200], "RGB")
    assert caught.value.problem is Problem.CORRUPT and caught.value.detail
    with pytest.raises(ImageError, match="corrupt PNG: OpenCV could not decode it"):
        decode_opencv(encoded(".png")[:100], cv2.IMREAD_COLOR, "PNG")


def test_exif_orientation_is_read_from_the_app1_segment() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60)).save(buffer, "JPEG", exif=exif.tobytes())
    assert exif_orientation(buffer.getvalue()) == 6
    assert exif_orientation(encoded(".jpg")) == 1


def test_resizing_keeps_the_channel_axis_and_fit_leaves_the_right_size_alone() -> None:
    grey = PIXELS[..., :1]
    assert resize(grey, 40, 30).shape == (30, 40, 1)
    assert resize_shorter_side(PIXELS, 30).shape == (30, 40, 3)
    assert fit(PIXELS, 60, 80) is PIXELS
    assert fit(PIXELS, 48, 64).shape == (48, 64, 3)


def test_encode_then_decode_round_trips_closely() -> None:
    again = decode(encode_jpeg(PIXELS, 95), "RGB")[..., ::-1]
    assert np.abs(again.astype(int) - PIXELS).mean() < 3
