"""The processing step's policy for one input file: the JPEG bytes stored in its record, or
the reason it cannot be used (decoding is steps/imaging.py's). Runs in the worker processes:

- JPEGs are checked (end-of-image marker, header) and decoded with the fast integer DCT
  (bit-for-bit deterministic, a third faster than cv2.imdecode), straight at 1/2, 1/4 or
  1/8 scale when the target is at most that big (not 5/8 or 3/4: libjpeg's scaled IDCT is
  slower there than a full decode); too many pixels even at 1/8 is refused;
- before any decode, every input's header is checked (steps/imaging.py `check_decodable`):
  over MAX_SOURCE_PIXELS at full size, or needing more than MAX_DECODE_BYTES of decoder
  memory (a progressive JPEG buffers every coefficient of its full size), it is skipped;
- CMYK JPEGs, EXIF-rotated JPEGs (turned upright, as im2rec's cv2.imread does), PNG (also
  16-bit, grey, with alpha; refused over MAX_PIXELS) and other formats OpenCV reads are
  decoded by OpenCV to 8-bit BGR, with a note saying so;
- the result is resized like im2rec (shorter side to N, INTER_LINEAR) or to an exact
  size, and encoded as a JPEG with 4:2:0 chroma like OpenCV's default.

    >>> convert(b"", Target.keep(), 95, False).reason
    'empty file'
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from steps.imaging import (CMYK_COLORSPACES, DEFAULT_MAX_DECODE_BYTES, ImageError, check_decodable, decode_jpeg,
                           decode_opencv, encode_jpeg, exif_orientation, probe, resize, sniff)

MAX_PIXELS = 16_000_000  # decoded pixels per image: larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale
# Full-size pixels per input, whatever the decode scale: a 16000x16000 JPEG is still read
# whole. Far above any camera's frame; the memory cap below is the one that bites first.
MAX_SOURCE_PIXELS = 256_000_000
MAX_DECODE_BYTES = DEFAULT_MAX_DECODE_BYTES  # estimated decoder memory per input, per worker process
_EOI_SEARCH = 4096  # a JPEG's end-of-image marker must be this close to the end


@dataclass(frozen=True)
class Target:
    """The stored size: unchanged, shorter side = `size`, or exactly `width` x `height`."""

    mode: str  # "keep", "shorter" or "exact"
    size: int = 0
    width: int = 0
    height: int = 0

    @classmethod
    def keep(cls) -> Target:
        return cls("keep")

    @classmethod
    def shorter(cls, size: int) -> Target:
        return cls("shorter", size=size)

    @classmethod
    def exact(cls, width: int, height: int) -> Target:
        return cls("exact", width=width, height=height)

    @classmethod
    def parse(cls, text: str | int | None) -> Target:
        """'256' (shorter side), '64x48' (width x height) or '3,48,64' (an image_shape)."""
        if text is None or str(text).strip().lower() in ("", "none", "0"):
            return cls.keep()
        value = str(text).strip().lower()
        try:
            if "," in value:
                parts = [int(part) for part in value.split(",")]
                if len(parts) != 3 or parts[0] not in (1, 3):
                    raise ValueError
                target = cls.exact(parts[2], parts[1])
            elif "x" in value:
                width, height = (int(part) for part in value.split("x"))
                target = cls.exact(width, height)
            else:
                target = cls.shorter(int(value))
        except ValueError:
            raise ValueError(
                f"resize {text!r} is not a size: use N (shorter side), WxH, or an image_shape like 3,48,64"
            ) from None
        if min(target.size or target.width, target.size or target.height) < 1:
            raise ValueError(f"resize {text!r} must be at least 1 pixel")
        return target

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of this size after resizing, with im2rec's rounding."""
        if self.mode == "shorter":
            if height > width:
                return self.size, height * self.size // width
            return width * self.size // height, self.size
        if self.mode == "exact":
            return self.width, self.height
        return width, height

    def describe(self) -> str | None:
        """The setting as `parse` reads it: '256', '64x48', or None for no resizing."""
        return {"keep": None, "shorter": str(self.size), "exact": f"{self.width}x{self.height}"}[self.mode]


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: `payload` to store, or `reason` it was skipped; `note` on conversion."""

    payload: bytes | None = None
    reason: str | None = None
    note: str | None = None


def convert(data: bytes, target: Target, quality: int, pass_through: bool) -> Outcome:
    """The bytes to store for one input file (never raises for bad input)."""
    try:
        if not data:
            raise ImageError("empty file")
        kind = sniff(data)
        if kind == "JPEG":
            return _convert_jpeg(data, target, quality, pass_through)
        header = probe(data, kind)  # refuses unknown content
        check_decodable(header, 1, MAX_SOURCE_PIXELS, MAX_DECODE_BYTES)  # OpenCV decodes these at full size
        if kind == "PNG":
            note = f"PNG ({header.depth}-bit {header.colorspace}) converted to 8-bit BGR JPEG"
        else:
            note = f"{kind} converted to JPEG"
        image = decode_opencv(data, cv2.IMREAD_COLOR, kind)
        if pass_through:
            note += " (pass-through keeps only JPEG bytes)"
        return Outcome(payload=encode_jpeg(_resize(image, target), quality), note=note)
    except ImageError as error:
        return Outcome(reason=str(error))
    except (cv2.error, ValueError, MemoryError) as error:  # a decoder's own complaint
        return Outcome(reason=f"cannot decode: {str(error).strip().splitlines()[-1][:200]}")


def _convert_jpeg(data: bytes, target: Target, quality: int, pass_through: bool) -> Outcome:
    if data.rfind(b"\xff\xd9", max(0, len(data) - _EOI_SEARCH)) < 0:
        raise ImageError("truncated JPEG: no end-of-image marker")
    header = probe(data, "JPEG")
    width, height, colorspace = header.width, header.height, header.colorspace
    orientation = 1 if pass_through else exif_orientation(data)
    if orientation >= 5:  # turned a quarter: the stored size is the other way round
        width, height = height, width
    factor = _reduction(width, height, target)
    check_decodable(header, factor, MAX_SOURCE_PIXELS, MAX_DECODE_BYTES)
    if colorspace in CMYK_COLORSPACES or orientation != 1:
        # OpenCV converts CMYK and applies EXIF orientation, as im2rec's cv2.imread does
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        image = decode_opencv(data, flag, f"{colorspace} JPEG")
        notes = ["CMYK JPEG converted to BGR"] if colorspace in CMYK_COLORSPACES else []
        if orientation != 1:
            notes.append(f"turned upright (EXIF orientation {orientation})")
        return Outcome(payload=encode_jpeg(_resize(image, target), quality), note="; ".join(notes))
    if pass_through and colorspace != "Gray" and factor == 1:
        # decode only to prove the bytes are whole; at 1/8 scale that is cheap
        decode_jpeg(data, "GRAY", fast=True, min_factor=8)
        return Outcome(payload=data)
    image = decode_jpeg(data, "BGR", fast=True, min_factor=factor)
    notes = []
    if colorspace == "Gray":
        notes.append("greyscale JPEG converted to 3-channel BGR")
    if factor > 1 and (pass_through or target.mode == "keep"):
        notes.append(f"{width}x{height} JPEG too large: decoded at 1/{factor} scale")
    if pass_through and notes:
        notes.append("re-encoded instead of passed through")
    note = "; ".join(notes) or None
    return Outcome(payload=encode_jpeg(_resize(image, target), quality), note=note)


def _reduction(width: int, height: int, target: Target) -> int:
    """1, 2, 4 or 8: the smallest decode that still covers the target, and fits MAX_PIXELS.

    >>> _reduction(640, 480, Target.shorter(48)), _reduction(640, 480, Target.shorter(256))
    (8, 1)
    """
    def pixels(factor: int) -> int:  # libjpeg rounds scaled sizes up
        return -(-width // factor) * -(-height // factor)

    out_width, out_height = target.output_size(width, height)
    chosen = 1
    if target.mode != "keep":
        chosen = next((factor for factor in (8, 4, 2)
                       if -(-width // factor) >= out_width and -(-height // factor) >= out_height), 1)
    while chosen < 8 and pixels(chosen) > MAX_PIXELS:
        chosen *= 2
    if pixels(chosen) > MAX_PIXELS:
        raise ImageError.too_large("JPEG", width, height)
    return chosen


def _resize(image: np.ndarray, target: Target) -> np.ndarray:
    """im2rec's resize: cv2.INTER_LINEAR whichever way, to the target's size."""
    height, width = image.shape[:2]
    size = target.output_size(width, height)
    if size == (width, height):
        return image
    return resize(image, *size, interpolation=cv2.INTER_LINEAR)
