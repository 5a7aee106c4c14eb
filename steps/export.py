"""Writing a trained network as the model artifact (DESIGN.md "Files between steps").

A training job writes three files into its model directory (/opt/ml/model), and SageMaker
packs that directory's contents into `model.tar.gz`; `pack_model_dir` does the packing the
same way for local jobs:

    model.onnx   the served graph: float32 NCHW RGB 0..255 "input" (batch axis dynamic)
                 -> "probabilities" (softmax; normalization is inside the graph)
    model.json   classes, image_shape, mean/std, num_layers, hyperparameters, metrics, versions,
                 and "serving": which graph the endpoint serves and how the int8 one was made
    model.int8.onnx  the same graph quantized to int8 (steps/quantize.py), when calibration
                 images are given (training passes some of its own)
    model.pt     the state_dict, for fine-tuning (torch.load(..., weights_only=True))

`export_model_archive` does all of it in one call, for tests that need a small real model:

    >>> network = ResNet(ResNetConfig(num_layers=20, num_classes=10))
    >>> export_model_archive(network, tmp, image_shape=(3, 48, 64))   # -> tmp/model.tar.gz
"""
from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from steps.atomic import replacing, write_atomically
from steps.model import Probabilities, ResNet
from steps.quantize import INT8_FILE, int8_variant

ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
MODEL_FILES = ("model.onnx", INT8_FILE, "model.json", "model.pt")


def onnx_bytes(network: ResNet, image_shape: tuple[int, int, int]) -> bytes:
    """The network plus softmax as ONNX, with a dynamic batch axis.

    Uses the TorchScript-based exporter (dynamo=False): for this plain convolutional network
    it gives the same graph as the torch.export-based one in about a tenth of the time
    (1-2 s instead of about 20 s on two cores), which matters for tests and short jobs.
    """
    served = Probabilities(network).eval()
    example = torch.zeros(2, *image_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces itself
        torch.onnx.export(
            served,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    return buffer.getvalue()


def model_document(
    network: ResNet,
    image_shape: tuple[int, int, int],
    classes: Sequence[str] | None = None,
    hyperparameters: dict[str, str] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """model.json: what a consumer needs to feed the graph and name its outputs."""
    import onnx

    config = network.config
    names = list(classes) if classes is not None else [f"c{index}" for index in range(config.num_classes)]
    if len(names) != config.num_classes:
        raise ValueError(f"{len(names)} class names {names} for a network with {config.num_classes} outputs")
    channels, height, width = image_shape
    return {
        "format_version": 1,
        "classes": names,
        "image_shape": f"{channels},{height},{width}",
        "num_layers": config.num_layers,
        "num_classes": config.num_classes,
        "mean": list(config.mean),
        "std": list(config.std),
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "layout": "NCHW",
            "channel_order": "RGB" if channels == 3 else "GRAY",
            "value_range": [0, 255],
            "resize": f"whole image to {width}x{height} (cv2.INTER_AREA when shrinking), no crop",
            "normalized_inside_model": True,
        },
        "output": {"name": OUTPUT_NAME, "softmax": True},
        "hyperparameters": dict(hyperparameters or {}),
        "metrics": dict(metrics or {}),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnx_opset": ONNX_OPSET},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_model_dir(
    network: ResNet,
    model_dir: Path,
    image_shape: tuple[int, int, int],
    classes: Sequence[str] | None = None,
    hyperparameters: dict[str, str] | None = None,
    metrics: dict[str, Any] | None = None,
    calibration: np.ndarray | None = None,
    calibration_source: str = "training images",
) -> None:
    """model.onnx, model.json and model.pt into `model_dir` (each written atomically), and
    model.int8.onnx when `calibration` images (float32 N x C x H x W, 0..255) are given."""
    network = network.to("cpu").float().eval()
    document = model_document(network, image_shape, classes, hyperparameters, metrics)
    onnx_model = onnx_bytes(network, image_shape)
    state = io.BytesIO()
    torch.save(network.state_dict(), state)
    write_atomically(model_dir / "model.pt", state.getvalue())
    write_atomically(model_dir / "model.onnx", onnx_model)
    if calibration is not None:
        int8_model, document["serving"] = int8_variant(onnx_model, calibration, calibration_source)
        write_atomically(model_dir / INT8_FILE, int8_model)
    # model.json last: its presence says the other two are complete
    write_atomically(model_dir / "model.json", (json.dumps(document, indent=2) + "\n").encode())


def pack_model_dir(model_dir: Path, archive: Path) -> Path:
    """Pack a model directory's contents into model.tar.gz as SageMaker does: files at the top level."""
    members = sorted(path for path in model_dir.iterdir() if not path.name.startswith("."))
    if not members:
        raise FileNotFoundError(f"model directory {model_dir} is empty: nothing to pack")
    with replacing(archive, fsync=False) as handle, tarfile.open(fileobj=handle, mode="w:gz", compresslevel=6) as tar:
        for path in members:
            tar.add(path, arcname=path.name)
    return archive


def export_model_archive(
    network: ResNet,
    out_dir: Path,
    image_shape: tuple[int, int, int],
    classes: Sequence[str] | None = None,
    hyperparameters: dict[str, str] | None = None,
    metrics: dict[str, Any] | None = None,
    calibration: np.ndarray | None = None,
    calibration_source: str = "training images",
) -> Path:
    """`out_dir/model.tar.gz` for `network`, in one call (the serving tests use it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".model-", dir=out_dir) as staging:
        write_model_dir(network, Path(staging), image_shape, classes, hyperparameters, metrics, calibration,
                        calibration_source)
        return pack_model_dir(Path(staging), out_dir / "model.tar.gz")
