"""The model's handler inside SageMaker's PyTorch inference container (`training.algorithm: pytorch` on AWS).

    model_fn(model_dir) -> predictor          input_fn(body, content_type) -> [image bytes]
    predict_fn(images, predictor) -> probabilities    output_fn(probabilities, accept) -> JSON

The PyTorch inference image serves a model archive by importing SAGEMAKER_PROGRAM
(`steps.inference`, workflow/contracts/algorithms.py) from its `code/` folder and calling these
four functions. They run the same Predictor as `python -m steps.serve` (the archive's served
graph, int8 or fp32 as model.json says; the same decode and resize), so an endpoint answers the
same probabilities whichever image serves it, and the built-in algorithm's contract holds:
one image in (application/x-image, image/jpeg, image/png), a JSON list of class
probabilities out.

`write_serving_code(model_dir)` is what makes that possible: the training job (script mode,
steps/train.py) copies the `steps` package into `model_dir/code/` with a requirements.txt the
container installs when the model loads (ONNX Runtime and the decoders, pinned to the versions
this project is tested with; the endpoint needs to reach the package index for that, or an
image with them baked in).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png")
JSON_TYPE = "application/json"
# What the container must pip install beside its own torch and numpy to run the Predictor.
SERVING_REQUIREMENTS = ("onnxruntime", "opencv-python-headless", "simplejpeg")
CODE_FOLDER = "code"


def _client_error(status: int, message: str) -> Exception:
    """The inference toolkit's own error where it exists (it answers with `status`), else ValueError."""
    try:
        from sagemaker_inference.errors import GenericInferenceToolkitError
    except ImportError:
        return ValueError(message)
    return GenericInferenceToolkitError(status, message)


def model_fn(model_dir: str) -> Any:
    """The archive's served graph, loaded once per worker."""
    from steps.predictor import Predictor

    return Predictor(model_dir)


def input_fn(body: bytes, content_type: str) -> list[bytes]:
    """One image, as the built-in algorithm takes it; anything else is a 415 naming what is accepted."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in IMAGE_TYPES:
        raise _client_error(415, f"Content-Type {content_type!r} is not served; send one image as {', '.join(IMAGE_TYPES)}")
    if not body:
        raise _client_error(400, "the request body is empty: send the image's bytes")
    return [bytes(body)]


def predict_fn(images: list[bytes], predictor: Any) -> np.ndarray:
    """Probabilities per image; an image the model cannot take is a 400 with the Predictor's reason."""
    from steps.predictor import InvalidImage

    try:
        return predictor.predict_images(images)
    except InvalidImage as error:
        raise _client_error(400, str(error)) from None


def output_fn(probabilities: np.ndarray, accept: str) -> tuple[str, str]:
    """A JSON list of class probabilities (the first image's: one image per request)."""
    media = (accept or JSON_TYPE).split(";", 1)[0].strip().lower()
    if media not in (JSON_TYPE, "*/*", "application/*"):
        raise _client_error(406, f"Accept {accept!r}: the answer is {JSON_TYPE}")
    return json.dumps([float(value) for value in probabilities[0]]), JSON_TYPE


def serving_requirements() -> str:
    """requirements.txt pinning SERVING_REQUIREMENTS to the versions installed here (the tested ones)."""
    return "".join(f"{name}=={metadata.version(name)}\n" for name in SERVING_REQUIREMENTS)


def write_serving_code(model_dir: Path) -> Path:
    """`model_dir/code/`: the steps package (Python files only) and requirements.txt, replaced as a whole.

    Built beside and renamed into place, so a model directory never holds half a code folder.
    """
    package = Path(__file__).resolve().parent
    target = Path(model_dir) / CODE_FOLDER
    staging = Path(tempfile.mkdtemp(prefix=".code-", dir=model_dir))
    (staging / package.name).mkdir()
    for source in sorted(package.glob("*.py")):
        shutil.copyfile(source, staging / package.name / source.name)
    (staging / "requirements.txt").write_text(serving_requirements())
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn", "write_serving_code"]
