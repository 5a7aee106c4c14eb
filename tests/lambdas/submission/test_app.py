"""The submission Lambda over the local S3 root: .out files in, Kaggle CSV out."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lambdas.errors import InvalidData, InvalidEvent
from lambdas.submission.app import handler

CLASSES = [f"c{index}" for index in range(10)]


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DDCICD_S3_ROOT", str(tmp_path))
    (tmp_path / "bkt/raw").mkdir(parents=True)
    (tmp_path / "bkt/raw/sample_submission.csv").write_text(
        "img," + ",".join(CLASSES) + "\n" + "".join(f"img_{n}.jpg," + ",".join(["0.1"] * 10) + "\n" for n in (3, 1, 2))
    )
    (tmp_path / "bkt/out").mkdir()
    for name in ("img_1.jpg", "img_3.jpg"):
        (tmp_path / f"bkt/out/{name}.out").write_text(json.dumps([0.91] + [0.01] * 9))
    return tmp_path


EVENT = {"transform_output_uri": "s3://bkt/out/", "sample_submission_uri": "s3://bkt/raw/sample_submission.csv",
         "output_uri": "s3://bkt/run/submission.csv"}  # fmt: skip


def test_rows_follow_the_sample_and_missing_images_are_uniform(s3: Path) -> None:
    result = handler(dict(EVENT))
    assert result == {"rows": 3, "scored": 2, "missing": 1, "submission_uri": "s3://bkt/run/submission.csv"}
    rows = list(csv.reader(io.StringIO((s3 / "bkt/run/submission.csv").read_text())))
    assert rows[0] == ["img", *CLASSES]
    assert [row[0] for row in rows[1:]] == ["img_3.jpg", "img_1.jpg", "img_2.jpg"]
    assert float(rows[1][1]) == pytest.approx(0.91)
    assert rows[3][1:] == ["0.1"] * 10


def test_a_malformed_output_file_is_invalid_data(s3: Path) -> None:
    (s3 / "bkt/out/img_2.jpg.out").write_text("[0.5, 0.5]")
    with pytest.raises(InvalidData, match="img_2.jpg.out: expected a list of 10 probabilities"):
        handler(dict(EVENT))


def test_a_bad_event_names_the_field() -> None:
    with pytest.raises(InvalidEvent, match="output_uri"):
        handler({**EVENT, "output_uri": "not-a-uri"})
