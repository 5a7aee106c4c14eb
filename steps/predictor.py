"""The model side of the inference server: load a model archive, turn image bytes into
input tensors, run ONNX Runtime on a batch.

Kept apart from the HTTP code (steps/serve.py) so the benchmark and batch scoring can use
the same preprocessing and session settings without a server. The preprocessing that must
match training's validation is steps/imaging.py's, which training calls too:

    bytes (JPEG/PNG, any size, 1-4 channels) -> decode (reduced-scale for big JPEGs)
      -> RGB uint8 HxWx3 (grey for 1-channel models) -> [shorter side to `resize`]
      -> whole image to image_shape (cv2.INTER_AREA when shrinking) -> float32 NCHW 0..255

The network normalizes by itself (steps/model.py keeps mean/std as buffers inside the
graph) and the exported graph ends in a softmax, so the server neither normalizes nor
post-processes: model.json's mean/std are informational here.

The archive is `model.tar.gz` with `model.onnx` (dynamic batch axis), optionally
`model.int8.onnx`, and `model.json` (classes, image_shape "C,H,W" or [C, H, W], mean, std,
"serving": which graph is served), or a directory holding them, which is what SageMaker
unpacks into /opt/ml/model. steps/model_archive.py reads it, every member size-capped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from steps.imaging import DEFAULT_MAX_DECODE_BYTES, ImageError, Problem, check, decode, fit, resize_shorter_side, sniff
from steps.model_archive import ModelArchiveError, read_served_model

# An image larger than this at full size (whatever scale it would decode at) is refused: a
# 100-byte PNG can claim 60000x60000 pixels and would otherwise take 10 GB to decode. With
# DEFAULT_MAX_DECODE_BYTES (128 MB of estimated decoder memory per image, what bounds a
# worker's memory) it keeps every camera's frame and refuses decompression bombs.
DEFAULT_MAX_PIXELS = 40_000_000


class InvalidImage(ValueError):
    """The bytes are not an image this model can take; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    """What preprocessing and the response need to know, read from model.json."""

    classes: list[str]
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]  # informational: the graph normalizes by itself
    std: tuple[float, ...]
    shorter_side: int | None  # the training `resize` hyperparameter, applied first as in validation
    metadata: dict[str, Any]

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ModelSpec:
        shape = document.get("image_shape")
        if isinstance(shape, str):
            shape = [part.strip() for part in shape.split(",")]
        try:
            channels, height, width = (int(value) for value in shape)  # type: ignore[union-attr]
        except (TypeError, ValueError) as error:
            raise ModelArchiveError(f"model.json image_shape {shape!r} is not 'C,H,W'") from error
        if channels not in (1, 3):
            raise ModelArchiveError(f"model.json image_shape {shape!r}: only 1- (grey) or 3-channel (RGB) models are served")
        classes = document.get("classes")
        if not isinstance(classes, list) or not classes:
            raise ModelArchiveError(f"model.json classes {classes!r} is not a non-empty list")
        mean = tuple(float(value) for value in document.get("mean", ()))
        std = tuple(float(value) for value in document.get("std", ()))
        if len(mean) != len(std):
            raise ModelArchiveError(f"model.json mean {mean!r} and std {std!r} differ in length")
        resize = (document.get("hyperparameters") or {}).get("resize")
        try:
            shorter_side = int(resize) if resize not in (None, "") else None
        except (TypeError, ValueError) as error:
            raise ModelArchiveError(f"model.json hyperparameters.resize {resize!r} is not an integer") from error
        return cls([str(name) for name in classes], channels, height, width, mean, std, shorter_side, document)  # type: ignore[arg-type]


