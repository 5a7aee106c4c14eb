"""Image bytes -> pixels and back: the one decoder every step uses.

Each user keeps its policy on top of the same parts: processing (steps/conversion.py: any
input file -> the JPEG stored in a record, or why not), training (steps/training_data.py:
a record -> RGB or grey, through `decode`) and serving (steps/predictor.py: a request
body -> RGB, through `decode` with its size and memory caps, then training's `fit`). The parts, in
the order a decode uses them:

1. `sniff`: the format, from the first bytes (never the file name).
2. `probe` and `check_decodable`: width, height and colour space from the header
   (steps/image_headers.py, every format `sniff` names), before any pixel is decoded, to
   refuse decompression bombs by full size and estimated decoder memory, or to choose a
   reduced scale.
3. `decode_jpeg` (libjpeg-turbo via simplejpeg, optionally at 1/2, 1/4 or 1/8 scale) or
   `decode_opencv` (other formats, CMYK/YCCK and EXIF-rotated JPEGs), always uint8.
4. `resize`, `resize_shorter_side`, `fit`: the resize rules training and serving share.
5. `encode_jpeg`: pixels back to JPEG bytes, 4:2:0 chroma like OpenCV's default.

A refusal is an `ImageError`: str() is the reason as the processing step records it
("corrupt JPEG header: ...", "image too large: 12000x12000 pixels"); `problem`, `kind`,
`size` and `detail` let a caller with its own wording (the HTTP API) say it differently.

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n..."), sniff(b"hello")
    ('PNG', None)
"""
from __future__ import annotations

import enum
import struct

import cv2
import numpy as np
import simplejpeg

from steps.image_headers import CMYK_COLORSPACES, Header, HeaderError, decode_bytes, read_header, sniff

