"""The training input pipeline: RecordIO image records -> augmented uint8 batches.

    channel dir (*.rec [+ .idx]) --scan_channel--> RecordIndex (file, offset, label per record)
    RecordImageDataset[(epoch, i)] -> read record -> decode JPEG -> [resize shorter side]
        -> augment per augmentation_type, or fit to image_shape -> uint8 tensor C,H,W

Decoding and the resize rules are steps/imaging.py's, shared with serving, so a served
image is preprocessed exactly as a validation image is here.

Batches stay uint8 until they reach the model (which converts and normalizes): a quarter of
the bytes of float32 through the worker queues.

Every random choice for a sample comes from a generator seeded by (seed, epoch, index), so
an epoch's crops and its order are the same whatever the number of workers, and a job
resumed from a checkpoint sees the same data it would have seen without the interruption.

Augmentations follow the built-in algorithm's `augmentation_type`:

- crop: a random crop (64-100% of the area, the image's aspect ratio) and a horizontal flip
  with probability 1/2. Beware: for driver images a flip swaps "texting - right" and
  "texting - left", so mirrored samples carry the wrong label for c1-c4.
- crop_color: crop, plus random shifts of hue (+-36 degrees), saturation and lightness
  (+-50 of 255) in HLS space.
- crop_color_transform: crop_color, plus a random affine transform: rotation up to 10
  degrees, shear up to 0.1, aspect-ratio change up to 25%.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from steps.imaging import ImageError, decode, fit, resize, resize_shorter_side
from steps.recordio import RecordIOError, read_record, unpack


class DataError(ValueError):
    """A channel that is missing, empty or holds records this job cannot use."""


@dataclass(frozen=True)
class RecordIndex:
    """Where each record of a channel is, and its label; built once, in the main process."""

    files: tuple[Path, ...]
    file_of: np.ndarray  # int32, which of `files` holds record i
    offsets: np.ndarray  # int64, byte offset of record i
    labels: np.ndarray  # int64, class index of record i

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


def scan_channel(channel: Path, num_classes: int) -> RecordIndex:
    """Read every record header of a channel's *.rec files, checking labels on the way.

    Reading them all up front (a few MB per thousand images) finds a corrupt file or a
    label outside 0..num_classes-1 before training starts, not in epoch 7. The .idx files
    are not needed for this; records are found by walking the framing.
    """
    if not channel.is_dir():
        raise DataError(f"channel directory {channel} does not exist")
    files = tuple(sorted(channel.glob("*.rec")))
    if not files:
        raise DataError(f"channel {channel.name} ({channel}) has no .rec file")
    file_of: list[int] = []
    offsets: list[int] = []
    labels: list[int] = []
    for number, path in enumerate(files):
        with open(path, "rb") as handle:
            while True:
                offset = handle.tell()
                try:
                    record = read_record(handle, f"{path} at byte {offset}")
                    if record is None:
                        break
                    header, _ = unpack(record)
                except RecordIOError as error:
                    raise DataError(str(error)) from None
                label = float(np.asarray(header.label).reshape(-1)[0])
                if label != int(label) or not 0 <= label < num_classes:
                    raise DataError(
                        f"{path} record {len(labels)} (id {header.id}) has label {label:g}, "
                        f"outside 0..{num_classes - 1} (num_classes={num_classes})"
                    )
                file_of.append(number)
                offsets.append(offset)
                labels.append(int(label))
    if not labels:
        raise DataError(f"channel {channel.name}: {', '.join(str(path) for path in files)} hold no records")
    return RecordIndex(files, np.array(file_of, np.int32), np.array(offsets, np.int64), np.array(labels, np.int64))


# ---------------------------------------------------------------------------------------
# decoding and augmentation: uint8 HxWxC arrays in, uint8 HxWxC arrays out


def decode_record(payload: bytes, channels: int, smallest: tuple[int, int] | None = None) -> np.ndarray:
    """A record's image -> RGB (3 channels) or grey (1), reduced-scale when `smallest` (h, w) allows."""
    try:
        return decode(payload, "RGB" if channels == 3 else "GRAY", *(smallest or (0, 0)))
    except ImageError as error:
        raise DataError(f"a record of {len(payload)} bytes does not hold a decodable image: {error}") from None


