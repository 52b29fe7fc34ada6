"""The ``.grv`` container: header, layers, payload and check, written and read (format versions 2 and 1).

File layout, format version 2 (what ganrev writes; every field and rule in docs/format.md)::

    size  field
    1     marker 0xB2: high nibble 0xB = ganrev, low nibble = format version 2
    1     image byte: bits 0-1 mode (0 latent, 1 latent+residual, 2 fallback, 3 latent+modulation), bit 2 gray,
          bit 3 explicit size, bits 4-7 log2 of the side of a square image (0 with an explicit size)
    var   only with an explicit size: width, height (varints, unsigned LEB128)
          -- modes with a latent:
    1     latent byte: bits 0-3 bits per coordinate - 1, bit 4 explicit clip, bit 5 leading coordinates,
          bits 6-7 zero
    1     sigma of the entropy model, in 1/32 units
    1     only with an explicit clip: clip in 1/16 units (otherwise clip = 3)
    var   only with leading coordinates: k (varint), the count of the latent's leading coordinates the payload
          holds; the others decode as the prior's mean 0 (otherwise the payload holds all of them)
    2     generator fingerprint: first 2 bytes of SHA-256 of the weights
          -- each layer (one in every mode but latent):
    1     layer codec id: index into LAYER_CODECS (complete PNG/JPEG/WebP/AVIF files, or bare WebP/AV1
          bitstreams whose container the decoder rebuilds from this header: ganrev.bitstream.layers; in mode
          latent+modulation, and only there, "film")
    var   layer length in bytes (varint)
          --
    var   latent payload: range-coded grid indices (constriction RangeEncoder, 32-bit words,
          little-endian, trailing zero bytes dropped); empty in fallback mode
    var   the layers' bytes, in order
    3     CRC-24 (OpenPGP) of every byte before it, little-endian

A ``film`` layer (ganrev.bitstream.modulation) holds a scale and a shift for each channel of one of G's batch-norm
outputs::

    1     bits 0-3: bits per value - 1; bits 4-7: the batch-norm layer (0 = the 4x4 seed's)
    1     sigma of the entropy model, in 1/32 units
    var   range-coded grid indices over [-3, 3] (as the latent's): the C scales, then the C shifts

A 64x64 latent file spends 9 bytes on all this (20 in version 1). The generator fixes the latent size
and its resolution, so version 2 does not repeat them: the fingerprint names the generator. Version 1
files (magic "GRV", version byte 1, 4-byte fingerprint, a byte each for bits, clip, sigma and flags,
varints for latent size, resolution, width and height, CRC32) are still read.

A file whose check fails is reported as corrupted or truncated; one made with another generator, one of an
unknown version, or one whose header disagrees with the generator is refused with the cause.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ganrev.errors import GanrevError

MAGIC_V1 = b"GRV"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
EXTENSION = ".grv"
FINGERPRINT_BYTES = 2
SIGMA_UNITS = 32  # the entropy model's sigma is stored in 1/32 units
CLIP_UNITS = 16  # and an explicit clip in 1/16 units
DEFAULT_CLIP = 3.0

MODES = ("latent", "latent+residual", "fallback", "latent+modulation")  # index = the mode's code in the file
# index = the codec id in the file; the first four are complete files, the rest bare bitstreams (ganrev.bitstream.layers)
# ("film": a modulation of the generator, the layer of mode latent+modulation, see ganrev.bitstream.modulation)
LAYER_CODECS = ("png", "jpeg", "webp", "avif", "vp8", "vp8l", "vp8-down2", "vp8-down4", "av1", "film")
FILM_CODEC = "film"

_V1_FIXED_HEADER = struct.Struct("<3sB4sBBBB")
_V1_MIN_FILE = _V1_FIXED_HEADER.size + 4 + 4  # fixed header, four 1-byte varints, CRC32
_VERSION_NIBBLE = 0xB0  # a first byte 0xB_ is read as "ganrev, version _"
_V2_MARKER = _VERSION_NIBBLE | 2
_CHECK_BYTES = 3
_MODE_BITS, _GRAY_BIT, _EXPLICIT_SIZE_BIT, _SIDE_SHIFT = 0x03, 0x04, 0x08, 4
_BITS_MASK, _EXPLICIT_CLIP_BIT, _LEADING_BIT = 0x0F, 0x10, 0x20


def _crc24_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc = (crc << 1) ^ (0x1864CFB if crc & 0x800000 else 0)
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24_TABLE = _crc24_table()


def crc24(data: bytes) -> int:
    """CRC-24 of OpenPGP (RFC 4880: polynomial 0x864CFB, initial value 0xB704CE).

    Chosen over a truncated CRC32 because a true degree-24 CRC detects every error burst of up to 24 bits
    (so any change within 3 consecutive bytes, a whole byte included) and, with its factor x + 1, any odd
    number of flipped bits; other damage passes with probability 2**-24.
    """
    crc = 0xB704CE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24_TABLE[(crc >> 16) ^ byte]
    return crc


@dataclass(frozen=True)
class LatentCoding:
    """How a file's latent payload was made: the generator and the quantizer and entropy model used.

    ``fingerprint`` is a prefix of the generator's weights fingerprint (2 bytes in version 2, 4 in version 1).
    ``latent_dim`` and ``resolution`` are what version-1 files stored; version 2 leaves them to the generator
    the fingerprint names, and reads them as None. ``leading`` is the count of the latent's leading coordinates
    the payload holds, the others decoding as 0 (a generator trained with nested dropout makes good images from
    them: ``fit-generator --nested-dropout``); None: all of them.
    """

    fingerprint: bytes
    bits: int
    clip: float
    sigma: float
    latent_dim: int | None = None
    resolution: int | None = None
    leading: int | None = None

    def coded(self, latent_dim: int) -> int:
        """The coordinates the payload holds, for a generator with ``latent_dim``: ``leading`` or all of them."""
        return latent_dim if self.leading is None else self.leading


@dataclass(frozen=True)
class Layer:
    """A classical codec's complete file inside a .grv file: ``codec`` is one of :data:`LAYER_CODECS`."""

    codec: str
    data: bytes


