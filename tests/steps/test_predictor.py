"""The predictor: model archives, decoding of every kind of image, and the batch forward pass."""
from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from steps.export import export_model_archive
from steps.imaging import fit
from steps.model import Probabilities, ResNet, ResNetConfig
from steps.model_archive import read_model_archive
from steps.predictor import (InvalidImage, ModelArchiveError, Predictor, cache_bound_batch_size, decode_image,
                             largest_activation_bytes, last_level_cache_bytes)
from steps.training_data import decode_record

CLASSES = [f"c{index}" for index in range(10)]


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def network() -> ResNet:
    torch.manual_seed(0)
    return ResNet(ResNetConfig(num_layers=20, num_classes=len(CLASSES))).eval()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, network: ResNet) -> Path:
    return export_model_archive(network, tmp_path_factory.mktemp("model"), (3, 48, 64), CLASSES)


def photo(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A smooth RGB image (JPEG-friendly), so decode at reduced scale stays close to full decode."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def encode(image_rgb: np.ndarray, extension: str = ".jpg") -> bytes:
    ok, data = cv2.imencode(extension, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def test_probabilities_match_the_torch_model_on_the_same_pixels(archive: Path, network: ResNet) -> None:
    predictor = Predictor(archive, threads=1)
    image = photo()
    tensor = predictor.normalize(image)
    with torch.no_grad():
        expected = Probabilities(network)(torch.from_numpy(tensor[None])).numpy()
    got = predictor.predict(tensor[None])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got.shape == (1, 10) and abs(float(got.sum()) - 1.0) < 1e-4


@pytest.mark.parametrize(("height", "width"), [(480, 640), (30, 40), (48, 64), (100, 60)])
def test_preprocessing_is_the_validation_preprocessing_of_training(archive: Path, height: int, width: int) -> None:
    data = encode(photo(height, width, seed=height))
    expected = fit(decode_record(data, 3, (48, 64)), 48, 64).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(Predictor(archive, threads=1).preprocess(data), expected)


def test_input_is_rgb_in_0_255_resized_to_the_model_shape(archive: Path) -> None:
    predictor = Predictor(archive, threads=1)
    red = np.zeros((96, 128, 3), dtype=np.uint8)
    red[..., 0] = 200
    tensor = predictor.normalize(red)
    assert tensor.shape == (3, 48, 64) and tensor.dtype == np.float32
    assert tensor[0].mean() == pytest.approx(200.0) and tensor[1:].max() == 0.0


def test_a_large_jpeg_decodes_at_reduced_scale_but_still_covers_the_model_input() -> None:
    data = encode(photo(480, 640))
    image = decode_image(data, 48, 64)
    assert image.shape == (60, 80, 3)  # 1/8 scale: the smallest that is still >= 48x64
    full = decode_image(data, 480, 640)
    assert full.shape == (480, 640, 3)
    shrunk = cv2.resize(full, (80, 60), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shrunk - image.astype(int)).mean() < 4


@pytest.mark.parametrize(("channels", "extension"), [(1, ".png"), (3, ".png"), (4, ".png"), (1, ".jpg"), (3, ".jpg")])
def test_any_channel_count_comes_out_rgb(archive: Path, channels: int, extension: str) -> None:
    image = photo(30, 40)
    pixels = {1: image[..., 0], 3: cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
              4: cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)}[channels]
    ok, data = cv2.imencode(extension, pixels)
    assert ok
    predictor = Predictor(archive, threads=1)
    assert predictor.preprocess(data.tobytes()).shape == (3, 48, 64)


def test_sixteen_bit_png_is_served() -> None:
    ok, data = cv2.imencode(".png", (photo(20, 20).astype(np.uint16) * 257))
    assert ok
    assert decode_image(data.tobytes(), 48, 64).dtype == np.uint8


def _png_claiming(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty body"),
    (b"GIF89a....", "not a JPEG or PNG"),
    (b"\xff\xd8\xff\xe0 not really", "JPEG"),
    (_png_claiming(60000, 60000), "over the limit"),
    (b"\x89PNG\r\n\x1a\n", "IHDR"),
])
def test_bad_bytes_are_invalid_images_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode_image(data, 48, 64)


