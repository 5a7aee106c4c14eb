"""Quality of the int8 graph through the staging endpoint (issue 18): a processed dataset (the
processing step's RecordIO layout) -> steps.train (exports model.onnx and model.int8.onnx,
calibrated on training images) -> two local endpoints, one serving each precision -> the
Evaluate Lambda on the validation set.

The data is a 4-class task a ResNet-20 learns in a few epochs on two cores (the class is the
colour of a disc on noise), so the test takes about a minute and the model is trained, not
at chance; 400 validation images, so one changed answer is 0.25 points. Target: int8
accuracy within 0.5 points and log loss within +0.02 of fp32. (The demo's synthetic
drivers need 13 epochs, about 5 minutes: `make demo` checks them, not this test.)
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cv2
import numpy as np

from lambdas import runtime as runtime_module
from lambdas.evaluate.app import handler as evaluate
from steps.export import pack_model_dir
from steps.quantize import CALIBRATION_IMAGES
from steps.recordio import IndexedRecordIO, IRHeader, pack_img
from workflow.config import DEFAULT_HYPERPARAMETERS
from workflow.local.endpoints import LocalEndpoints
from workflow.local.runtime import ensure_runtime, stop_runtime

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
DISCS = [(40, 40, 220), (40, 200, 40), (220, 60, 40), (0, 200, 230)]  # BGR: the four classes


def write_discs(out: Path, train: int, validation: int) -> Path:
    """train/validation .rec/.idx and manifest.json: 48x64 noise with a disc whose colour is the class."""
    rng = np.random.default_rng(11)
    out.mkdir(parents=True)
    counts = {}
    for split, size in (("train", train), ("validation", validation)):
        with IndexedRecordIO(out / f"{split}.idx", out / f"{split}.rec", "w") as records:
            for key in range(size):
                label = key % len(DISCS)
                image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                centre = (int(rng.integers(10, 54)), int(rng.integers(10, 38)))
                cv2.circle(image, centre, int(rng.integers(5, 10)), DISCS[label], -1)
                records.write_idx(key, pack_img(IRHeader(0, float(label), key, 0), image, quality=90))
        counts[split] = {"count": size}
    classes = [f"c{index}" for index in range(len(DISCS))]
    (out / "manifest.json").write_text(json.dumps({"classes": classes, "splits": counts}))
    return out


def _train(processed: Path, root: Path) -> Path:
    """steps.train through its entry point on the processed channels; returns the model dir."""
    for channel in ("train", "validation"):
        directory = root / "input" / "data" / channel
        directory.mkdir(parents=True)
        for suffix in (".rec", ".idx"):
            (directory / f"{channel}{suffix}").symlink_to(processed / f"{channel}{suffix}")
    (root / "input" / "data" / "train" / "manifest.json").symlink_to(processed / "manifest.json")
    manifest = json.loads((processed / "manifest.json").read_text())
    hyperparameters = {**{key: str(value) for key, value in DEFAULT_HYPERPARAMETERS.items()}, "num_classes": "4",
                       "num_training_samples": str(manifest["splits"]["train"]["count"]), "epochs": "4",
                       "lr_scheduler_step": "3"}
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    done = subprocess.run([sys.executable, "-m", "steps.train", "--root", str(root), "--workers", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return root / "model"


def _archive_serving(model_dir: Path, precision: str, out: Path) -> Path:
    """model.tar.gz of `model_dir` whose model.json names `precision` as served."""
    copy = out / precision
    shutil.copytree(model_dir, copy)
    document = json.loads((copy / "model.json").read_text())
    document["serving"]["served"] = precision
    (copy / "model.json").write_text(json.dumps(document))
    return pack_model_dir(copy, out / f"{precision}.tar.gz")


def test_int8_scores_like_fp32_on_the_validation_set_through_the_staging_endpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    processed = write_discs(tmp_path / "s3" / "ddcicd" / "processed", train=480, validation=400)
    model_dir = _train(processed, tmp_path / "job")
    serving = json.loads((model_dir / "model.json").read_text())["serving"]
    assert serving["int8"]["calibration"]["images"] == min(CALIBRATION_IMAGES, 480)

    endpoints = LocalEndpoints(tmp_path / "home", cpu_count=2)
    names = {}
    for precision in ("int8", "fp32"):
        archive = _archive_serving(model_dir, precision, tmp_path / "archives")
        endpoints.create_model(f"model-{precision}", str(archive))
        endpoints.create_endpoint_config(f"config-{precision}", [
            {"VariantName": "AllTraffic", "ModelName": f"model-{precision}", "InitialInstanceCount": 1}])
        endpoints.create_endpoint(f"staging-{precision}", f"config-{precision}")
        names[precision] = f"staging-{precision}"
    try:
        deadline = time.monotonic() + 120
        for name in names.values():
            while endpoints.describe_endpoint(name)["EndpointStatus"] == "Creating" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert endpoints.describe_endpoint(name)["EndpointStatus"] == "InService"
        monkeypatch.setenv("DDCICD_SAGEMAKER_RUNTIME_URL", ensure_runtime(endpoints.root.parent))
        monkeypatch.setenv("DDCICD_S3_ROOT", str(tmp_path / "s3"))
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        runtime_module.session.cache_clear()
        runtime_module.sagemaker_runtime.cache_clear()
        results = {precision: evaluate({"endpoint_name": name, "data_uri": "s3://ddcicd/processed",
                                        "output_uri": f"s3://ddcicd/runs/r1/evaluation-{precision}.json"})
                   for precision, name in names.items()}
    finally:
        runtime_module.session.cache_clear()
        runtime_module.sagemaker_runtime.cache_clear()
        for name in names.values():
            endpoints.delete_endpoint(name)
        stop_runtime(endpoints.root.parent)
    int8, fp32 = results["int8"], results["fp32"]
    assert int8["evaluated"] == fp32["evaluated"] == int8["images"] == 400
    assert fp32["accuracy"] > 0.6  # trained, not chance (0.25): the comparison means something
    print(f"validation set, {int8['images']} images: fp32 accuracy {fp32['accuracy']:.4f} log loss "
          f"{fp32['log_loss']:.4f}; int8 accuracy {int8['accuracy']:.4f} log loss {int8['log_loss']:.4f}")
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.005
    assert int8["log_loss"] <= fp32["log_loss"] + 0.02
