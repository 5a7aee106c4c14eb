"""A synthetic State Farm distracted-driver dataset in Kaggle's layout.

The real data (22,424 labelled 640x480 JPEGs of 26 drivers, 79,726 test images) cannot
be downloaded here, so this writes the same files from a seed::

    OUT/imgs/train/c0..c9/img_<n>.jpg
    OUT/imgs/test/img_<n>.jpg
    OUT/driver_imgs_list.csv      subject,classname,img   (p002,c0,img_44733.jpg)
    OUT/sample_submission.csv     img,c0,...,c9           (img_1.jpg,0.1,...,0.1)

Test images come from drivers who are not in the training set, as on Kaggle. Every file
is a pure function of (seed, its position in the dataset, width, height), so the output
is byte-identical whatever the number of worker processes. The frames themselves are
drawn by `data.scene`.

    python -m data.synth --out /tmp/dd --images 200 --drivers 6 --test-images 20
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from data.scene import CLASSES, DriverLook, driver_look, render
from steps.atomic import write_atomically

# the 26 subjects of the real training set, used first so the CSV looks familiar
KAGGLE_DRIVERS = [
    "p002", "p012", "p014", "p015", "p016", "p021", "p022", "p024", "p026", "p035", "p039", "p041", "p042",
    "p045", "p047", "p049", "p050", "p051", "p052", "p056", "p061", "p064", "p066", "p072", "p075", "p081",
]

# defaults: small enough to render in about a minute and train in minutes on two cores,
# big enough (26 drivers, 100 frames each) for a driver-held-out validation split
DEFAULT_IMAGES = 2600
DEFAULT_DRIVERS = 26
DEFAULT_TEST_IMAGES = 200
MAX_IMAGE_NUMBER = 102150  # Kaggle's image numbers run up to about this


@dataclass(frozen=True)
class Frame:
    """One image to render: where it goes and what it shows."""

    ordinal: int  # position in the dataset; with the seed it fixes the pixels
    relative_path: str  # under OUT/, e.g. imgs/train/c3/img_17.jpg
    driver: int  # index of the driver's look
    class_index: int


@dataclass(frozen=True)
class SynthSummary:
    """What synthesize() wrote, for the caller's one-line report."""

    out: Path
    train_images: int
    test_images: int
    drivers: list[str]
    test_drivers: int


def driver_ids(count: int) -> list[str]:
    """Subject ids: the real ones first, then unused p-numbers."""
    ids = KAGGLE_DRIVERS[:count]
    number = 100
    while len(ids) < count:
        if f"p{number:03d}" not in KAGGLE_DRIVERS:
            ids.append(f"p{number:03d}")
        number += 1
    return ids


def plan(images: int, drivers: int, test_images: int, seed: int) -> tuple[list[Frame], list[tuple[str, str, str]]]:
    """The frames to render and the driver_imgs_list.csv rows, balanced over drivers and classes."""
    if images < 1 or drivers < 1 or test_images < 0:
        raise ValueError(f"need images >= 1, drivers >= 1, test images >= 0; got {images}, {drivers}, {test_images}")
    if drivers > images:
        raise ValueError(f"{drivers} drivers need at least {drivers} images, got {images}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    population = max(MAX_IMAGE_NUMBER, 2 * (images + test_images))
    numbers = rng.choice(np.arange(1, population + 1), size=images + test_images, replace=False).tolist()
    subjects = driver_ids(drivers)
    frames: list[Frame] = []
    rows: list[tuple[str, str, str]] = []
    ordinal = 0
    for driver, subject in enumerate(subjects):
        share = images // drivers + (1 if driver < images % drivers else 0)
        offset = int(rng.integers(10))
        for position in range(share):
            class_index = (position + offset) % 10
            name = f"img_{numbers[ordinal]}.jpg"
            frames.append(Frame(ordinal, f"imgs/train/{CLASSES[class_index]}/{name}", driver, class_index))
            rows.append((subject, CLASSES[class_index], name))
            ordinal += 1
    # the test set: other drivers, unlabelled, classes at random
    test_drivers = max(1, min(drivers, math.ceil(test_images / 100))) if test_images else 0
    for position in range(test_images):
        name = f"img_{numbers[ordinal]}.jpg"
        frames.append(Frame(ordinal, f"imgs/test/{name}", drivers + position % test_drivers, int(rng.integers(10))))
        ordinal += 1
    rows.sort(key=lambda row: (row[0], int(row[1][1:]), int(row[2][4:-4])))
    return frames, rows


# ---------------------------------------------------------------------------------------
# rendering (runs in worker processes)

_settings: dict[str, Any] = {}  # set once per worker process by _init_worker


def _init_worker(seed: int, width: int, height: int, root: str) -> None:
    cv2.setNumThreads(1)  # one process per core already
    _settings.update(seed=seed, width=width, height=height, root=root)


@lru_cache(maxsize=256)
def _look(seed: int, driver: int) -> DriverLook:
    return driver_look(seed, driver)


def render_frame(frame: Frame, seed: int, width: int, height: int) -> bytes:
    """The JPEG bytes of one frame (deterministic)."""
    look = _look(seed, frame.driver)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, frame.ordinal]))
    image = render(look, frame.class_index, rng, width, height)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode {frame.relative_path}")
    return encoded.tobytes()