DEFAULT_MAX_DECODE_BYTES = 128 * 1024 * 1024  # estimated decoder memory per image (see check_decodable)
_REDUCED_FLAGS = {  # OpenCV's own reduced-scale JPEG decode (libjpeg scales in the IDCT), by factor
    ("RGB", 1): cv2.IMREAD_COLOR, ("RGB", 2): cv2.IMREAD_REDUCED_COLOR_2, ("RGB", 4): cv2.IMREAD_REDUCED_COLOR_4,
    ("RGB", 8): cv2.IMREAD_REDUCED_COLOR_8, ("GRAY", 1): cv2.IMREAD_GRAYSCALE,
    ("GRAY", 2): cv2.IMREAD_REDUCED_GRAYSCALE_2, ("GRAY", 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    ("GRAY", 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


class Problem(enum.Enum):
    """Which step refused the bytes."""

    FORMAT = "format"  # not a format we know
    HEADER = "header"  # the header cannot be read
    TOO_LARGE = "too large"  # more pixels than the caller allows
    CORRUPT = "corrupt"  # the header was fine, the data is not
    UNUSABLE = "unusable"  # anything else a caller refuses (an empty file, a truncated JPEG)


class ImageError(ValueError):
    """Bytes that do not make a usable image; str() is the reason, the attributes its parts."""

    def __init__(self, reason: str, problem: Problem = Problem.UNUSABLE, kind: str = "",
                 size: tuple[int, int] = (0, 0), detail: str = "") -> None:
        super().__init__(reason)
        self.problem = problem
        self.kind = kind  # "JPEG", "PNG", ... ("" when not known)
        self.size = size  # (width, height) when the header said
        self.detail = detail  # the decoder's own words, when it gave any

    @classmethod
    def too_large(cls, kind: str, width: int, height: int) -> ImageError:
        return cls(f"image too large: {width}x{height} pixels", Problem.TOO_LARGE, kind, (width, height))


# ---------------------------------------------------------------------------------------
# 1-2. what the bytes are, and how big


def probe(data: bytes, kind: str | None = None) -> Header:
    """The header of `data` (of format `kind` when the caller already sniffed it): full size,
    colour space and, for JPEG, what libjpeg-turbo will buffer. Raises ImageError."""
    kind = kind or sniff(data)
    if kind is None:
        raise ImageError(f"not an image: unrecognised content starting {data[:8].hex()}", Problem.FORMAT)
    if kind == "JPEG":
        return _jpeg_header(data)
    try:
        return read_header(data, kind)
    except HeaderError as error:
        if kind == "PNG":
            raise ImageError("corrupt PNG: no IHDR chunk", Problem.HEADER, "PNG", detail=str(error)) from None
        raise ImageError(f"corrupt {kind} header: {error}", Problem.HEADER, kind, detail=str(error)) from None


def _jpeg_header(data: bytes) -> Header:
    """libjpeg-turbo's reading of size and colour space (it is the decoder: YCCK and Adobe RGB
    are its call), with the sampling and buffering our own marker walk finds."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise ImageError(f"corrupt JPEG header: {error}", Problem.HEADER, "JPEG", detail=str(error)) from None
    if not (width and height):
        claim = f"it claims a size of {width}x{height}"
        raise ImageError(f"corrupt JPEG header: {claim}", Problem.HEADER, "JPEG", (width, height), claim)
    try:
        markers = read_header(data, "JPEG")
    except HeaderError:  # libjpeg reads past what our walk refuses: assume the costliest layout
        return Header("JPEG", width, height, colorspace, 8, ((1, 1),) * 4, True)
    return Header("JPEG", width, height, colorspace, markers.depth, markers.sampling, markers.full_buffer)


def check_decodable(header: Header, factor: int, max_pixels: int, max_bytes: int = DEFAULT_MAX_DECODE_BYTES,
                    channels: int = 3) -> None:
    """Refuse, from the header alone, an image over `max_pixels` at full size or whose decode
    at 1/`factor` scale would need more than `max_bytes` (steps/image_headers.py says how
    that is estimated). Every user of the decoder calls this before decoding."""
    if header.pixels > max_pixels:
        raise ImageError.too_large(header.kind, header.width, header.height)
    need = decode_bytes(header, factor, channels)
    if need > max_bytes:
        layout = ("progressive/multi-scan " if header.full_buffer else "") + (f"{header.colorspace} " if header.colorspace else "")
        detail = f"needs about {need >> 20} MB to decode, over the limit of {max_bytes >> 20} MB"
        raise ImageError(f"image too large: {header.width}x{header.height} {layout}{header.kind} {detail}",
                         Problem.TOO_LARGE, header.kind, (header.width, header.height), detail)


def exif_orientation(data: bytes) -> int:
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


# ---------------------------------------------------------------------------------------
# 3. decoding


def decode_jpeg(data: bytes, colour: str, *, min_height: int = 0, min_width: int = 0, min_factor: int = 1,
                fast: bool = False) -> np.ndarray:
    """A JPEG -> uint8 H x W x C in `colour` ("RGB", "BGR", "GRAY"), by libjpeg-turbo.

    It decodes at the smallest of 1/2, 1/4, 1/8 scale that is still min_height x
    min_width, and at least 1/`min_factor`. `fast` takes the integer DCT and plain
    upsampling: a third faster and bit-for-bit deterministic, not bit-equal to the default.
    """
    try:
        if min_factor > 1 and min_height <= 0 and min_width <= 0:
            # simplejpeg ignores min_factor unless a minimum size is given: ask for 1/min_factor of it
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            min_height, min_width = -(-height // min_factor), -(-width // min_factor)
        return simplejpeg.decode_jpeg(data, colour, fastdct=fast, fastupsample=fast, min_height=min_height,
                                      min_width=min_width, min_factor=min_factor)
    except ValueError as error:
        raise ImageError(f"corrupt JPEG: {error}", Problem.CORRUPT, "JPEG", detail=str(error)) from None


def decode_opencv(data: bytes, flag: int, kind: str) -> np.ndarray:
    """Any format OpenCV reads -> uint8 (BGR for cv2.IMREAD_COLOR*, H x W for IMREAD_GRAYSCALE).

    OpenCV applies EXIF orientation and converts CMYK, palette and alpha images itself;
    `kind` names the input in the error.
    """
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ImageError(f"corrupt {kind}: OpenCV could not decode it", Problem.CORRUPT, kind)
    if image.dtype != np.uint8:  # OpenCV keeps 16 bits only with IMREAD_ANYDEPTH; be sure anyway
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else np.clip(image, 0, 255).astype(np.uint8)
    return image


def decode(data: bytes, colour: str = "RGB", min_height: int = 0, min_width: int = 0,
           max_pixels: int | None = None, max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """Image bytes -> uint8 H x W x C, "RGB" (3 channels) or "GRAY" (1), at least
    min_height x min_width when the source is that big (JPEGs decode at reduced scale,
    CMYK/YCCK ones too, through OpenCV's libjpeg).

    With `max_pixels` the header is probed first and `check_decodable` refuses an image
    over `max_pixels` at full size, or whose decode would need more than `max_bytes`.
    Without it nothing is probed: training reads records the processing step already
    checked, and saves the header parse.
    """
    kind = sniff(data)
    header = None
    factor = 1
    if max_pixels is not None:
        header, factor = check(data, colour, min_height, min_width, max_pixels, max_bytes)
    if kind == "JPEG" and (header is None or header.colorspace not in CMYK_COLORSPACES):
        image = decode_jpeg(data, colour, min_height=min_height, min_width=min_width)
        return image if colour == "RGB" else image.reshape(image.shape[0], image.shape[1], 1)
    image = decode_opencv(data, _REDUCED_FLAGS[colour, factor], kind or "image")
    if colour == "RGB":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image.reshape(image.shape[0], image.shape[1], 1)


def check(data: bytes, colour: str, min_height: int, min_width: int, max_pixels: int,
          max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> tuple[Header, int]:
    """What `decode` checks before decoding, on its own (a server checks every image of a
    request before it decodes any): the header, and the reduced scale it would decode at."""
    header = probe(data)
    factor = _covering_factor(header, min_height, min_width) if header.kind == "JPEG" else 1
    check_decodable(header, factor, max_pixels, max_bytes, 3 if colour == "RGB" else 1)
    return header, factor


def _covering_factor(header: Header, min_height: int, min_width: int) -> int:
    """The largest of 1, 2, 4, 8 at which the JPEG still covers min_height x min_width
    (sizes rounded down, so the pixel cap errs on the safe side)."""
    factor = 1
    if min_height <= 0 and min_width <= 0:  # no minimum: full size, as decode_jpeg does then
        return factor
    while factor < 8 and header.height // (factor * 2) >= min_height and header.width // (factor * 2) >= min_width:
        factor *= 2
    return factor


# ---------------------------------------------------------------------------------------
# 4-5. resizing and encoding


def resize(image: np.ndarray, width: int, height: int, interpolation: int | None = None) -> np.ndarray:
    """`image` at width x height, channel axis kept (also for 1 channel).

    By default cv2.INTER_AREA when the area shrinks (it averages, so no aliasing) and
    cv2.INTER_LINEAR when it grows: training and serving both resize this way.
    """
    if interpolation is None:
        shrinking = width * height < image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    return resized.reshape(height, width, image.shape[2])


def resize_shorter_side(image: np.ndarray, shorter: int) -> np.ndarray:
    """The built-in algorithm's `resize` hyperparameter: scale so the shorter side is `shorter` pixels."""
    height, width = image.shape[:2]
    scale = shorter / min(height, width)
    return resize(image, max(1, round(width * scale)), max(1, round(height * scale)))


def fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Validation and serving: the whole image resized to width x height (no crop).

    Training's validation and the predictor both call this, so served inputs look like the
    validation inputs. For 640x480 frames and a 3:4 image_shape nothing is distorted.
    """
    if image.shape[:2] == (height, width):
        return image
    return resize(image, width, height)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """BGR uint8 pixels -> JPEG bytes with 4:2:0 chroma, as cv2.imencode writes them."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, "BGR", "420")
