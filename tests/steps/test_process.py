"""steps.process on clean input: the split, the files, determinism, and the job entry point."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.synth import synthesize
from steps.conversion import Target
from steps.process import OUTPUT_FILES, InputError, Settings, process
from steps.recordio import IndexedRecordIO, read_lst, unpack, unpack_img

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    synthesize(out, images=120, drivers=6, test_images=0, seed=3, width=96, height=72, workers=1)
    return out


def drivers_by_image(dataset: Path) -> dict[str, str]:
    rows = csv.DictReader((dataset / "driver_imgs_list.csv").open())
    return {f"imgs/train/{row['classname']}/{row['img']}": row["subject"] for row in rows}


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in [*OUTPUT_FILES, "manifest.json"]}


def test_writes_recordio_lists_and_manifest(dataset: Path, tmp_path: Path) -> None:
    manifest = process(dataset, tmp_path, Settings(validation_drivers=2, resize=Target.parse("3,48,64"), workers=1))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*OUTPUT_FILES, "manifest.json"])
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["classes"] == [f"c{index}" for index in range(10)]
    for name in ("train", "validation"):
        reader = IndexedRecordIO(tmp_path / f"{name}.idx", tmp_path / f"{name}.rec", "r")
        lst = list(read_lst(tmp_path / f"{name}.lst"))
        assert len(reader.keys) == len(lst) == manifest["splits"][name]["count"]
        for index, labels, path in lst:
            header, image = unpack_img(reader.read_idx(index))
            assert (header.id, header.flag, header.label) == (index, 0, labels[0])
            assert path.split("/")[-2] == f"c{int(labels[0])}"
            assert image.shape == (48, 64, 3)
        counts = np.bincount([int(labels[0]) for _, labels, _ in lst], minlength=10)
        assert manifest["splits"][name]["per_class"] == {f"c{k}": int(n) for k, n in enumerate(counts) if n}
    for file_name, description in manifest["outputs"].items():
        data = (tmp_path / file_name).read_bytes()
        assert description == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["splits"]["train"]["count"] + manifest["splits"]["validation"]["count"] == 120
    assert manifest["skipped"] == [] and manifest["warnings"] == [] and manifest["split_by"] == "driver"


def test_no_driver_is_on_both_sides_and_every_class_is(dataset: Path, tmp_path: Path) -> None:
    manifest = process(dataset, tmp_path, Settings(validation_drivers=2, resize=Target.shorter(24), workers=1))
    driver_of = drivers_by_image(dataset)
    sides = {name: {driver_of[path] for _, _, path in read_lst(tmp_path / f"{name}.lst")} for name in ("train", "validation")}
    assert not sides["train"] & sides["validation"]
    assert len(sides["validation"]) == 2 and sides["validation"] == set(manifest["validation_drivers"])
    assert sides["train"] == set(manifest["splits"]["train"]["drivers"])
    for name in ("train", "validation"):
        assert len(manifest["splits"][name]["per_class"]) == 10


def test_class_coverage_steers_the_choice_of_drivers(tmp_path: Path) -> None:
    # 4 drivers; only p002 and p012 have c9: whichever single driver is held out, c9 must stay on both sides
    raw = tmp_path / "raw"
    synthesize(raw, images=80, drivers=4, test_images=0, seed=1, width=64, height=48, workers=1)
    rows = list(csv.DictReader((raw / "driver_imgs_list.csv").open()))
    for row in rows:
        if row["classname"] == "c9" and row["subject"] not in ("p002", "p012"):
            (raw / "imgs/train/c9" / row["img"]).unlink()
    for seed in range(6):
        manifest = process(raw, tmp_path / f"out{seed}", Settings(validation_drivers=1, seed=seed, workers=1))
        assert manifest["validation_drivers"][0] in ("p002", "p012")
        assert "c9" in manifest["splits"]["train"]["per_class"] and "c9" in manifest["splits"]["validation"]["per_class"]


def test_impossible_coverage_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    synthesize(raw, images=40, drivers=2, test_images=0, seed=1, width=64, height=48, workers=1)
    for row in csv.DictReader((raw / "driver_imgs_list.csv").open()):
        if row["classname"] == "c9" and row["subject"] == "p012":
            (raw / "imgs/train/c9" / row["img"]).unlink()
    manifest = process(raw, tmp_path / "out", Settings(validation_drivers=1, workers=1))
    assert any("every class on both sides" in warning for warning in manifest["warnings"])


@pytest.mark.parametrize(("setting", "held_out"), [(0.5, 3), (0.2, 1), (5, 5), (99, 5)])
def test_validation_drivers_is_a_count_or_a_fraction(dataset: Path, tmp_path: Path, setting: float, held_out: int) -> None:
    manifest = process(dataset, tmp_path, Settings(validation_drivers=setting, resize=Target.shorter(16), workers=1))
    assert len(manifest["validation_drivers"]) == held_out


def test_same_input_and_seed_give_byte_identical_outputs_whatever_the_workers(dataset: Path, tmp_path: Path) -> None:
    settings = Settings(validation_drivers=2, resize=Target.shorter(32), seed=5)
    process(dataset, tmp_path / "one", Settings(**{**settings.__dict__, "workers": 1}))
    process(dataset, tmp_path / "two", Settings(**{**settings.__dict__, "workers": 2}))
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
    process(dataset, tmp_path / "other", Settings(**{**settings.__dict__, "seed": 6, "workers": 1}))
    assert outputs(tmp_path / "other")["train.lst"] != outputs(tmp_path / "one")["train.lst"]


def test_pass_through_stores_the_original_bytes(dataset: Path, tmp_path: Path) -> None:
    process(dataset, tmp_path, Settings(validation_drivers=2, pass_through=True, workers=1))
    reader = IndexedRecordIO(tmp_path / "train.idx", tmp_path / "train.rec", "r")
    for index, _, path in list(read_lst(tmp_path / "train.lst"))[:10]:
        assert unpack(reader.read_idx(index))[1] == (dataset / path).read_bytes()


def test_resize_shorter_side_rounds_like_im2rec(dataset: Path, tmp_path: Path) -> None:
    process(dataset, tmp_path, Settings(validation_drivers=2, resize=Target.shorter(50), workers=1))
    reader = IndexedRecordIO(tmp_path / "validation.idx", tmp_path / "validation.rec", "r")
    _, image = unpack_img(reader.read_idx(0))
    assert image.shape == (50, 96 * 50 // 72, 3)


def test_without_the_csv_it_splits_at_random_and_says_so(dataset: Path, tmp_path: Path) -> None:
    raw = tmp_path / "classes"
    shutil.copytree(dataset / "imgs" / "train", raw)  # im2rec style: only class folders
    manifest = process(raw, tmp_path / "out", Settings(workers=1))
    assert manifest["split_by"] == "random" and manifest["validation_drivers"] == []
    assert any("split at random" in warning and "optimistic" in warning for warning in manifest["warnings"])
    assert manifest["splits"]["validation"]["count"] == 20  # a fifth of every class
    assert len(manifest["splits"]["validation"]["per_class"]) == 10


def test_failed_run_leaves_the_previous_output_untouched(dataset: Path, tmp_path: Path) -> None:
    process(dataset, tmp_path, Settings(validation_drivers=2, resize=Target.shorter(16), workers=1))
    before = outputs(tmp_path)
    with pytest.raises(InputError, match="does-not-exist does not exist"):
        process(tmp_path / "does-not-exist", tmp_path, Settings(workers=1))
    empty = tmp_path / "empty"
    (empty / "c0").mkdir(parents=True)
    with pytest.raises(InputError, match="no usable images"):
        process(empty, tmp_path, Settings(workers=1))
    assert outputs(tmp_path) == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_job_entry_point_reads_and_writes_under_the_ml_root_without_the_cli(dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "ml"
    shutil.copytree(dataset, root / "processing" / "input")
    code = ("import sys; from steps.process import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m == 'click' or m.startswith('workflow')], 'imported the CLI'; "
            "sys.exit(rc)")
    environment = {**os.environ, "DDCICD_ML_ROOT": str(root), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, "--validation-drivers", "2", "--resize", "24"],
                          env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 80 training and 40 validation images (2 held-out drivers)" in done.stderr
    assert json.loads((root / "processing" / "output" / "manifest.json").read_text())["settings"]["resize"] == "24"


def test_job_entry_point_fails_with_exit_2_and_a_failure_file(tmp_path: Path) -> None:
    root = tmp_path / "ml"
    (root / "processing" / "input").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-m", "steps.process"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DDCICD_ML_ROOT": str(root)}, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no class folders")
    assert (root / "output" / "failure").read_text().startswith("ClientError: no class folders")


def test_interrupted_run_publishes_nothing_and_cleans_up(dataset: Path, tmp_path: Path) -> None:
    process(dataset, tmp_path, Settings(validation_drivers=2, resize=Target.shorter(16), workers=1))
    before = outputs(tmp_path)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process(dataset, tmp_path, Settings(validation_drivers=3, resize=Target.shorter(20), workers=2), progress=interrupt)
    assert outputs(tmp_path) == before
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_staging_folders_of_killed_runs_are_removed(dataset: Path, tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".process.tmp-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "train.rec").write_bytes(b"half")
    process(dataset, tmp_path, Settings(validation_drivers=2, resize=Target.shorter(16), workers=1))
    assert not stale.exists()


@pytest.mark.parametrize(("text", "size"), [("256", (341, 256)), ("3,48,64", (64, 48)), ("64x48", (64, 48)),
                                            (None, (640, 480)), ("1,60,80", (80, 60))])
def test_resize_accepts_a_shorter_side_a_size_or_an_image_shape(text: str | None, size: tuple[int, int]) -> None:
    target = Target.parse(text)
    assert target.output_size(640, 480) == size
    assert Target.parse(target.describe()) == target


@pytest.mark.parametrize("text", ["big", "3,48", "2,48,64", "0x10", "-5"])
def test_resize_rejects_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="resize"):
        Target.parse(text)