def default_threads() -> int:
    """The cores this process may run on (not the machine's), so a pinned container is honoured."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------- decoding


def check_image(data: bytes, min_height: int, min_width: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> None:
    """`decode_image`'s checks without the decode: format, header, full size and decoder
    memory. Raises InvalidImage with the words decode_image would use."""
    _check_format(data)
    try:
        check(data, "RGB", min_height, min_width, max_pixels, max_bytes)
    except ImageError as error:
        raise InvalidImage(_client_reason(error, max_pixels)) from error


def decode_image(data: bytes, min_height: int, min_width: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """JPEG or PNG bytes -> RGB uint8 array (H, W, 3), at least min_height x min_width when
    the source is that big.

    JPEGs are decoded by libjpeg-turbo at the smallest DCT scale (1/2, 1/4, 1/8) that still
    covers the model input: a 640x480 photo for a 64x48 model decodes at 80x60. Measured on
    a 66 KB frame that is 0.77 ms instead of 1.24: the inverse DCT, upsampling and colour
    conversion shrink 64-fold, but the Huffman pass still reads every coefficient, and it
    is most of what remains. Grey, RGBA and 16-bit inputs come out as 8-bit RGB.
    """
    _check_format(data)
    try:
        return decode(data, "RGB", min_height, min_width, max_pixels, max_bytes)
    except ImageError as error:
        raise InvalidImage(_client_reason(error, max_pixels)) from error


def _check_format(data: bytes) -> None:
    if not data:
        raise InvalidImage("empty body")
    if sniff(data) not in ("JPEG", "PNG"):
        raise InvalidImage(f"body is not a JPEG or PNG image (starts with {data[:8]!r})")


def _client_reason(error: ImageError, max_pixels: int) -> str:
    """The serving API's words for what the decoder refused (kept as clients have seen them)."""
    width, height = error.size
    if error.problem is Problem.TOO_LARGE and error.detail:  # within the pixel cap, over the memory cap
        return f"{error.kind} is {width}x{height} pixels and {error.detail}"
    if error.problem is Problem.TOO_LARGE:
        return f"{error.kind} is {width}x{height} pixels, over the limit of {max_pixels}"
    if error.problem is Problem.HEADER and error.kind == "PNG":
        return "PNG has no IHDR header (truncated or corrupt)"
    if error.problem is Problem.HEADER:
        return f"{error.kind} header is unreadable: {error.detail}"
    return f"{error.kind} is corrupt or truncated" + (f": {error.detail}" if error.detail else "")


# ---------------------------------------------------------------------------- batch size


def cache_bound_batch_size(limit: int, activation_bytes: int | None, cache_bytes: int | None, workers: int) -> int:
    """The largest power of two up to `limit` (or `limit` itself) whose biggest layer, input
    plus output for the whole batch, fits in one worker's share of the last-level cache.

    Past that size a CPU runs a batch slower per image, not faster: measured here (32 MB
    L3, two single-threaded workers), ResNet-18 at 224x224 (3.2 MB for its largest
    activation per image) ran 39-42 images/s at batch sizes 1 to 8 and 29-31 at 16 to 64,
    while the default ResNet-20 at 48x64 (0.2 MB) is as fast at 32 as at 8. Timing the
    sizes at start-up instead was tried and discarded: on two shared cores the timings
    varied by 30% from run to run and picked batch size 1 or 2 for a model where every
    size costs the same. Unknown shapes or cache size leave `limit` as it is.
    """
    if not activation_bytes or not cache_bytes:
        return limit
    fits = cache_bytes // max(1, workers) // (2 * activation_bytes)
    if fits >= limit:
        return limit
    return 1 << (fits.bit_length() - 1) if fits >= 1 else 1


def largest_activation_bytes(onnx_bytes: bytes) -> int | None:
    """Bytes of the largest float tensor one image makes inside the graph, or None when
    shape inference cannot tell (a dimension other than the batch axis is symbolic)."""
    import onnx  # only here: importing it costs 0.2 s that other users of Predictor need not pay

    try:
        graph = onnx.shape_inference.infer_shapes(onnx.load_from_string(onnx_bytes)).graph
    except Exception:  # noqa: BLE001 - an exotic graph just keeps the configured batch size
        return None
    largest = 0
    for value in [*graph.value_info, *graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) < 2:
            continue
        elements = 1
        for dim in dims[1:]:
            if not dim.HasField("dim_value"):
                return None
            elements *= dim.dim_value
        largest = max(largest, elements * 4)  # float32
    return largest or None