def _render_chunk(frames: list[Frame]) -> int:
    root = Path(_settings["root"])
    for frame in frames:
        data = render_frame(frame, _settings["seed"], _settings["width"], _settings["height"])
        (root / frame.relative_path).write_bytes(data)
    return len(frames)


def _chunks(frames: list[Frame], size: int) -> Iterator[list[Frame]]:
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


# ---------------------------------------------------------------------------------------
# the dataset


def synthesize(
    out: str | os.PathLike[str],
    images: int = DEFAULT_IMAGES,
    drivers: int = DEFAULT_DRIVERS,
    test_images: int = DEFAULT_TEST_IMAGES,
    seed: int = 0,
    width: int = 640,
    height: int = 480,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write the dataset under `out`; `progress(done, total)` is called as frames land.

    Images are rendered into a hidden sibling folder and renamed to OUT/imgs at the end,
    so an interrupted run never leaves a half-written dataset that looks complete.
    """
    if width < 32 or height < 24:
        raise ValueError(f"image size {width}x{height} is too small: need at least 32x24")
    out_path = Path(out)
    final = out_path / "imgs"
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(f"{final} already holds images (use --overwrite to replace them)")
    frames, rows = plan(images, drivers, test_images, seed)
    out_path.mkdir(parents=True, exist_ok=True)
    staging = out_path / f".imgs.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for folder in {str(Path(frame.relative_path).parent) for frame in frames}:
        (staging / Path(folder).relative_to("imgs")).mkdir(parents=True, exist_ok=True)
    relocated = [Frame(f.ordinal, str(Path(f.relative_path).relative_to("imgs")), f.driver, f.class_index) for f in frames]
    worker_count = max(1, min(workers or os.cpu_count() or 1, len(frames)))
    try:
        _render_all(relocated, staging, seed, width, height, worker_count, progress)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_csv(out_path / "driver_imgs_list.csv", ["subject", "classname", "img"], rows)
    test_names = sorted(Path(f.relative_path).name for f in frames if f.relative_path.startswith("imgs/test/"))
    _write_csv(out_path / "sample_submission.csv", ["img", *CLASSES], [[name] + ["0.1"] * 10 for name in test_names])
    test_drivers = len({f.driver for f in frames if f.relative_path.startswith("imgs/test/")})
    return SynthSummary(out_path, images, test_images, driver_ids(drivers), test_drivers)


def _render_all(frames: list[Frame], root: Path, seed: int, width: int, height: int, workers: int,
                progress: Callable[[int, int], None] | None) -> None:
    total, done = len(frames), 0
    if workers == 1:
        _init_worker(seed, width, height, str(root))
        for chunk in _chunks(frames, 16):
            done += _render_chunk(chunk)
            if progress:
                progress(done, total)
        return
    # fork: workers start in milliseconds and inherit the imports already made
    context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    chunk_size = max(1, min(32, total // (workers * 8) or 1))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(seed, width, height, str(root))) as pool:
        for count in pool.map(_render_chunk, _chunks(frames, chunk_size)):
            done += count
            if progress:
                progress(done, total)


def _write_csv(path: Path, header: list[str], rows: list) -> None:  # noqa: ANN401 - rows of str
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, buffer.getvalue().encode("utf-8"), fsync=False)


def main(argv: list[str] | None = None) -> int:
    """`python -m data.synth`: the same as `ddcicd data synth`, without the CLI's dependencies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    parser.add_argument("--drivers", type=int, default=DEFAULT_DRIVERS)
    parser.add_argument("--test-images", type=int, default=DEFAULT_TEST_IMAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = synthesize(args.out, args.images, args.drivers, args.test_images, args.seed, args.width,
                             args.height, args.workers, args.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.train_images} training and {summary.test_images} test images to {summary.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
