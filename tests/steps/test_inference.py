"""steps/inference.py: the PyTorch inference container's handler, run from the code/ folder a
script-mode training job writes, in a process that cannot import this repository's `steps`."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from steps.inference import input_fn, model_fn, output_fn, predict_fn, serving_requirements, write_serving_code
from steps.predictor import Predictor

HANDLER = """
import json, sys
code, model_dir, image = sys.argv[1:4]
sys.path.insert(0, code)  # what the inference toolkit does with SAGEMAKER_SUBMIT_DIRECTORY
import importlib
handler = importlib.import_module("steps.inference")  # SAGEMAKER_PROGRAM
assert handler.__file__.startswith(code), handler.__file__
model = handler.model_fn(model_dir)
body = open(image, "rb").read()
answer, content_type = handler.output_fn(handler.predict_fn(handler.input_fn(body, "application/x-image"), model), "application/json")
print(json.dumps({"answer": json.loads(answer), "content_type": content_type}))
"""


def jpeg(seed: int = 0) -> bytes:
    image = cv2.resize(np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480))
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture(scope="module")
def model_dir(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def test_the_handler_answers_what_the_server_answers(model_dir: Path) -> None:
    model = model_fn(str(model_dir))
    body = jpeg()
    answer, content_type = output_fn(predict_fn(input_fn(body, "image/jpeg; charset=binary"), model), "*/*")
    assert content_type == "application/json"
    expected = Predictor(model_dir).predict_images([body])[0]
    np.testing.assert_allclose(json.loads(answer), expected, rtol=1e-6)
    assert len(json.loads(answer)) == 10


@pytest.mark.parametrize("call, message", [
    (lambda model: input_fn(b"{}", "application/json"), "is not served; send one image"),
    (lambda model: input_fn(b"", "image/png"), "the request body is empty"),
    (lambda model: predict_fn([b"\xff\xd8\xff not a jpeg"], model), "JPEG"),
    (lambda model: output_fn(np.ones((1, 10)), "text/csv"), "the answer is application/json"),
])  # fmt: skip
def test_bad_requests_say_what_is_wrong(model_dir: Path, call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        call(model_fn(str(model_dir)))


def test_the_code_folder_imports_on_its_own_and_pins_what_the_container_lacks(model_dir: Path, tmp_path: Path) -> None:
    code = write_serving_code(model_dir)
    assert (code / "steps" / "inference.py").is_file() and (code / "steps" / "predictor.py").is_file()
    assert not list(code.rglob("__pycache__")) and not list(model_dir.glob(".code-*"))
    requirements = (code / "requirements.txt").read_text().split()
    assert [line.split("==")[0] for line in requirements] == ["onnxruntime", "opencv-python-headless", "simplejpeg"]
    assert (code / "requirements.txt").read_text() == serving_requirements()
    assert write_serving_code(model_dir) == code  # written again: replaced whole
    image = tmp_path / "frame.jpg"
    image.write_bytes(jpeg(1))
    result = subprocess.run([sys.executable, "-c", HANDLER, str(code), str(model_dir), str(image)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["content_type"] == "application/json"
    np.testing.assert_allclose(printed["answer"], Predictor(model_dir).predict_images([image.read_bytes()])[0], rtol=1e-6)


@pytest.mark.slow
def test_a_script_mode_training_job_ships_the_handler_in_its_model(
        tmp_path: Path, tiny_processed: Path, make_job, tiny_hyperparameters: dict[str, str]) -> None:  # noqa: ANN001
    """sagemaker_program in the hyperparameters (the PyTorch estimator's script mode) -> model/code/;
    the built-in contract's jobs (the other training tests) write no code folder."""
    hyperparameters = {**tiny_hyperparameters, "epochs": "1", "sagemaker_program": "steps/train.py", "sagemaker_region": "eu-west-1"}
    root = make_job(tmp_path / "job", tiny_processed, hyperparameters)
    done = subprocess.run([sys.executable, "-m", "steps.train", "--root", str(root), "--workers", "1"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "model" / "code" / "steps" / "inference.py").is_file()
    assert (root / "model" / "code" / "requirements.txt").is_file()
    answer = predict_fn(input_fn(jpeg(), "application/x-image"), model_fn(str(root / "model")))
    assert answer.shape == (1, 4) and abs(float(answer.sum()) - 1.0) < 1e-5
