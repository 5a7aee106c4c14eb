"""What an image's header says, and what decoding it would cost, before any pixel is decoded.

steps/imaging.py's `decode` and the processing step's policy (steps/conversion.py) call
`probe` and then `check_decodable`, so a decompression bomb is refused from the numbers in
its header: a 4.7 MB YCCK JPEG that says 10000x10000, a 1 MB progressive greyscale JPEG
that says 16000x16000, a 100-byte PNG that says 60000x60000. Two limits, both on the full
size the header states (never on the size a reduced-scale decode would have):

- `max_pixels`: width x height. Whatever the decoder, it walks every pixel or coefficient.
- `max_bytes`: the decoder's working memory, estimated per format and colour space by
  `decode_bytes`. It is what bounds a server's memory per image: a progressive or
  multi-scan JPEG makes libjpeg-turbo keep every DCT coefficient of the full-size image
  (2 bytes each) whatever the output scale, and OpenCV decodes PNG, BMP, GIF, TIFF and WebP
  at full size. Measured with the serving process's VmHWM: the 16000x16000 progressive
  greyscale JPEG costs +512 MB (256 M coefficients x 2 bytes), as `decode_bytes` says.

Every format `sniff` names has its size read here (JPEG from SOF and the first SOS, PNG
from IHDR, BMP, GIF, TIFF from IFD0, WebP from VP8/VP8L/VP8X); content `sniff` does not
know never reaches a decoder.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (  # (first bytes, format), JPEG first: it is what nearly every input is
    (JPEG_SIGNATURE, "JPEG"),
    (PNG_SIGNATURE, "PNG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
CMYK_COLORSPACES = frozenset({"CMYK", "YCCK"})  # JPEGs libjpeg-turbo will not turn into RGB/BGR
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_LOSSLESS_SOF = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
# Bytes per full-size pixel OpenCV needs for formats it decodes whole: its 8-bit BGR(A)
# image plus the converted copy decode() returns (TIFF may hold 16-bit RGBA strips as well).
_OPENCV_BYTES_PER_PIXEL = {"PNG": 8, "BMP": 8, "GIF": 8, "WebP": 8, "TIFF": 16}


class HeaderError(ValueError):
    """The header cannot be read; str() says what is wrong with it."""


@dataclass(frozen=True)
class Header:
    """What the header says, before any pixel is decoded."""

    kind: str  # as `sniff` names it
    width: int
    height: int
    colorspace: str = ""  # JPEG: "YCbCr", "Gray", "CMYK", "YCCK", "RGB"; PNG: "RGB", "greyscale", ...
    depth: int = 8  # bits per sample
    # JPEG only: (horizontal, vertical) sampling factors per component, and whether
    # libjpeg-turbo must buffer the coefficients of the whole image (progressive,
    # lossless, or a sequential JPEG whose first scan leaves components out).
    sampling: tuple[tuple[int, int], ...] = ()
    full_buffer: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff(data: bytes) -> str | None:
    """'JPEG', 'PNG', 'BMP', 'GIF', 'TIFF' or 'WebP' from the first bytes; None for anything else."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def read_header(data: bytes, kind: str) -> Header:
    """The header of `data`, a `kind` as `sniff` named it. Raises HeaderError."""
    reader = {"JPEG": _jpeg, "PNG": _png, "BMP": _bmp, "GIF": _gif, "TIFF": _tiff, "WebP": _webp}[kind]
    try:
        header = reader(data)
    except (struct.error, IndexError):
        raise HeaderError("the header is truncated") from None
    if header.width <= 0 or header.height <= 0:
        raise HeaderError(f"it claims a size of {header.width}x{header.height}")
    return header


# ---------------------------------------------------------------------------- the formats


