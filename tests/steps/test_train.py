"""steps/train.py through its real entry point: the /opt/ml contract, outputs, failures, resume."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from steps.export import pack_model_dir
from steps.quantize import CALIBRATION_IMAGES
from steps.model import ResNet, ResNetConfig
from steps.train import run

METRIC_LINE = re.compile(
    r"^\[\d\d/\d\d/\d{4} \d\d:\d\d:\d\d INFO \d+\] Epoch\[(\d+)\] (Train|Validation)-(accuracy|cross-entropy)=([0-9.]+)$"
)


def _train(root: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steps.train", "--root", str(root), "--workers", "1", *extra],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_processed: Path, make_job, tiny_hyperparameters) -> tuple[Path, str]:  # noqa: ANN001
    """One real training job on the tiny 4-class dataset, shared by the output tests."""
    root = make_job(tmp_path_factory.mktemp("job"), tiny_processed, {**tiny_hyperparameters, "top_k": "2"})
    done = _train(root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, done.stdout


@pytest.mark.slow
def test_training_learns_the_tiny_dataset(trained: tuple[Path, str]) -> None:
    metrics = json.loads((trained[0] / "output" / "data" / "metrics.json").read_text())
    assert metrics["final"]["validation_accuracy"] >= 0.75  # chance is 0.25
    assert metrics["final"]["validation_log_loss"] < 1.0  # chance is ln 4 = 1.39
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [0, 1, 2, 3]
    assert set(metrics["epochs"][0]) >= {"train_loss", "train_accuracy", "validation_loss", "validation_accuracy"}


@pytest.mark.slow
def test_metric_lines_use_the_built_in_algorithms_format(trained: tuple[Path, str]) -> None:
    found = [METRIC_LINE.match(line).groups()[:3] for line in trained[1].splitlines() if METRIC_LINE.match(line)]
    for epoch in "0123":
        for split in ("Train", "Validation"):
            assert (epoch, split, "accuracy") in found and (epoch, split, "cross-entropy") in found
    assert re.search(r"Epoch\[3\] Validation-top_k_accuracy_2=[0-9.]+", trained[1])


@pytest.mark.slow
def test_model_dir_holds_onnx_json_and_a_weights_only_state_dict(trained: tuple[Path, str]) -> None:
    model_dir = trained[0] / "model"
    assert sorted(path.name for path in model_dir.iterdir()) == ["model.int8.onnx", "model.json", "model.onnx",
                                                                  "model.pt"]
    document = json.loads((model_dir / "model.json").read_text())
    serving = document["serving"]
    assert serving["served"] in ("fp32", "int8") and serving["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert serving["served"] == ("int8" if serving["single_image_ms"]["int8"] <= 0.95 * serving["single_image_ms"]["fp32"]
                                 else "fp32")
    calibration = serving["int8"]["calibration"]
    train_images = len((trained[0] / "input" / "data" / "train" / "train.idx").read_text().splitlines())
    assert calibration["images"] == min(CALIBRATION_IMAGES, train_images) and calibration["method"] == "MinMax"
    assert f"{calibration['images']} training images" in calibration["source"]
    assert "first convolution" in serving["int8"]["kept_in_float"]
    assert serving["int8"]["format"] == "QDQ" and "per output channel" in serving["int8"]["weights"]
    assert document["classes"] == ["c0", "c1", "c2", "c3"] and document["image_shape"] == "3,24,32"
    assert document["num_layers"] == 20 and document["hyperparameters"]["mini_batch_size"] == "16"
    state = torch.load(model_dir / "model.pt", weights_only=True)
    network = ResNet(ResNetConfig(num_layers=20, num_classes=4))
    network.load_state_dict(state)
    graph = onnx.load(str(model_dir / "model.onnx"))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.slow
def test_onnx_and_pytorch_give_the_same_probabilities(trained: tuple[Path, str]) -> None:
    model_dir = trained[0] / "model"
    network = ResNet(ResNetConfig(num_layers=20, num_classes=4)).eval()
    network.load_state_dict(torch.load(model_dir / "model.pt", weights_only=True))
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        pixels = np.random.default_rng(batch).uniform(0, 255, (batch, 3, 24, 32)).astype(np.float32)
        served = session.run(None, {"input": pixels})[0]
        with torch.no_grad():
            expected = torch.softmax(network(torch.from_numpy(pixels)), 1).numpy()
        np.testing.assert_allclose(served, expected, atol=1e-5)
        np.testing.assert_allclose(served.sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_packed_archive_has_the_model_files_at_the_top(trained: tuple[Path, str], tmp_path: Path) -> None:
    archive = pack_model_dir(trained[0] / "model", tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.int8.onnx", "model.json", "model.onnx", "model.pt"]
        state = torch.load(io.BytesIO(tar.extractfile("model.pt").read()), weights_only=True)
    assert "fc.weight" in state


def test_an_unknown_hyperparameter_fails_before_anything_is_written(
    tmp_path: Path, tiny_processed: Path, make_job, tiny_hyperparameters  # noqa: ANN001
) -> None:
    root = make_job(tmp_path / "job", tiny_processed, {**tiny_hyperparameters, "learning_rat": "0.1"})
    assert run(["--root", str(root)]) == 2
    failure = (root / "output" / "failure").read_text()
    assert failure == 'ClientError: unknown hyperparameter "learning_rat" (did you mean "learning_rate"?)\n'
    assert not (root / "model").exists() and not (root / "checkpoints").exists()
    assert not (root / "output" / "data").exists()


def test_a_label_outside_num_classes_is_a_client_error(
    tmp_path: Path, tiny_processed: Path, make_job, tiny_hyperparameters  # noqa: ANN001
) -> None:
    root = make_job(tmp_path / "job", tiny_processed, {**tiny_hyperparameters, "num_classes": "3", "top_k": "2"})
    assert run(["--root", str(root)]) == 2
    assert re.fullmatch(r"ClientError: \S+train\.rec record 3 \(id 3\) has label 3, outside 0\.\.2 \(num_classes=3\)\n",
                        (root / "output" / "failure").read_text())  # fmt: skip


def test_pretrained_weights_need_a_model_channel(
    tmp_path: Path, tiny_processed: Path, make_job, tiny_hyperparameters  # noqa: ANN001
) -> None:
    root = make_job(tmp_path / "job", tiny_processed, {**tiny_hyperparameters, "use_pretrained_model": "1"})
    assert run(["--root", str(root)]) == 2
    assert "use_pretrained_model=1 needs a `model` channel" in (root / "output" / "failure").read_text()


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_newest_checkpoint(
    tmp_path: Path, tiny_processed: Path, make_job, tiny_hyperparameters  # noqa: ANN001
) -> None:
    root = make_job(tmp_path / "job", tiny_processed, {**tiny_hyperparameters, "epochs": "6"})
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "steps.train", "--root", str(root), "--workers", "1"],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            _wait_for(lambda: "after epoch 1" in log_path.read_text() or first.poll() is not None, 300, "epoch 1's checkpoint")
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # no chance to clean up, like a lost spot instance
            first.wait()
    assert first.returncode == -signal.SIGKILL, log_path.read_text()
    assert not (root / "model" / "model.json").exists()

    second = _train(root)
    assert second.returncode == 0, second.stdout
    resumed = re.search(r"resuming from \S+ after epoch (\d+)", second.stdout)
    assert resumed is not None and int(resumed.group(1)) >= 1
    assert "Epoch[0] Train-accuracy" not in second.stdout
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == list(range(6))