def random_crop_flip(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """`crop`: 64-100% of the area at a random place, resized to the output, mirrored half the time."""
    source_height, source_width = image.shape[:2]
    side = math.sqrt(rng.uniform(0.64, 1.0))
    crop_height, crop_width = max(1, round(source_height * side)), max(1, round(source_width * side))
    top = int(rng.integers(0, source_height - crop_height + 1))
    left = int(rng.integers(0, source_width - crop_width + 1))
    out = resize(image[top : top + crop_height, left : left + crop_width], width, height)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def random_color(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`crop_color`'s colour part: hue +-36 degrees, lightness and saturation +-50 (of 255)."""
    if image.shape[2] != 3:
        return image
    hls = cv2.cvtColor(image, cv2.COLOR_RGB2HLS).astype(np.int16)
    hue = int(rng.integers(-36, 37)) // 2  # OpenCV's 8-bit hue is degrees / 2, in 0..179
    hls[..., 0] = (hls[..., 0] + hue) % 180
    hls[..., 1] += int(rng.integers(-50, 51))
    hls[..., 2] += int(rng.integers(-50, 51))
    return cv2.cvtColor(np.clip(hls, 0, 255).astype(np.uint8), cv2.COLOR_HLS2RGB)


def random_affine(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`crop_color_transform`'s geometry: rotation <= 10 degrees, shear <= 0.1, aspect change <= 25%."""
    height, width = image.shape[:2]
    angle = math.radians(rng.uniform(-10, 10))
    shear = rng.uniform(-0.1, 0.1)
    aspect = rng.uniform(0.75, 1.25)
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rotate @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([math.sqrt(aspect), 1 / math.sqrt(aspect)])
    center = np.array([width / 2, height / 2])
    matrix = np.hstack([linear, (center - linear @ center).reshape(2, 1)])
    out = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out.reshape(height, width, image.shape[2])


def augment(
    image: np.ndarray, augmentation_type: str | None, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """One training sample's pixels for the given augmentation_type (None: just fit)."""
    if augmentation_type is None:
        return fit(image, height, width)
    out = random_crop_flip(image, height, width, rng)
    if augmentation_type in ("crop_color", "crop_color_transform"):
        out = random_color(out, rng)
    if augmentation_type == "crop_color_transform":
        out = random_affine(out, rng)
    return out


# ---------------------------------------------------------------------------------------
# dataset, sampler, loader


class RecordImageDataset(Dataset):
    """Items are keyed by (epoch, index), so the epoch can seed the augmentation."""

    def __init__(
        self,
        index: RecordIndex,
        image_shape: tuple[int, int, int],
        augmentation_type: str | None = None,
        resize: int | None = None,
        seed: int = 0,
    ) -> None:
        self.index = index
        self.channels, self.height, self.width = image_shape
        self.augmentation_type = augmentation_type
        self.resize = resize
        self.seed = seed
        self._handles: dict[int, IO[bytes]] = {}  # opened lazily, so each worker has its own

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}

    def _payload(self, position: int) -> bytes:
        number = int(self.index.file_of[position])
        handle = self._handles.get(number)
        if handle is None:
            handle = self._handles[number] = open(self.index.files[number], "rb")
        handle.seek(int(self.index.offsets[position]))
        record = read_record(handle, f"{self.index.files[number]} at byte {self.index.offsets[position]}")
        if record is None:
            raise DataError(f"{self.index.files[number]}: no record at byte {self.index.offsets[position]}")
        return unpack(record)[1]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, position = key
        rng = np.random.default_rng((self.seed, epoch, position))
        # decode at reduced scale, but keep enough pixels for the shorter side or the crop
        if self.resize is not None:
            smallest = (self.resize, self.resize)
        else:
            smallest = (self.height, self.width)
        image = decode_record(self._payload(position), self.channels, smallest)
        if self.resize is not None:
            image = resize_shorter_side(image, self.resize)
        pixels = augment(image, self.augmentation_type, self.height, self.width, rng)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), int(self.index.labels[position])


class EpochSampler(Sampler):
    """Yields (epoch, index) keys: shuffled by (seed, epoch) for training, in order otherwise."""

    def __init__(self, size: int, shuffle: bool, seed: int = 0) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch, 2**31)).permutation(self.size)
        else:
            order = np.arange(self.size)
        return iter([(self.epoch, int(position)) for position in order])


def _init_worker(worker_id: int) -> None:
    """Workers decode and augment; one thread each, so they don't fight the training threads."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_loader(
    dataset: RecordImageDataset, batch_size: int, shuffle: bool, num_workers: int, drop_last: bool = False
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader over `dataset` and the sampler whose set_epoch() picks the epoch's order."""
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=dataset.seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        worker_init_fn=_init_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    return loader, sampler