def test_truncated_jpeg_and_png_are_invalid() -> None:
    for extension in (".jpg", ".png"):
        data = encode(photo(), extension)
        with pytest.raises(InvalidImage):
            decode_image(data[: len(data) // 3], 48, 64)


def test_archives_without_the_model_files_are_refused_by_name(tmp_path: Path) -> None:
    broken = write_archive(tmp_path / "broken.tar.gz", {"model.json": b"{}"})
    with pytest.raises(ModelArchiveError, match="no model.onnx"):
        Predictor(broken)
    with pytest.raises(ModelArchiveError, match="does not exist"):
        Predictor(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(ModelArchiveError, match="not a readable tar"):
        Predictor(tmp_path / "junk.tar.gz")


def test_a_directory_like_opt_ml_model_is_served(tmp_path: Path, archive: Path) -> None:
    with tarfile.open(archive) as opened:
        opened.extractall(tmp_path, filter="data")
    predictor = Predictor(tmp_path, threads=1)
    assert predictor.classes == CLASSES


def test_a_graph_with_a_fixed_batch_size_still_serves_any_number_of_images(tmp_path: Path, network: ResNet) -> None:
    buffer = io.BytesIO()
    torch.onnx.export(Probabilities(network).eval(), (torch.zeros(1, 3, 48, 64),), buffer, dynamo=False)
    document = b'{"classes": ["a","b","c","d","e","f","g","h","i","j"], "image_shape": "3,48,64"}'
    archive = write_archive(tmp_path / "fixed.tar.gz", {"model.onnx": buffer.getvalue(), "model.json": document})
    predictor = Predictor(archive, threads=1)
    assert predictor.fixed_batch == 1
    images = [encode(photo(seed=seed)) for seed in range(3)]
    together = predictor.predict_images(images)
    one_by_one = np.stack([predictor.predict_images([image])[0] for image in images])
    assert together.shape == (3, 10)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_model_json_that_disagrees_with_the_graph_is_refused(tmp_path: Path, archive: Path) -> None:
    with tarfile.open(archive) as opened:
        onnx_model = opened.extractfile("model.onnx").read()  # type: ignore[union-attr]
    document = b'{"classes": ["a"], "image_shape": "3,224,224"}'
    wrong = write_archive(tmp_path / "wrong.tar.gz", {"model.onnx": onnx_model, "model.json": document})
    with pytest.raises(ModelArchiveError, match=r"takes \[3, 48, 64\] images but model.json image_shape says \[3, 224, 224\]"):
        Predictor(wrong)


def test_a_twelve_megapixel_photo_decodes_at_one_eighth_and_a_tiny_one_is_upscaled(archive: Path) -> None:
    predictor = Predictor(archive, threads=1)
    big = encode(photo(3000, 4000))
    assert decode_image(big, 48, 64).shape == (375, 500, 3)
    assert predictor.preprocess(big).shape == (3, 48, 64)
    assert predictor.preprocess(encode(photo(1, 1), ".png")).shape == (3, 48, 64)


def test_the_lone_session_uses_more_threads_and_gives_the_same_probabilities(archive: Path) -> None:
    predictor = Predictor(archive, threads=1, lone_threads=2)
    assert predictor.lone_session is not predictor.session
    batch = np.stack([predictor.preprocess(encode(photo(seed=seed))) for seed in range(3)])
    np.testing.assert_allclose(predictor.predict(batch, alone=True), predictor.predict(batch), rtol=1e-5, atol=1e-6)
    single = Predictor(archive, threads=2, lone_threads=1)
    assert single.lone_session is single.session and single.lone_threads == 2  # never fewer threads than a worker


def test_the_batch_size_is_capped_where_a_batch_outgrows_the_workers_cache_share() -> None:
    mb = 1024 * 1024
    resnet18_224 = 3_211_264  # its largest activation per image, 64x112x112 float32
    assert cache_bound_batch_size(32, resnet18_224, 32 * mb, workers=2) == 2
    assert cache_bound_batch_size(32, resnet18_224, 32 * mb, workers=1) == 4
    assert cache_bound_batch_size(32, 196_608, 32 * mb, workers=2) == 32  # the default ResNet-20 at 48x64
    assert cache_bound_batch_size(12, 100_000, 32 * mb, workers=2) == 12
    assert cache_bound_batch_size(32, 64 * mb, 32 * mb, workers=2) == 1
    assert cache_bound_batch_size(32, None, 32 * mb, workers=2) == 32
    assert cache_bound_batch_size(32, resnet18_224, None, workers=2) == 32


def test_the_largest_activation_comes_from_the_graph_shapes(archive: Path) -> None:
    onnx_bytes, _ = read_model_archive(archive)
    assert largest_activation_bytes(onnx_bytes) == 16 * 48 * 64 * 4  # the first stage: 16 channels


def test_the_last_level_cache_is_read_from_sysfs(tmp_path: Path) -> None:
    for index, (level, size) in enumerate([(1, "32K"), (2, "512K"), (3, "16384K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(str(tmp_path)) == 16 * 1024 * 1024
    assert last_level_cache_bytes(str(tmp_path / "missing")) is None