@dataclass(frozen=True)
class Header:
    """Everything in a .grv file except the latent payload: the image, the latent's coding, the layers.

    The mode follows from what is there: a latent alone (``"latent"``), a latent and one residual layer
    (``"latent+residual"``, decoded as G(z) plus the residual, see :func:`add_residual`), a latent and a
    ``film`` layer (``"latent+modulation"``, decoded as G(z) with that modulation, see :mod:`ganrev.bitstream.modulation`),
    or one classical layer and no latent (``"fallback"``).
    """

    width: int
    height: int
    gray: bool
    latent: LatentCoding | None
    layers: tuple[Layer, ...] = ()
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.layers) > 1 or (self.latent is None and not self.layers):
            raise GanrevError(f"a .grv file holds a latent and at most one layer, or one layer alone; got "
                              f"{'a latent' if self.latent else 'no latent'} and {len(self.layers)} layers")
        if self.latent is None and self.layers[0].codec == FILM_CODEC:
            raise GanrevError("a modulation layer needs a latent to modulate")

    @property
    def mode(self) -> str:
        if self.latent is None:
            return "fallback"
        if not self.layers:
            return "latent"
        return "latent+modulation" if self.layers[0].codec == FILM_CODEC else "latent+residual"


def varint(value: int) -> bytes:
    """LEB128: 7 bits per byte, low first, the high bit set on every byte but the last."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes, pos: int, what: str = ".grv header") -> tuple[int, int]:
    """The :func:`varint` at ``pos`` and the position after it; a one-line error naming ``what`` if damaged."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise GanrevError(f"corrupted {what}: bad variable-length integer")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _read_bytes(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    if pos + size > len(data):
        raise GanrevError("corrupted ganrev file: the header runs past the end")
    return data[pos:pos + size], pos + size


