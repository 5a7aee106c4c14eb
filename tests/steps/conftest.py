"""Tiny RecordIO datasets for the training tests, written with steps.recordio like the processing
step; real `python -m steps.serve` processes for the serving tests (`serve_process`)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from steps.export import export_model_archive
from steps.model import ResNet, ResNetConfig
from steps.recordio import IndexedRecordIO, IRHeader, pack_img

TINY_CLASSES = ["c0", "c1", "c2", "c3"]
TINY_SHAPE = "3,24,32"


COLORS = [(230, 40, 40), (40, 200, 40), (40, 60, 230), (240, 240, 240)]  # BGR, one per class


def _square_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy 48x64 frame with a square whose colour is the class, anywhere: easy, but needs learning."""
    image = rng.integers(60, 180, size=(48, 64, 3), dtype=np.uint8)
    top, left = int(rng.integers(0, 48 - 14)), int(rng.integers(0, 64 - 14))
    image[top : top + 14, left : left + 14] = COLORS[label]
    return image


def write_tiny_processed(out: Path, train: int = 160, validation: int = 48, seed: int = 0) -> Path:
    """A processed folder (train/validation .rec/.idx, manifest.json) of 4-class coloured-square images."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, size in (("train", train), ("validation", validation)):
        labels = [index % len(TINY_CLASSES) for index in range(size)]
        with IndexedRecordIO(out / f"{split}.idx", out / f"{split}.rec", "w") as records:
            for index, label in enumerate(labels):
                records.write_idx(index, pack_img(IRHeader(0, float(label), index, 0), _square_image(label, rng), quality=90))
        counts[split] = {"count": size, "per_class": {name: labels.count(i) for i, name in enumerate(TINY_CLASSES)}}
    manifest = {"classes": TINY_CLASSES, "splits": counts, "skipped": [], "settings": {}, "outputs": {}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_processed(tmp_path_factory.mktemp("tiny") / "processed")


def _make_job(root: Path, data: Path, hyperparameters: dict[str, str]) -> Path:
    """An /opt/ml-like job root whose channels link to a processed folder's files."""
    for channel in ("train", "validation"):
        directory = root / "input" / "data" / channel
        directory.mkdir(parents=True, exist_ok=True)
        for suffix in (".rec", ".idx"):
            (directory / f"{channel}{suffix}").symlink_to(data / f"{channel}{suffix}")
    (root / "input" / "data" / "train" / "manifest.json").symlink_to(data / "manifest.json")
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return root


TINY_HYPERPARAMETERS = {
    "num_classes": "4",
    "num_training_samples": "160",
    "num_layers": "20",
    "image_shape": TINY_SHAPE,
    "mini_batch_size": "16",
    "epochs": "4",
    "learning_rate": "0.05",
    "optimizer": "nag",
    "momentum": "0.9",
    "weight_decay": "0.0005",
}


@pytest.fixture(scope="session")
def make_job():  # noqa: ANN201 - returns the helper
    """make_job(root, data, hyperparameters) -> root laid out like /opt/ml."""
    return _make_job


@pytest.fixture(scope="session")
def tiny_hyperparameters() -> dict[str, str]:
    return dict(TINY_HYPERPARAMETERS)


REPO = Path(__file__).resolve().parents[2]


def serving_pids(pid: int) -> list[int]:
    """The pids that serve for server `pid`: its forked children (steps/serve_processes.py), or
    the server itself when it serves alone."""
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return children or [pid]


def _serve_process(archive: Path, tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    ready = tmp / "ready.json"
    process = subprocess.Popen([sys.executable, "-m", "steps.serve", "--model", str(archive), "--port", "0",
                                "--threads", "1", "--ready-file", str(ready), *args], cwd=REPO)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server did not start (exit code {process.returncode})")
        time.sleep(0.05)
    return process, json.loads(ready.read_text())["port"]


@pytest.fixture(scope="session")
def serve_process() -> Callable[..., tuple[subprocess.Popen[bytes], int]]:
    """serve_process(archive, tmp, *args) -> (process, port) once it serves (the caller terminates it)."""
    return _serve_process


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.tar.gz of an untrained ResNet-20, 10 classes c0..c9, 3x48x64 input: a real served model."""
    torch.manual_seed(1)
    network = ResNet(ResNetConfig(num_layers=20, num_classes=10))
    return export_model_archive(network, tmp_path_factory.mktemp("model"), (3, 48, 64), [f"c{index}" for index in range(10)])


@pytest.fixture(scope="session")
def jpeg_bombs() -> dict[str, bytes]:
    """The two decompression bombs of issue 17: a 4.7 MB YCCK JPEG claiming 10000x10000 (Pillow
    writes CMYK with an Adobe APP14 marker; its transform byte 2 makes it YCCK) and a 1 MB
    progressive greyscale JPEG claiming 16000x16000."""
    buffer = io.BytesIO()
    Image.new("CMYK", (10000, 10000), (10, 200, 30, 0)).save(buffer, "JPEG", quality=50)
    cmyk = buffer.getvalue()
    start = cmyk.index(b"Adobe") - 4
    end = start + 2 + int.from_bytes(cmyk[start + 2 : start + 4], "big")
    buffer = io.BytesIO()
    Image.new("L", (16000, 16000), 128).save(buffer, "JPEG", quality=75, progressive=True)
    return {"ycck": cmyk[: end - 1] + b"\x02" + cmyk[end:], "progressive grey": buffer.getvalue()}
