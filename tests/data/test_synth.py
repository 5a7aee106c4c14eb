"""data.synth: Kaggle's layout and CSVs, balance, determinism, and refusing to clobber."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.scene import CLASSES, driver_look, render
from data.synth import KAGGLE_DRIVERS, plan, render_frame, synthesize


def tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, images=40, drivers=3, test_images=5, seed=7, width=160, height=120, workers=1)
    return out


def test_layout_and_csv_headers_match_kaggle(dataset: Path) -> None:
    rows = list(csv.reader((dataset / "driver_imgs_list.csv").open()))
    assert rows[0] == ["subject", "classname", "img"]
    assert {row[0] for row in rows[1:]} == set(KAGGLE_DRIVERS[:3])
    for subject, class_name, name in rows[1:]:
        assert (dataset / "imgs" / "train" / class_name / name).is_file()
        assert name.startswith("img_") and name.endswith(".jpg")
    trained = sorted(path.name for path in (dataset / "imgs" / "train").rglob("*.jpg"))
    assert trained == sorted(row[2] for row in rows[1:])

    submission = list(csv.reader((dataset / "sample_submission.csv").open()))
    assert submission[0] == ["img", *[f"c{index}" for index in range(10)]]
    assert sorted(row[0] for row in submission[1:]) == sorted(path.name for path in (dataset / "imgs" / "test").iterdir())
    assert all(row[1:] == ["0.1"] * 10 for row in submission[1:])
    assert not set(trained) & {row[0] for row in submission[1:]}
    assert sorted(path.name for path in dataset.iterdir()) == ["driver_imgs_list.csv", "imgs", "sample_submission.csv"]


def test_images_are_jpegs_of_the_requested_size(dataset: Path) -> None:
    for path in list((dataset / "imgs").rglob("*.jpg"))[:5]:
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (120, 160, 3)


def test_default_frame_is_640x480() -> None:
    frames, _ = plan(10, 1, 0, seed=0)
    image = cv2.imdecode(np.frombuffer(render_frame(frames[0], 0, 640, 480), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)


def test_classes_are_balanced_within_each_driver() -> None:
    _, rows = plan(images=95, drivers=3, test_images=0, seed=1)
    for subject in {row[0] for row in rows}:
        counts = np.bincount([int(row[1][1:]) for row in rows if row[0] == subject], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_test_images_come_from_drivers_not_in_training() -> None:
    frames, _ = plan(images=30, drivers=3, test_images=250, seed=1)
    test_drivers = {frame.driver for frame in frames if frame.relative_path.startswith("imgs/test/")}
    assert test_drivers and min(test_drivers) >= 3


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path: Path, dataset: Path) -> None:
    synthesize(tmp_path / "again", images=40, drivers=3, test_images=5, seed=7, width=160, height=120, workers=2)
    assert tree(tmp_path / "again") == tree(dataset)


def test_another_seed_gives_other_images(tmp_path: Path, dataset: Path) -> None:
    synthesize(tmp_path / "other", images=40, drivers=3, test_images=5, seed=8, width=160, height=120, workers=1)
    assert tree(tmp_path / "other")["driver_imgs_list.csv"] != tree(dataset)["driver_imgs_list.csv"]


def test_class_changes_the_picture_and_driver_changes_the_look() -> None:
    look = driver_look(0, 0)
    frames = [render(look, index, np.random.default_rng(3), 64, 48).astype(int) for index in range(len(CLASSES))]
    for first in range(10):
        for second in range(first + 1, 10):
            assert np.abs(frames[first] - frames[second]).mean() > 1.0, (first, second)
    assert driver_look(0, 1) != driver_look(0, 0) and driver_look(0, 1) == driver_look(0, 1)


def test_refuses_to_write_over_images_unless_asked(tmp_path: Path) -> None:
    synthesize(tmp_path, images=12, drivers=2, test_images=2, seed=1, width=64, height=48, workers=1)
    with pytest.raises(FileExistsError, match="already holds images"):
        synthesize(tmp_path, images=12, drivers=2, test_images=2, seed=2, width=64, height=48, workers=1)
    synthesize(tmp_path, images=10, drivers=1, test_images=0, seed=2, width=64, height=48, workers=1, overwrite=True)
    assert len(list((tmp_path / "imgs").rglob("*.jpg"))) == 10  # nothing left from the first run
    assert not list(tmp_path.glob(".imgs.tmp-*"))


@pytest.mark.parametrize(("images", "drivers", "message"), [(2, 3, "3 drivers need at least 3 images"),
                                                           (0, 1, "need images >= 1")])
def test_impossible_sizes_are_refused(images: int, drivers: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(images, drivers, 0, seed=0)


def test_many_drivers_get_unique_ids() -> None:
    _, rows = plan(images=40, drivers=40, test_images=0, seed=0)
    subjects = sorted({row[0] for row in rows})
    assert len(subjects) == 40 and set(KAGGLE_DRIVERS) <= set(subjects)