def _units(value: float, units: int, name: str) -> int:
    """``value`` as a whole number of ``1/units`` in 1..255, or GanrevError: the file must store it exactly."""
    scaled = value * units
    if not (float(scaled).is_integer() and 1 <= scaled <= 255):
        raise GanrevError(f"{name} {value} is not a multiple of 1/{units} in [1/{units}, {255 / units}]")
    return int(scaled)


def pack_file(header: Header, payload: bytes) -> bytes:
    """Serialise a header and latent payload into the bytes of a format-version-2 .grv file.

    Layout in the module docstring. Values the format cannot hold exactly raise GanrevError.
    """
    if header.version != FORMAT_VERSION:
        raise GanrevError(f"ganrev writes format version {FORMAT_VERSION} only, not {header.version}")
    if header.width < 1 or header.height < 1:
        raise GanrevError(f"image size must be at least 1x1, got {header.width}x{header.height}")
    square_side = header.width == header.height and header.width & (header.width - 1) == 0
    log2_side = header.width.bit_length() - 1
    image_byte = MODES.index(header.mode) | (_GRAY_BIT if header.gray else 0)
    if square_side and log2_side < 16:
        body = bytearray([_V2_MARKER, image_byte | log2_side << _SIDE_SHIFT])
    else:
        body = bytearray([_V2_MARKER, image_byte | _EXPLICIT_SIZE_BIT]) + varint(header.width) + varint(header.height)
    latent = header.latent
    if latent is not None:
        if not 2 <= latent.bits <= 16:
            raise GanrevError(f"bits must be between 2 and 16, got {latent.bits}")
        if len(latent.fingerprint) != FINGERPRINT_BYTES:
            raise GanrevError(f"a version-2 fingerprint has {FINGERPRINT_BYTES} bytes, got {len(latent.fingerprint)}")
        sigma = _units(latent.sigma, SIGMA_UNITS, "sigma")
        clip = _units(latent.clip, CLIP_UNITS, "clip")
        if latent.leading is not None and latent.leading < 1:
            raise GanrevError(f"a file codes at least 1 leading latent coordinate, not {latent.leading}")
        explicit_clip = latent.clip != DEFAULT_CLIP
        body.append(latent.bits - 1 | (_EXPLICIT_CLIP_BIT if explicit_clip else 0)
                    | (_LEADING_BIT if latent.leading is not None else 0))
        body.append(sigma)
        if explicit_clip:
            body.append(clip)
        if latent.leading is not None:
            body += varint(latent.leading)
        body += latent.fingerprint
    elif payload:
        raise GanrevError("a fallback file has no latent, so it cannot carry a latent payload")
    for layer in header.layers:
        if layer.codec not in LAYER_CODECS:
            raise GanrevError(f"unknown layer codec {layer.codec!r}; known: {', '.join(LAYER_CODECS)}")
        body.append(LAYER_CODECS.index(layer.codec))
        body += varint(len(layer.data))
    body += payload
    for layer in header.layers:
        body += layer.data
    return bytes(body) + crc24(body).to_bytes(_CHECK_BYTES, "little")


def unpack_file(data: bytes) -> tuple[Header, bytes]:
    """Parse and verify a .grv file of format version 1 or 2: its header and latent payload (empty in fallback).

    Raise GanrevError naming the cause when it is not a valid one.
    """
    if data[:1] == bytes([_V2_MARKER]):
        return _unpack_v2(data)
    if data[:len(MAGIC_V1)] == MAGIC_V1:
        return _unpack_v1(data)
    if data[:1] and data[0] & 0xF0 == _VERSION_NIBBLE:
        raise GanrevError(f"not a ganrev file, or one of format version {data[0] & 0x0F}, which this ganrev cannot "
                          f"read (it reads versions {' and '.join(map(str, READABLE_VERSIONS))})")
    raise GanrevError("not a ganrev compressed file (bad magic bytes)")