def last_level_cache_bytes(cpu: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The size of the highest-level CPU cache Linux reports, or None elsewhere."""
    best: tuple[int, int] | None = None
    for index in Path(cpu).glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
        size = int(text[:-1]) * units[text[-1]] if text and text[-1] in units else int(text or 0)
        if best is None or level > best[0]:
            best = (level, size)
    return best[1] if best else None


# ---------------------------------------------------------------------------- the predictor


class Predictor:
    """An ONNX Runtime session plus the preprocessing its model was trained with.

    `preprocess` is thread-safe and releases the GIL in decode and resize, so a server can
    run it on a thread pool beside `predict`. `predict` takes a batch of any size up to
    what memory allows (the model's batch axis is dynamic).
    """

    def __init__(self, model: str | os.PathLike[str], threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, lone_threads: int | None = None,
                 max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES, precision: str | None = None) -> None:
        # model.json's "serving" section says which graph is served (int8 where it was faster
        # when exported, steps/quantize.py); `precision` ("fp32" or "int8") overrides it.
        onnx_bytes, document, self.precision = read_served_model(model, precision)
        self.spec = ModelSpec.from_json(document)
        self.max_pixels = max_pixels
        self.max_decode_bytes = max_decode_bytes
        self.threads = threads or default_threads()
        self.session = self._load_session(model, onnx_bytes, self.threads)
        # A second session for a batch that has the machine to itself (see `predict`):
        # only worth its memory when it would use more threads than the first.
        self.lone_threads = max(self.threads, lone_threads or self.threads)
        self.lone_session = (self._load_session(model, onnx_bytes, self.lone_threads)
                             if self.lone_threads > self.threads else self.session)
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        batch_axis, *image_axes = graph_input.shape
        expected = [self.spec.channels, self.spec.height, self.spec.width]
        if all(isinstance(axis, int) for axis in image_axes) and list(image_axes) != expected:
            raise ModelArchiveError(f"{model}: model.onnx takes {image_axes} images but model.json image_shape "
                                    f"says {expected}")
        # A graph exported with a fixed batch size takes batches of exactly that size.
        self.fixed_batch = batch_axis if isinstance(batch_axis, int) else None

    @staticmethod
    def _load_session(model: str | os.PathLike[str], onnx_bytes: bytes, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        # One pool of `threads`, no inter-op pool and no spinning: on a shared 2-core
        # machine spinning threads steal the core that decoding or another process needs.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelArchiveError(f"{model}: model.onnx does not load in ONNX Runtime: {error}") from error

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    @property
    def smallest_decode(self) -> tuple[int, int]:
        """(height, width) a decoded image must keep: the model input, or the shorter side first resized to."""
        spec = self.spec
        return (spec.shorter_side,) * 2 if spec.shorter_side else (spec.height, spec.width)

    def check(self, data: bytes) -> None:
        """Refuse, from its header alone, an image `preprocess` would refuse for format, size or
        memory (cheap: a server checks every image of a request before decoding any)."""
        check_image(data, *self.smallest_decode, self.max_pixels, self.max_decode_bytes)

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes -> float32 (3, H, W) ready for the model. Raises InvalidImage."""
        image = decode_image(data, *self.smallest_decode, self.max_pixels, self.max_decode_bytes)
        return self.normalize(image)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (h, w, 3) of any size -> float32 (C, H, W) in 0..255, as validation feeds it
        in training, with the same functions (steps/imaging.py: optional shorter-side resize,
        then the whole image to W x H, INTER_AREA when the area shrinks, else INTER_LINEAR; no crop)."""
        spec = self.spec
        if spec.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
        if spec.shorter_side:
            image = resize_shorter_side(image, spec.shorter_side)
        image = fit(image, spec.height, spec.width)
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)

    def predict(self, batch: np.ndarray, alone: bool = False) -> np.ndarray:
        """float32 (N, C, H, W) -> probabilities (N, num_classes), from the graph's softmax.

        `alone=True` runs on the `lone_threads` session: for a batch nothing else competes
        with (a lone request on an idle server), so its latency is not one core's worth.
        """
        session = self.lone_session if alone else self.session
        if self.fixed_batch is None or len(batch) == self.fixed_batch:
            return session.run(None, {self.input_name: batch})[0]
        rows = []
        for start in range(0, len(batch), self.fixed_batch):
            chunk = batch[start:start + self.fixed_batch]
            padded = np.concatenate([chunk, np.zeros((self.fixed_batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            rows.append(session.run(None, {self.input_name: padded})[0][: len(chunk)])
        return np.concatenate(rows)

    def run_batch(self, images: list[bytes], alone: bool = False) -> list[np.ndarray | InvalidImage]:
        """The server's batch step: decode each image and run the valid ones as one batch.

        A corrupt image fails alone: its slot holds the InvalidImage, the others their rows.
        """
        slots: list[np.ndarray | InvalidImage] = []
        tensors: list[np.ndarray] = []
        for data in images:
            try:
                tensors.append(self.preprocess(data))
                slots.append(tensors[-1])
            except InvalidImage as error:
                slots.append(error)
        if not tensors:
            return slots
        rows = iter(self.predict(np.stack(tensors), alone))
        return [slot if isinstance(slot, InvalidImage) else next(rows) for slot in slots]

    def run_batch_alone(self, images: list[bytes]) -> list[np.ndarray | InvalidImage]:
        """`run_batch` on every core, for a batch that has the machine to itself."""
        return self.run_batch(images, alone=True)

    def predict_images(self, images: list[bytes]) -> np.ndarray:
        """Convenience for scripts and tests: bytes in, probabilities out, one batch."""
        return self.predict(np.stack([self.preprocess(data) for data in images]))

