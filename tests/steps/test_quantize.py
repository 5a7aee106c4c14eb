"""steps.quantize and the served precision: the int8 graph beside fp32 in model.tar.gz, model.json's
"serving" section, Predictor and `python -m steps.serve` picking the graph it names, fp32 one
flag away (issue 18)."""
from __future__ import annotations

import json
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from steps.export import export_model_archive
from steps.imaging import decode
from steps.model import ResNet, ResNetConfig
from steps.model_archive import ModelArchiveError, read_served_model
from steps.predictor import Predictor

ServeProcess = Callable[..., tuple[subprocess.Popen[bytes], int]]


def frames(count: int) -> list[bytes]:
    rng = np.random.default_rng(3)
    return [cv2.imencode(".jpg", cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480)))[1].tobytes()
            for _ in range(count)]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    network = ResNet(ResNetConfig(num_layers=20, num_classes=10))
    calibration = np.stack([cv2.resize(decode(data, "RGB", 48, 64), (64, 48), interpolation=cv2.INTER_AREA)
                            .transpose(2, 0, 1) for data in frames(32)]).astype(np.float32)
    return export_model_archive(network, tmp_path_factory.mktemp("int8"), (3, 48, 64), calibration=calibration,
                                calibration_source="32 test frames")


def test_the_archive_holds_both_graphs_and_says_which_is_served_and_how_int8_was_made(quantized: Path) -> None:
    with tarfile.open(quantized) as tar:
        assert sorted(tar.getnames()) == ["model.int8.onnx", "model.json", "model.onnx", "model.pt"]
        serving = json.loads(tar.extractfile("model.json").read())["serving"]
    times = serving["single_image_ms"]
    assert serving["served"] == ("int8" if times["int8"] <= 0.95 * times["fp32"] else "fp32")
    int8 = serving["int8"]
    assert (int8["format"], int8["calibration"]["images"], int8["calibration"]["source"]) == ("QDQ", 32, "32 test frames")
    assert int8["class_agreement_with_fp32"] >= 0.9


def test_the_first_convolution_and_the_classifier_head_stay_float_and_the_rest_is_int8(quantized: Path) -> None:
    import onnx

    with tarfile.open(quantized) as tar:
        graph = onnx.load_from_string(tar.extractfile("model.int8.onnx").read()).graph
    made_by = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name for tensor in graph.initializer}

    def weight_is_int8(node: onnx.NodeProto) -> bool:  # its weight comes through a DequantizeLinear
        producer = made_by.get(node.input[1])
        return producer is not None and producer.op_type == "DequantizeLinear"

    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    first = convolutions[0]  # ONNX lists nodes in topological order
    assert first.input[1] in initializers and not weight_is_int8(first)  # float weights
    assert made_by[first.input[0]].op_type != "DequantizeLinear"  # and float pixels in
    assert all(weight_is_int8(node) for node in convolutions if node is not first)
    assert [node.op_type for node in graph.node if node.op_type in ("Gemm", "Softmax")] == ["Gemm", "Softmax"]
    assert not any(weight_is_int8(node) for node in graph.node if node.op_type == "Gemm")


def test_the_predictor_serves_what_model_json_names_and_fp32_when_asked(quantized: Path) -> None:
    served = json.loads(tarfile.open(quantized).extractfile("model.json").read())["serving"]["served"]
    assert Predictor(quantized, threads=1).precision == served
    fp32, int8 = Predictor(quantized, threads=1, precision="fp32"), Predictor(quantized, threads=1, precision="int8")
    images = frames(16)
    exact, quantized_rows = fp32.predict_images(images), int8.predict_images(images)
    assert (exact.argmax(1) == quantized_rows.argmax(1)).mean() >= 0.9
    assert np.abs(exact - quantized_rows).max() < 0.1 and np.allclose(quantized_rows.sum(1), 1, atol=1e-4)


def test_an_archive_without_int8_serves_fp32_and_refuses_int8_by_name(archive: Path) -> None:
    assert read_served_model(archive)[2] == "fp32"
    with pytest.raises(ModelArchiveError, match="has no model.int8.onnx for precision int8"):
        read_served_model(archive, "int8")
    with pytest.raises(ModelArchiveError, match="precision 'int4' is not one of"):
        read_served_model(archive, "int4")


def test_the_server_says_its_precision_and_takes_fp32_as_a_flag(quantized: Path, tmp_path: Path,
                                                               serve_process: ServeProcess) -> None:
    served = Predictor(quantized, threads=1).precision
    for index, (args, expected) in enumerate((((), served), (("--precision", "fp32"), "fp32"))):
        (tmp_path / str(index)).mkdir()
        process, port = serve_process(quantized, tmp_path / str(index), *args)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as response:
                assert json.loads(response.read())["precision"] == expected
        finally:
            process.terminate()
            process.wait(timeout=15)


@pytest.mark.parametrize(("size", "decoded"), [((640, 480), (80, 60)), ((320, 240), (80, 60)), ((200, 150), (75, 57)),
                                               ((130, 100), (65, 50)), ((64, 48), (64, 48)), ((1920, 1080), (240, 135))])
def test_each_jpeg_decodes_at_the_smallest_scale_still_covering_the_model_input(
        size: tuple[int, int], decoded: tuple[int, int]) -> None:
    """libjpeg-turbo scales by n/8; the scale is chosen per image from its header."""
    data = cv2.imencode(".jpg", np.zeros((size[1], size[0], 3), np.uint8))[1].tobytes()
    assert decode(data, "RGB", 48, 64).shape[1::-1] == decoded
