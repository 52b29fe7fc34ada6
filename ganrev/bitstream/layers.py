"""The classical files inside a .grv file (its layers): how each layer codec id is made and read back.

A layer is either a complete image file any viewer opens (codec ids ``png``, ``jpeg``, ``webp``, ``avif``)
or a *bare* bitstream: the file without the container bytes that the .grv header already implies (the
image's size and whether it is gray). On 64x64 images those bytes are a large share of a small file: 20 of
a lossy WebP's ~100-300 bytes, 267 of an AVIF's ~300-600. The decoder rebuilds the complete file and hands
it to the classical decoder, so every layer still is, byte for byte, a file of a real codec:

``vp8``, ``vp8l``
    lossy / lossless WebP: the payload of the file's one ``VP8 `` / ``VP8L`` chunk; rebuilt by adding the
    12-byte RIFF/WEBP header and the 8-byte chunk header.
``vp8-down2``, ``vp8-down4``
    :class:`ganrev.codecs.classical.DownscaledWebPCodec`: the ``VP8 `` payload of the image shrunk 2x or 4x; its
    RIFF headers and its trailing byte (scale, size remainder, gray) follow from the header's size and gray
    flag. Decoded enlarged (bicubic) to the header's size.
``av1``
    AVIF (libavif's still-image layout): 2 bytes of the ``av1C`` box (AV1 profile and level, then the
    bit-depth/monochrome/subsampling flags), then the AV1 bitstream (the ``mdat`` payload). The decoder
    rebuilds the ``ftyp`` and ``meta`` boxes. The encoder writes ``av1`` only when the file libavif made is
    exactly that rebuild plus the bitstream, and the complete file as ``avif`` otherwise (another libavif
    version may lay its boxes out differently): nothing depends on libavif writing this layout.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import torch
from PIL import Image

from ganrev.codecs.classical import DOWNSCALE_FACTORS, posterize
from ganrev.errors import GanrevError
from ganrev.io import to_uint8

COMPLETE_FILE_CODECS = ("png", "jpeg", "webp", "avif")
BARE_CODECS = ("vp8", "vp8l", *(f"vp8-down{scale}" for scale in DOWNSCALE_FACTORS), "av1")
_DECODER_SPEC = {"png": "png", "jpeg": "jpeg", "webp": "webp", "avif": "avif", "vp8": "webp", "vp8l": "webp",
                 "av1": "avif", **{f"vp8-down{scale}": f"webp-down{scale}" for scale in DOWNSCALE_FACTORS}}

LAYER_CODERS = ("av1", "vp8", "vp8l", *(f"vp8-down{scale}" for scale in DOWNSCALE_FACTORS), "jpeg444")
"""The ways :func:`encode_layer` makes a layer, each with one quality knob (see :data:`CODER_LEVELS`)."""

POSTERIZE_STEPS = (96, 64, 48, 32, 24, 16, 12, 8, 6, 5, 4, 3, 2, 1)
CODER_LEVELS: dict[str, tuple[int, ...]] = {
    "av1": tuple(range(101)),  # AVIF 4:4:4 quality
    "vp8": tuple(range(101)),  # lossy WebP quality
    "vp8l": POSTERIZE_STEPS,  # lossless WebP of the image posterized to this step; 1 = lossless
    **{f"vp8-down{scale}": tuple(range(101)) for scale in DOWNSCALE_FACTORS},  # lossy WebP quality, shrunk
    "jpeg444": tuple(range(1, 101)),  # JPEG 4:4:4 quality
}
"""Each coder's knob values, from the lowest quality (fewest bytes) to the highest."""

_WEBP_HEADER = 20  # "RIFF", size, "WEBP", chunk fourcc, chunk size
_FOURCC = {"vp8": b"VP8 ", "vp8l": b"VP8L"}
_GRAY_FLAG = 0x80  # DownscaledWebPCodec's trailer: bit 7 gray, bits 4-6 scale, 2-3 extra rows, 0-1 extra columns
_AV1C_BYTES = 2