def _unpack_v2(data: bytes) -> tuple[Header, bytes]:
    if len(data) < 2 + _CHECK_BYTES:
        raise GanrevError(f"truncated ganrev file: {len(data)} bytes, at least {2 + _CHECK_BYTES} needed")
    body = data[:-_CHECK_BYTES]
    if crc24(body) != int.from_bytes(data[-_CHECK_BYTES:], "little"):
        raise GanrevError("corrupted or truncated ganrev file (CRC-24 mismatch)")
    # Past the check, a bad field means a file written wrongly (or forged), not damaged in transit.
    out_of_range = GanrevError("corrupted ganrev file: header fields out of range")
    image_byte, pos = body[1], 2
    side_log2 = image_byte >> _SIDE_SHIFT
    if image_byte & _MODE_BITS >= len(MODES):
        raise out_of_range
    mode = MODES[image_byte & _MODE_BITS]
    if image_byte & _EXPLICIT_SIZE_BIT:
        width, pos = read_varint(body, pos)
        height, pos = read_varint(body, pos)
        if side_log2 or not width or not height:
            raise out_of_range
    else:
        width = height = 1 << side_log2
    latent = None
    if mode != "fallback":
        (latent_byte, sigma_units), pos = _read_bytes(body, pos, 2)
        clip_units = CLIP_UNITS * DEFAULT_CLIP
        if latent_byte & _EXPLICIT_CLIP_BIT:
            (clip_units,), pos = _read_bytes(body, pos, 1)
        leading = None
        if latent_byte & _LEADING_BIT:
            leading, pos = read_varint(body, pos)
        fingerprint, pos = _read_bytes(body, pos, FINGERPRINT_BYTES)
        bits = (latent_byte & _BITS_MASK) + 1
        if (latent_byte & ~(_BITS_MASK | _EXPLICIT_CLIP_BIT | _LEADING_BIT) or bits < 2 or not sigma_units
                or not clip_units or leading == 0):
            raise out_of_range
        latent = LatentCoding(fingerprint, bits, clip_units / CLIP_UNITS, sigma_units / SIGMA_UNITS,
                              leading=leading)
    layer_specs = []
    for _ in range(0 if mode == "latent" else 1):
        (codec_id,), pos = _read_bytes(body, pos, 1)
        length, pos = read_varint(body, pos)
        if codec_id >= len(LAYER_CODECS) or (LAYER_CODECS[codec_id] == FILM_CODEC) != (mode == "latent+modulation"):
            raise out_of_range
        layer_specs.append((LAYER_CODECS[codec_id], length))
    payload_end = len(body) - sum(length for _, length in layer_specs)
    if payload_end < pos or (mode == "fallback" and payload_end != pos):
        raise GanrevError("corrupted ganrev file: its layer lengths do not add up to its size")
    layers, start = [], payload_end
    for codec, length in layer_specs:
        layers.append(Layer(codec, body[start:start + length]))
        start += length
    return Header(width, height, bool(image_byte & _GRAY_BIT), latent, tuple(layers)), body[pos:payload_end]


def _unpack_v1(data: bytes) -> tuple[Header, bytes]:
    if len(data) < _V1_MIN_FILE:
        raise GanrevError(f"truncated ganrev file: {len(data)} bytes, at least {_V1_MIN_FILE} needed")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise GanrevError("corrupted or truncated ganrev file (CRC32 mismatch)")
    _, version, fingerprint, bits, clip, sigma, flags = _V1_FIXED_HEADER.unpack_from(data)
    if version != 1:
        raise GanrevError(f"ganrev file format version {version} is not supported by this ganrev "
                          f"(it reads versions {' and '.join(map(str, READABLE_VERSIONS))})")
    pos = _V1_FIXED_HEADER.size
    fields = []
    for _ in range(4):
        value, pos = read_varint(data, pos)
        fields.append(value)
    latent_dim, resolution, width, height = fields
    if not 2 <= bits <= 16 or clip == 0 or sigma == 0 or flags > 1 or 0 in fields or pos > len(data) - 4:
        raise GanrevError("corrupted ganrev file: header fields out of range")
    latent = LatentCoding(fingerprint, bits, clip / CLIP_UNITS, sigma / SIGMA_UNITS, latent_dim, resolution)
    return Header(width, height, bool(flags), latent, version=1), data[pos:-4]
