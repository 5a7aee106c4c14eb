"""int8 static quantization of the exported graph, beside the fp32 one (issue 18).

ONNX Runtime's static quantization in QDQ form: weights int8 per output channel,
activations uint8 per tensor, the activation ranges calibrated (MinMax) on training images
preprocessed exactly as the server preprocesses a request (whole image fitted to
image_shape, float32 0..255). The graph is first put through ORT's quantization
pre-processing (shape inference and graph optimization: BatchNorm folded into the
convolutions before their weights are quantized). The network's first and last layers
stay in float, the usual recipe:
- the classifier head (Gemm) and the softmax: quantized, the probabilities came out in steps
  of 1/255, zeros included, and a zero on the true class makes log loss (the quality gate's
  metric) blow up; keeping them costs nothing measurable (0.91 ms either way);
- the first convolution, which sees the raw pixels. Measured on a ResNet-18 at 224x224 (six
  epochs on synthetic drivers, 250 validation images, three calibration samples each):
  with it quantized, log loss rose by 0.013-0.018 over fp32 and 0.8% of the answers changed
  class; in float, by 0.004-0.009 with 0-0.4% changed. It costs that model 7.5 -> 11.2 ms per
  image (still half of fp32's 24 ms) and the default ResNet-20 at 48x64 nothing (0.89 ms).
The calibration sample is 512 training images: with 128, the ranges of the deeper layers
moved from sample to sample enough to change the log loss by 0.005.

Measured on this machine kind (2 cores), the default ResNet-20 at 3x48x64, one image on
one thread: fp32 2.2 ms, int8 0.9 ms; classes agreed on 64 of 64 calibration images.

`export.write_model_dir` writes the result as model.int8.onnx and records in model.json
which of the two the endpoint serves by default ("serving"), the single-image times it
measured to choose, and how the int8 graph was calibrated. steps/predictor.py reads it.
"""
from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from steps.model_archive import PRECISIONS

log = logging.getLogger("steps.quantize")

INT8_FILE = PRECISIONS["int8"]
CALIBRATION_IMAGES = 512  # stable MinMax ranges (see above); ~4 s of calibration for the default model
FASTER_BY = 0.95  # int8 is served by default when it takes at most 95% of fp32's time
FLOAT_OPS = ("Gemm", "MatMul", "Softmax")  # the classifier head stays float (see above)


def quantize_int8(onnx_bytes: bytes, calibration: np.ndarray, input_name: str = "input") -> bytes:
    """The fp32 graph `onnx_bytes` quantized to int8 (QDQ, per-channel weights), activation
    ranges calibrated on `calibration`, float32 (N, C, H, W) as the server feeds the graph."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration.ndim != 4 or not len(calibration):
        raise ValueError(f"calibration images must be a non-empty (N, C, H, W) array, not {calibration.shape}")

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calibration.astype(np.float32))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {input_name: row[None]}

    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        fp32, prepared, int8 = (Path(scratch) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(onnx_bytes)
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(str(prepared), str(int8), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_nodes(onnx.load(str(prepared))))
        return int8.read_bytes()


def float_nodes(model: Any) -> list[str]:
    """Names of the nodes kept in float: the classifier head and the first convolution (ONNX
    lists nodes in topological order, so the first Conv listed is the one nearest the pixels)."""
    nodes = model.graph.node
    first = next((node for node in nodes if node.op_type == "Conv"), None)
    return [node.name for node in nodes if node.op_type in FLOAT_OPS or node is first]


def single_image_ms(onnx_bytes: bytes, image: np.ndarray, runs: int = 200, budget: float = 1.5) -> float:
    """Median time of one image through the graph on one ONNX Runtime thread (the server's
    setting): `runs` runs, or as many as fit in `budget` seconds for a big model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = image[None].astype(np.float32)
    for _ in range(10):
        session.run(None, {name: batch})
    times: list[float] = []
    stop_at = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 5 or time.perf_counter() < stop_at):
        started = time.perf_counter()
        session.run(None, {name: batch})
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def agreement(fp32: bytes, int8: bytes, images: np.ndarray) -> float:
    """Share of `images` on which the two graphs pick the same class."""
    import onnxruntime as ort

    answers = []
    for graph in (fp32, int8):
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        answers.append(session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0].argmax(1))
    return float((answers[0] == answers[1]).mean())


def int8_variant(onnx_bytes: bytes, calibration: np.ndarray, source: str) -> tuple[bytes, dict[str, Any]]:
    """(model.int8.onnx bytes, model.json's "serving" section): quantize, time both graphs
    (alternating, twice, keeping each one's best median), pick the served one."""
    started = time.perf_counter()
    int8 = quantize_int8(onnx_bytes, calibration)
    seconds = time.perf_counter() - started
    fp32_ms = int8_ms = float("inf")
    for _ in range(2):
        fp32_ms = min(fp32_ms, single_image_ms(onnx_bytes, calibration[0]))
        int8_ms = min(int8_ms, single_image_ms(int8, calibration[0]))
    served = "int8" if int8_ms <= FASTER_BY * fp32_ms else "fp32"
    agreed = agreement(onnx_bytes, int8, calibration)
    log.info("int8: %.2f ms vs fp32 %.2f ms per image; same class on %.1f%% of the calibration images; serving %s",
             int8_ms, fp32_ms, 100 * agreed, served)
    section = {
        "served": served,
        "files": dict(PRECISIONS),
        "single_image_ms": {"fp32": round(fp32_ms, 3), "int8": round(int8_ms, 3)},
        "rule": f"int8 when its single-image time (1 thread) is at most {FASTER_BY:.0%} of fp32's on the exporting machine",
        "int8": {
            "method": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "weights": "int8, per output channel",
            "activations": "uint8, per tensor",
            "kept_in_float": "the first convolution (raw pixels in) and the classifier head (Gemm) and softmax "
                             "(probabilities are not rounded to 1/255)",
            "calibration": {"method": "MinMax", "images": int(len(calibration)), "source": source,
                            "preprocessing": "as served: whole image fitted to image_shape, float32 0..255"},
            "class_agreement_with_fp32": round(agreed, 4),
            "quantize_seconds": round(seconds, 2),
        },
    }
    return int8, section
