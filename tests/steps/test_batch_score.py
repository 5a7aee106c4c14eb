"""Batch scoring: Batch Transform's .out files and Kaggle's submission CSV from a real model."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from steps.batch_score import main, read_transform_outputs, submission_csv

CLASSES = [f"c{index}" for index in range(10)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    return export_model_archive(ResNet(ResNetConfig(num_layers=20, num_classes=10)), folder, (3, 32, 32), CLASSES)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs" / "test"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for index in range(3):
        cv2.imwrite(str(folder / f"img_{index}.jpg"), generator.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (folder / "img_9.jpg").write_bytes(b"not a jpeg")
    with open(tmp_path / "sample_submission.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img", *CLASSES])
        for name in ("img_2.jpg", "img_0.jpg", "img_9.jpg", "img_1.jpg"):
            writer.writerow([name] + ["0.1"] * 10)
    return folder


def test_transform_outputs_one_out_file_per_image(model: Path, images: Path, tmp_path: Path) -> None:
    assert main(["--model", str(model), "--input", str(images), "--output", str(tmp_path / "out")]) == 1  # one bad image
    scores = read_transform_outputs(tmp_path / "out")
    assert sorted(scores) == ["img_0.jpg", "img_1.jpg", "img_2.jpg"]
    assert all(len(row) == 10 and abs(sum(row) - 1) < 1e-4 for row in scores.values())


def test_submission_follows_the_sample_order_and_stays_complete(model: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"
    main(["--model", str(model), "--input", str(images), "--submission", str(out),
          "--sample-submission", str(tmp_path / "sample_submission.csv")])  # fmt: skip
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["img", *CLASSES]
    assert [row[0] for row in rows[1:]] == ["img_2.jpg", "img_0.jpg", "img_9.jpg", "img_1.jpg"]
    assert rows[3][1:] == ["0.1"] * 10, "an unreadable image gets the uniform distribution"
    for row in rows[1:]:
        assert abs(sum(float(value) for value in row[1:]) - 1) < 1e-5


def test_probabilities_are_clipped_so_log_loss_stays_finite() -> None:
    text = submission_csv({"a.jpg": [1.0] + [0.0] * 9}, CLASSES)
    values = [float(value) for value in text.splitlines()[1].split(",")[1:]]
    assert min(values) > 0


def test_the_cli_writes_the_submission(model: Path, images: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from workflow.cli import cli

    out = tmp_path / "submission.csv"
    result = CliRunner().invoke(cli, ["predict", "--model", str(model), "--images", str(images), "--out", str(out)])
    assert result.exit_code == 1, result.output  # img_9.jpg is not an image
    assert "in sample_submission.csv order" in result.output
    assert "skipped img_9.jpg" in result.output
    assert len(out.read_text().splitlines()) == 5
