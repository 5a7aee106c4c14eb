"""`ddcicd data synth` and `ddcicd process`, run as the user runs them (a real process)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[3]


def ddcicd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflow.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_synth_then_process_writes_the_documented_files(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    done = ddcicd("data", "synth", "--out", str(raw), "--images", "40", "--drivers", "4", "--test-images", "3",
                  "--width", "96", "--height", "72", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote 40 training images of 4 drivers and 3 test images of 1 other drivers to {raw}\n"
    done = ddcicd("process", "--data", str(raw), "--out", str(out), "--validation-drivers", "1", "--resize", "3,48,64")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wrote 30 training and 10 validation images (1 held-out drivers)\n"
    assert sorted(path.name for path in out.iterdir()) == [
        "manifest.json", "train.idx", "train.lst", "train.rec", "validation.idx", "validation.lst", "validation.rec"]
    assert json.loads((out / "manifest.json").read_text())["settings"]["resize"] == "64x48"


def test_synth_refuses_to_overwrite_and_impossible_sizes(tmp_path: Path) -> None:
    arguments = ["data", "synth", "--out", str(tmp_path), "--images", "3", "--drivers", "1", "--test-images", "0",
                 "--width", "64", "--height", "48"]
    assert ddcicd(*arguments).returncode == 0
    again = ddcicd(*arguments)
    assert (again.returncode, again.stderr) == (2, f"error: {tmp_path / 'imgs'} already holds images (use --overwrite to replace them)\n")
    assert ddcicd(*arguments, "--overwrite").returncode == 0
    impossible = ddcicd("data", "synth", "--out", str(tmp_path / "x"), "--images", "2", "--drivers", "3")
    assert (impossible.returncode, impossible.stderr) == (2, "error: --drivers 3 is more than --images 2: every driver needs an image\n")


def test_process_explains_unusable_input_and_bad_options_in_one_line(tmp_path: Path) -> None:
    missing = ddcicd("process", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert (missing.returncode, missing.stderr) == (2, f"error: input folder {tmp_path / 'nothing'} does not exist\n")
    (tmp_path / "raw" / "c0").mkdir(parents=True)
    (tmp_path / "raw" / "c0" / "img_1.jpg").write_bytes(b"")
    empty = ddcicd("process", "--data", str(tmp_path / "raw"), "--out", str(tmp_path / "out"))
    assert empty.returncode == 2 and empty.stderr.startswith("error: none of the 1 training images")
    for options, message in ((["--resize", "big"], "resize 'big' is not a size"),
                             (["--pass-through", "--resize", "64"], "cannot be combined with resize"),
                             (["--validation-drivers", "-1"], "must be a count >= 1 or a fraction")):
        bad = ddcicd("process", "--data", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), *options)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_output_folder_that_cannot_be_made_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    synth = ddcicd("data", "synth", "--out", str(blocker / "x"), "--images", "2", "--drivers", "1")
    assert synth.returncode == 2 and synth.stderr.startswith(f"error: cannot write the dataset to {blocker / 'x'}: ")
    (tmp_path / "raw" / "c0").mkdir(parents=True)
    assert ddcicd("process", "--data", str(tmp_path / "raw"), "--out", str(tmp_path / "out")).stderr == (
        f"error: no usable images under {tmp_path / 'raw'} (the class folders are empty)\n")
    image = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    (tmp_path / "raw" / "c0" / "img_1.jpg").write_bytes(image)
    process = ddcicd("process", "--data", str(tmp_path / "raw"), "--out", str(blocker / "x"))
    assert process.returncode == 2 and process.stderr.count("\n") == 1 and "Not a directory" in process.stderr
