"""`ddcicd train`, run as the user runs it: synth -> process -> train, and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def ddcicd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflow.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw, out = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("processed")
    assert ddcicd("data", "synth", "--out", str(raw), "--images", "48", "--drivers", "4", "--test-images", "0",
                  "--width", "96", "--height", "72").returncode == 0  # fmt: skip
    done = ddcicd("process", "--data", str(raw), "--out", str(out), "--validation-drivers", "1", "--resize", "48")
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_train_writes_the_model_archive_and_metrics(processed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = ddcicd("train", "--data", str(processed), "--out", str(out), "--quiet",
                  "--hp", "epochs=2", "--hp", "mini_batch_size=8", "--hp", "image_shape=3,24,32", "--hp", "lr_scheduler_step=1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out / 'model.tar.gz'} (epoch ")
    with tarfile.open(out / "model.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["model.int8.onnx", "model.json", "model.onnx", "model.pt"]
        document = json.loads(archive.extractfile("model.json").read())
    assert document["classes"] == [f"c{index}" for index in range(10)]
    assert document["hyperparameters"]["num_training_samples"] == "36"  # from the manifest
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and 0 <= metrics["final"]["validation_accuracy"] <= 1
    assert "Epoch[1] Validation-accuracy=" in (out / "train.log").read_text()


@pytest.mark.slow
def test_a_bad_hyperparameter_fails_with_one_line_and_a_failure_file(processed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = ddcicd("train", "--data", str(processed), "--out", str(out), "--quiet", "--hp", "optimizer=adamw")
    assert done.returncode == 2
    reason = "ClientError: invalid value 'adamw' for hyperparameter optimizer: must be one of sgd, adam, rmsprop, nag"
    assert done.stderr == f"error: training failed: {reason} (details in {out / 'train.log'})\n"
    assert (out / "failure").read_text() == reason + "\n"
    assert not (out / "model.tar.gz").exists()


def test_the_pipelines_default_hyperparameters_are_valid_for_the_trainer() -> None:
    from steps.hyperparameters import parse_hyperparameters
    from workflow.config import DEFAULT_HYPERPARAMETERS

    values = {name: str(value) for name, value in DEFAULT_HYPERPARAMETERS.items()}
    config = parse_hyperparameters({**values, "num_classes": "10", "num_training_samples": "2100"})
    assert config.num_layers in (20, 32, 44, 56, 110)  # a small-image ResNet by default


def test_input_errors_are_one_line_before_any_job(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    missing = ddcicd("train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert (missing.returncode, missing.stderr) == (
        2, f"error: {tmp_path / 'empty'} has no manifest.json: is it a folder written by `ddcicd process`?\n")
    malformed = ddcicd("train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "--hp", "epochs")
    assert (malformed.returncode, malformed.stderr) == (2, "error: --hp 'epochs' is not NAME=VALUE (e.g. --hp epochs=3)\n")