def _pillow_file(pixels: np.ndarray, fmt: str, options: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    try:
        Image.fromarray(pixels).save(buffer, format=fmt, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise GanrevError(f"{fmt} cannot encode a {pixels.shape[1]}x{pixels.shape[0]} image: {exc}") from exc
    return buffer.getvalue()


# -- WebP: RIFF container with one chunk

def _riff_webp(fourcc: bytes, payload: bytes) -> bytes:
    padding = b"\0" * (len(payload) % 2)  # RIFF chunks are padded to an even size; the size field is not
    chunk = fourcc + struct.pack("<I", len(payload)) + payload + padding
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _webp_payload(data: bytes, fourcc: bytes) -> bytes:
    """The payload of a simple WebP file's one chunk; GanrevError if ``data`` is not exactly that."""
    size = int.from_bytes(data[16:20], "little")
    if data[:4] != b"RIFF" or data[8:16] != b"WEBP" + fourcc or len(data) != _WEBP_HEADER + size + size % 2:
        raise GanrevError(f"libwebp wrote a WebP file that is not one {fourcc.decode().strip()} chunk")
    return data[_WEBP_HEADER:_WEBP_HEADER + size]


def _downscale_trailer(scale: int, width: int, height: int, gray: bool) -> int:
    extra_rows, extra_cols = -height % scale, -width % scale
    return (_GRAY_FLAG if gray else 0) | scale << 4 | extra_rows << 2 | extra_cols


# -- AVIF: the boxes libavif writes for one still image

def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, body: bytes, version: int = 0) -> bytes:
    return _box(kind, bytes([version, 0, 0, 0]) + body)


def _avif_head(av1c: bytes, width: int, height: int, gray: bool, payload_size: int) -> bytes:
    """Everything of an AVIF file before its AV1 bitstream: ftyp, meta (one item, its properties), mdat header."""
    profile = av1c[0] >> 5
    brands = b"avifmif1miaf" + (b"" if gray else b"MA1A" if profile == 1 else b"MA1B")
    ftyp = _box(b"ftyp", b"avif" + b"\0\0\0\0" + brands)
    properties = _box(b"ipco", _full_box(b"ispe", struct.pack(">II", width, height))
                      + _full_box(b"pixi", b"\x01\x08" if gray else b"\x03\x08\x08\x08")
                      + _box(b"av1C", b"\x81" + av1c + b"\0")
                      + _box(b"colr", b"nclx" + struct.pack(">HHHB", 1, 13, 6, 0x80)))
    associations = _full_box(b"ipma", struct.pack(">IHB", 1, 1, 4) + b"\x01\x02\x83\x04")

    def meta(offset: int) -> bytes:
        location = _full_box(b"iloc", b"\x44\x00" + struct.pack(">HHHHII", 1, 1, 0, 1, offset, payload_size))
        return _full_box(b"meta", _full_box(b"hdlr", b"\0" * 4 + b"pict" + b"\0" * 13)
                         + _full_box(b"pitm", b"\0\x01") + location
                         + _full_box(b"iinf", b"\0\x01" + _full_box(b"infe", b"\0\x01\0\0av01Color\0", version=2))
                         + _box(b"iprp", properties + associations))

    offset = len(ftyp) + len(meta(0)) + 8  # the bitstream starts after the mdat box header
    return ftyp + meta(offset) + struct.pack(">I", 8 + payload_size) + b"mdat"


def _bare_av1(data: bytes, width: int, height: int, gray: bool) -> bytes | None:
    """``data`` (an AVIF file) as an ``av1`` layer, or None when it is not laid out as :func:`_avif_head` says."""
    at = data.find(b"av1C")
    if at < 0:
        return None
    av1c = data[at + 5:at + 5 + _AV1C_BYTES]
    head_size = len(_avif_head(av1c, width, height, gray, 0))
    head = _avif_head(av1c, width, height, gray, len(data) - head_size)
    return av1c + data[head_size:] if data.startswith(head) else None


# -- encoding and decoding layers

def encode_layer(coder: str, image: torch.Tensor, level: int) -> tuple[str, bytes]:
    """Code ``image`` ``[C, H, W]`` (8-bit valued, C = 1 or 3) as a layer: its codec id and bytes.

    ``coder`` is one of :data:`LAYER_CODERS`, ``level`` one of its :data:`CODER_LEVELS`. A layer's channel
    count comes from the .grv header, so WebP files carry no gray/colour tag here.
    """
    if coder not in CODER_LEVELS or level not in CODER_LEVELS[coder]:
        raise GanrevError(f"no layer coder {coder!r} at level {level!r}")
    pixels = to_uint8(image)
    gray, (height, width) = image.shape[0] == 1, image.shape[1:]
    if coder == "av1":
        # gray: Pillow's default, monochrome AV1 (asked for 4:4:4 it would store three planes)
        colour = {} if gray else {"subsampling": "4:4:4"}
        data = _pillow_file(pixels, "AVIF", {"quality": level, "speed": 6, **colour})
        bare = _bare_av1(data, width, height, gray)
        return ("av1", bare) if bare is not None else ("avif", data)
    if coder == "jpeg444":
        return "jpeg", _pillow_file(pixels, "JPEG", {"quality": level, "subsampling": "4:4:4", "optimize": True})
    rgb = np.stack([pixels] * 3, axis=2) if gray else pixels
    if coder == "vp8l":
        data = _pillow_file(posterize(rgb, level), "WEBP", {"lossless": True, "quality": 100, "method": 4})
        return "vp8l", _webp_payload(data, _FOURCC["vp8l"])
    scale = int(coder.removeprefix("vp8-down")) if coder != "vp8" else 1
    small = Image.fromarray(rgb)
    if scale > 1:
        small = small.resize((-(-width // scale), -(-height // scale)), Image.Resampling.BICUBIC)
    data = _pillow_file(np.asarray(small), "WEBP", {"quality": level, "method": 6, "lossless": False})
    return coder, _webp_payload(data, _FOURCC["vp8"])


def complete_file(codec: str, data: bytes, width: int, height: int, gray: bool) -> tuple[str, bytes]:
    """A layer as the complete classical file: the :func:`ganrev.codecs.specs.codec_from_spec` spec whose
    decoder reads it, and the file's bytes (a complete-file layer as it is, a bare one rebuilt)."""
    if codec not in _DECODER_SPEC:
        raise GanrevError(f"unknown layer codec {codec!r}")
    if codec in COMPLETE_FILE_CODECS:
        return _DECODER_SPEC[codec], data
    if codec == "av1":
        if len(data) < _AV1C_BYTES:
            raise GanrevError("corrupted ganrev file: its av1 layer is shorter than its 2-byte configuration")
        av1c, bitstream = data[:_AV1C_BYTES], data[_AV1C_BYTES:]
        return "avif", _avif_head(av1c, width, height, gray, len(bitstream)) + bitstream
    if codec in _FOURCC:
        return "webp", _riff_webp(_FOURCC[codec], data)
    scale = int(codec.removeprefix("vp8-down"))
    return _DECODER_SPEC[codec], _riff_webp(_FOURCC["vp8"], data) + bytes([_downscale_trailer(scale, width, height,
                                                                                              gray)])
