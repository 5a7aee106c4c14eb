"""One input file -> the JPEG bytes stored in a record, or the reason it cannot be used.

Runs in the processing step's worker processes, so it stays small and fast:

- the kind of file is told from its first bytes, not its name;
- JPEGs are checked (end-of-image marker, header) and decoded by libjpeg-turbo through
  simplejpeg with the fast integer DCT, which is bit-for-bit deterministic and about a
  third faster than cv2.imdecode; when the target is at most half the source size they
  are decoded straight at 1/2, 1/4 or 1/8 scale (much less work; at 5/8 or 3/4 libjpeg's
  scaled IDCT is slower than a full decode, so those are not used);
- CMYK JPEGs, JPEGs with an EXIF orientation (turned upright, as cv2.imread does for
  im2rec), PNG (also 16-bit, grey, with alpha) and other formats OpenCV reads are decoded
  by OpenCV and converted to 8-bit BGR, with a note saying so;
- huge images are decoded at reduced scale (JPEG) or refused (others) before they can
  take gigabytes of memory;
- the result is resized like im2rec (shorter side to N, INTER_LINEAR) or to an exact
  size, and encoded as a JPEG with 4:2:0 chroma like OpenCV's default.

    >>> convert(b"", Target.keep(), 95, False).reason
    'empty file'
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

MAX_PIXELS = 16_000_000  # decoded pixels per image: larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_OTHER_SIGNATURES = {  # formats OpenCV decodes; signature -> name
    b"BM": "BMP",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
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


class _Unusable(Exception):
    """Raised inside convert() with the reason a file is skipped."""


def convert(data: bytes, target: Target, quality: int, pass_through: bool) -> Outcome:
    """The bytes to store for one input file (never raises for bad input)."""
    try:
        if not data:
            raise _Unusable("empty file")
        if data.startswith(_JPEG):
            return _convert_jpeg(data, target, quality, pass_through)
        if data.startswith(_PNG):
            image, note = _decode_png(data)
        else:
            kind = next((name for sig, name in _OTHER_SIGNATURES.items() if data.startswith(sig)), None)
            if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
                kind = "WebP"
            if kind is None:
                raise _Unusable(f"not an image: unrecognised content starting {data[:8].hex()}")
            image = _imdecode(data, cv2.IMREAD_COLOR, kind)
            note = f"{kind} converted to JPEG"
        if pass_through:
            note += " (pass-through keeps only JPEG bytes)"
        return Outcome(payload=_encode(_resize(image, target), quality), note=note)
    except _Unusable as error:
        return Outcome(reason=str(error))
    except (cv2.error, ValueError, MemoryError) as error:  # a decoder's own complaint
        return Outcome(reason=f"cannot decode: {str(error).strip().splitlines()[-1][:200]}")


def _convert_jpeg(data: bytes, target: Target, quality: int, pass_through: bool) -> Outcome:
    if data.rfind(b"\xff\xd9", max(0, len(data) - _EOI_SEARCH)) < 0:
        raise _Unusable("truncated JPEG: no end-of-image marker")
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise _Unusable(f"corrupt JPEG header: {error}") from None
    orientation = 1 if pass_through else _exif_orientation(data)
    if orientation >= 5:  # turned a quarter: the stored size is the other way round
        width, height = height, width
    factor = _reduction(width, height, target)
    if colorspace in ("CMYK", "YCCK") or orientation != 1:
        # OpenCV converts CMYK and applies EXIF orientation, as im2rec's cv2.imread does
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        image = _imdecode(data, flag, f"{colorspace} JPEG")
        notes = ["CMYK JPEG converted to BGR"] if colorspace in ("CMYK", "YCCK") else []
        if orientation != 1:
            notes.append(f"turned upright (EXIF orientation {orientation})")
        return Outcome(payload=_encode(_resize(image, target), quality), note="; ".join(notes))
    try:
        if pass_through and colorspace != "Gray" and factor == 1:
            # decode only to prove the bytes are whole; at 1/8 scale that is cheap
            simplejpeg.decode_jpeg(data, "GRAY", fastdct=True, fastupsample=True, min_factor=8)
            return Outcome(payload=data)
        image = simplejpeg.decode_jpeg(data, "BGR", fastdct=True, fastupsample=True, min_factor=factor)
    except ValueError as error:
        raise _Unusable(f"corrupt JPEG: {error}") from None
    notes = []
    if colorspace == "Gray":
        notes.append("greyscale JPEG converted to 3-channel BGR")
    if factor > 1 and (pass_through or target.mode == "keep"):
        notes.append(f"{width}x{height} JPEG too large: decoded at 1/{factor} scale")
    if pass_through and notes:
        notes.append("re-encoded instead of passed through")
    note = "; ".join(notes) or None
    return Outcome(payload=_encode(_resize(image, target), quality), note=note)


def _exif_orientation(data: bytes) -> int:
    """The EXIF Orientation tag (1-8) of a JPEG; 1 when there is none or it cannot be read."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in (0xDA, 0xD9):  # start of scan: the metadata is over
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\0\0":
            return _tiff_orientation(data[position + 10 : position + 2 + length])
        position += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (offset,) = struct.unpack(order + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    for entry in range(offset + 2, min(offset + 2 + 12 * count, len(tiff) - 11), 12):
        tag, _, _, value = struct.unpack(order + "HHIH", tiff[entry : entry + 10])
        if tag == 0x0112:
            return value if 1 <= value <= 8 else 1
    return 1


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
        raise _Unusable(f"image too large: {width}x{height} pixels")
    return chosen


def _decode_png(data: bytes) -> tuple[np.ndarray, str]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _Unusable("corrupt PNG: no IHDR chunk")
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    if width * height > MAX_PIXELS:
        raise _Unusable(f"image too large: {width}x{height} pixels")
    kinds = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
    image = _imdecode(data, cv2.IMREAD_COLOR, "PNG")
    return image, f"PNG ({depth}-bit {kinds.get(color_type, 'unknown')}) converted to 8-bit BGR JPEG"


def _imdecode(data: bytes, flag: int, kind: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise _Unusable(f"corrupt {kind}: OpenCV could not decode it")
    if image.dtype != np.uint8:  # OpenCV keeps 16 bits only with IMREAD_ANYDEPTH; be sure anyway
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else np.clip(image, 0, 255).astype(np.uint8)
    return image


def _resize(image: np.ndarray, target: Target) -> np.ndarray:
    height, width = image.shape[:2]
    size = target.output_size(width, height)
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def _encode(image: np.ndarray, quality: int) -> bytes:
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, "BGR", "420")
