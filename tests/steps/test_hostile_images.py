"""Decompression bombs against the processing step and batch scoring, which share the serving
decoder (steps/imaging.py). Each case asserts what the step says about the file; the memory
cases run the real entry point in a child process and read its peak RSS (ru_maxrss of the
waited-for descendants, which covers the processing step's worker processes).

Bounds, and why: a refused image is refused from its header, so the run's peak stays within
32 MB of the same run without the bombs (a few MB of file bytes read, noise). An image that
is decoded at reduced scale (the 10000x10000 YCCK JPEG, which processing keeps at 1/8
scale) may add at most the decoder memory cap, 128 MB.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.synth import synthesize
from steps.conversion import Target, convert
from steps.imaging import DEFAULT_MAX_DECODE_BYTES, ImageError, decode

REPO = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
SHAPE = Target.parse("3,48,64")


def bmp_claiming(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + dib + bytes(64)


def gif_claiming(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def tiff_claiming(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (277, 3, 1, 3)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(64)


def webp_claiming(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


@pytest.fixture(scope="module")
def bombs(jpeg_bombs: dict[str, bytes]) -> dict[str, bytes]:
    return {
        "img_ycck.jpg": jpeg_bombs["ycck"],
        "img_progressive.jpg": jpeg_bombs["progressive grey"],
        "img_bmp.jpg": bmp_claiming(30000, 30000),
        "img_gif.jpg": gif_claiming(65535, 65535),
        "img_tiff.jpg": tiff_claiming(100000, 100000),
        "img_webp.jpg": webp_claiming(16384, 16384),
    }


# The processing step: a reason per file (or a conversion at reduced scale)
PROCESSING = {
    "img_ycck.jpg": ("converted", "CMYK JPEG converted to BGR"),  # read at 1/8 scale by OpenCV's libjpeg: 11 MB
    "img_progressive.jpg": ("skipped", "image too large: 16000x16000 progressive/multi-scan Gray JPEG needs about "
                                       "511 MB to decode, over the limit of 128 MB"),
    "img_bmp.jpg": ("skipped", "image too large: 30000x30000 pixels"),
    "img_gif.jpg": ("skipped", "image too large: 65535x65535 pixels"),
    "img_tiff.jpg": ("skipped", "image too large: 100000x100000 pixels"),
    "img_webp.jpg": ("skipped", "image too large: 16384x16384 pixels"),
}


@pytest.mark.parametrize("name", sorted(PROCESSING))
def test_the_processing_step_refuses_each_bomb_from_its_header(bombs: dict[str, bytes], name: str) -> None:
    outcome = convert(bombs[name], SHAPE, 90, False)
    kind, words = PROCESSING[name]
    if kind == "skipped":
        assert outcome.payload is None and outcome.reason == words
    else:
        assert outcome.reason is None and words in (outcome.note or "")
        image = cv2.imdecode(np.frombuffer(outcome.payload, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (48, 64, 3)


@pytest.mark.parametrize("name", sorted(PROCESSING))
def test_the_shared_decoder_refuses_every_bomb_for_serving(bombs: dict[str, bytes], name: str) -> None:
    with pytest.raises(ImageError, match=r"image too large: \d+x\d+"):
        decode(bombs[name], "RGB", 48, 64, max_pixels=40_000_000)


def _peak_of(code: str, *args: str) -> tuple[int, str, int]:
    """Run `code` in a child, then report (exit code, stderr, peak RSS in bytes of it and its children)."""
    probe = ("import resource, subprocess, sys; "
             f"done = subprocess.run([sys.executable, '-c', {code!r}, *sys.argv[1:]], capture_output=True, text=True); "
             "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.stderr.write(done.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.stdout, done.stderr
    code_text, peak_kb = done.stdout.split()
    return int(code_text), done.stderr, int(peak_kb) * 1024


PROCESS = ("import sys, json; from pathlib import Path; from steps.process import Settings, process; from steps.conversion import Target; "
           "m = process(Path(sys.argv[1]), Path(sys.argv[2]), Settings(validation_drivers=1, resize=Target.parse(sys.argv[3]), "
           "workers=2)); print(json.dumps(m['skipped'] + m['converted']), file=sys.stderr)")


@pytest.mark.slow
def test_the_processing_step_with_bombs_stays_within_the_decode_cap(bombs: dict[str, bytes], tmp_path: Path) -> None:
    for name in ("clean", "hostile"):
        synthesize(tmp_path / name, images=40, drivers=3, test_images=0, seed=2, width=80, height=60, workers=1)
    rows = []
    for file, data in bombs.items():
        (tmp_path / "hostile" / "imgs" / "train" / "c0" / file).write_bytes(data)
        rows.append(f"p002,c0,{file}")
    with (tmp_path / "hostile" / "driver_imgs_list.csv").open("a") as listing:
        listing.write("\n".join(rows) + "\n")
    _, _, clean = _peak_of(PROCESS, str(tmp_path / "clean"), str(tmp_path / "out-clean"), "3,48,64")
    code, stderr, hostile = _peak_of(PROCESS, str(tmp_path / "hostile"), str(tmp_path / "out-hostile"), "3,48,64")
    assert code == 0, stderr
    reasons = {Path(entry["path"]).name: entry.get("reason") or entry.get("note") for entry in json.loads(stderr.splitlines()[-1])}
    for file, (_, words) in PROCESSING.items():
        assert words in reasons[file], (file, reasons.get(file))
    # the YCCK JPEG is decoded, at 1/8 scale: 1250x1250x4 twice, about 12 MB
    assert hostile - clean <= DEFAULT_MAX_DECODE_BYTES, (clean / MB, hostile / MB)


SCORE = "import sys; from steps.batch_score import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
def test_batch_scoring_skips_bombs_by_name_in_flat_memory(archive: Path, bombs: dict[str, bytes], tmp_path: Path) -> None:
    for name in ("clean", "hostile"):
        folder = tmp_path / name
        folder.mkdir()
        for index in range(8):
            rng = np.random.default_rng(index)
            frame = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480))
            (folder / f"img_{index}.jpg").write_bytes(cv2.imencode(".jpg", frame)[1].tobytes())
    for file in ("img_ycck.jpg", "img_progressive.jpg"):  # the formats batch scoring reads: JPEG and PNG
        (tmp_path / "hostile" / file).write_bytes(bombs[file])
    clean_code, _, clean = _peak_of(SCORE, "--model", str(archive), "--input", str(tmp_path / "clean"),
                                    "--output", str(tmp_path / "out-clean"))
    code, stderr, hostile = _peak_of(SCORE, "--model", str(archive), "--input", str(tmp_path / "hostile"),
                                     "--output", str(tmp_path / "out-hostile"))
    assert (clean_code, code) == (0, 1)
    assert "skipped img_ycck.jpg: JPEG is 10000x10000 pixels, over the limit of 40000000" in stderr
    assert "skipped img_progressive.jpg: JPEG is 16000x16000 pixels, over the limit of 40000000" in stderr
    assert "scored 8 images, 2 failed" in stderr
    assert len(list((tmp_path / "out-hostile").glob("*.out"))) == 8
    assert hostile - clean <= 32 * MB, (clean / MB, hostile / MB)