def _jpeg(data: bytes) -> Header:
    """SOFn for size, precision and sampling; the first SOS for whether scans leave components out."""
    position, frame = 2, None
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise HeaderError(f"no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if length < 2:
            raise HeaderError(f"marker 0x{marker:02X} has length {length}")
        body = data[position + 4 : position + 2 + length]
        if marker in _SOF_MARKERS:
            frame = _jpeg_frame(marker, body)
        elif marker == 0xDA:
            if frame is None:
                raise HeaderError("a scan starts before the frame header")
            components_in_scan = body[0]
            if components_in_scan < len(frame.sampling):
                frame = Header(**{**frame.__dict__, "full_buffer": True})
            return frame
        position += 2 + length
    if frame is None:
        raise HeaderError("no frame header (SOF) before the end of the data")
    return frame


def _jpeg_frame(marker: int, body: bytes) -> Header:
    precision, height, width, count = struct.unpack(">BHHB", body[:6])
    if count not in (1, 3, 4) or len(body) < 6 + 3 * count:
        raise HeaderError(f"frame header with {count} components")
    sampling = tuple((body[7 + 3 * index] >> 4, body[7 + 3 * index] & 0x0F) for index in range(count))
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling):
        raise HeaderError(f"sampling factors {sampling} out of range")
    colorspace = {1: "Gray", 3: "YCbCr", 4: "CMYK"}[count]  # refined by the caller from APP14 when it matters
    return Header("JPEG", width, height, colorspace, precision, sampling,
                  marker in _PROGRESSIVE_SOF or marker in _LOSSLESS_SOF)


def _png(data: bytes) -> Header:
    if len(data) < 33 or data[12:16] != b"IHDR":  # signature, chunk length and type, 13 bytes of IHDR, CRC
        raise HeaderError("no IHDR chunk")
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return Header("PNG", width, height, _PNG_COLOUR_TYPES.get(colour_type, "unknown"), depth)


def _bmp(data: bytes) -> Header:
    (dib_size,) = struct.unpack("<I", data[14:18])
    if dib_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height, _, depth = struct.unpack("<HHHH", data[18:26])
    else:
        width, height, _, depth = struct.unpack("<iiHH", data[18:30])
    return Header("BMP", width, abs(height), "BGR", depth)  # a negative height is a top-down bitmap


def _gif(data: bytes) -> Header:
    width, height = struct.unpack("<HH", data[6:10])
    return Header("GIF", width, height, "palette")


def _tiff(data: bytes) -> Header:
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    fields: dict[int, int] = {}
    for entry in range(offset + 2, offset + 2 + 12 * min(count, 4096), 12):
        tag, kind, _ = struct.unpack(order + "HHI", data[entry : entry + 8])
        if tag in (256, 257, 258, 277):  # width, length, bits per sample, samples per pixel
            fields[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), data[entry + 8 : entry + (10 if kind == 3 else 12)])[0]
    if 256 not in fields or 257 not in fields:
        raise HeaderError("the first IFD has no ImageWidth/ImageLength")
    return Header("TIFF", fields[256], fields[257], f"{fields.get(277, 1)} samples", fields.get(258, 8))


def _webp(data: bytes) -> Header:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: the canvas size, 24 bits each, minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    elif chunk == b"VP8 ":  # lossy: after a 3-byte frame tag and the start code 9D 01 2A
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("no VP8 start code")
        width, height = (value & 0x3FFF for value in struct.unpack("<HH", data[26:30]))
    elif chunk == b"VP8L":  # lossless: signature 0x2F, then 14-bit width-1 and height-1
        if data[20] != 0x2F:
            raise HeaderError("no VP8L signature")
        (bits,) = struct.unpack("<I", data[21:25])
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    else:
        raise HeaderError(f"unknown first chunk {chunk!r}")
    return Header("WebP", width, height)


# ---------------------------------------------------------------------------- what decoding costs


def decode_bytes(header: Header, factor: int = 1, channels: int = 3) -> int:
    """Estimated peak bytes to decode the image at 1/`factor` scale into `channels` channels.

    JPEG (libjpeg-turbo, or OpenCV's libjpeg for CMYK/YCCK, both scaling in the IDCT): the
    output at the reduced size (twice: CMYK comes out as 4 channels and is converted, and
    decode() may convert once more), plus, when the whole image's coefficients are
    buffered, 2 bytes per coefficient of every component at full size, padded to whole
    MCUs. Sequential JPEGs with interleaved scans keep one MCU row: nothing that grows
    with the image. Other formats: OpenCV decodes them at full size.
    """
    if header.kind != "JPEG":
        return header.pixels * _OPENCV_BYTES_PER_PIXEL.get(header.kind, 16)
    out_width, out_height = -(-header.width // factor), -(-header.height // factor)
    output = out_width * out_height * max(channels, 4 if header.colorspace in CMYK_COLORSPACES else channels) * 2
    if not header.full_buffer:
        return output
    max_h = max(h for h, _ in header.sampling)
    max_v = max(v for _, v in header.sampling)
    mcu_columns = -(-header.width // (8 * max_h))
    mcu_rows = -(-header.height // (8 * max_v))
    blocks = sum(mcu_columns * h * mcu_rows * v for h, v in header.sampling)
    return output + blocks * 64 * 2
