"""The codec interface every scheme implements, and the GAN-reversal codec: quantize + bitstream.

Compressing an image = search z* (:mod:`ganrev.invert`), quantize it on a uniform grid of ``2**bits``
points over ``[-clip, clip]``, refine the quantized latent with the quantizer in the loop
(straight-through gradients), then range-code the grid indices with a discretised Gaussian model
N(0, sigma) - the generator's prior, with sigma chosen per file to minimise its size.

Why a uniform grid in z rather than uniform in the Gaussian CDF: a CDF-uniform grid makes every symbol
equally likely under the prior, so entropy coding could not save a single bit; a uniform grid with an
entropy coder sits ~0.25 bit/coordinate from the Gaussian's rate-distortion bound at high rate, fixed-rate
Lloyd-Max designs do worse.

File layout, format version 2 (what ganrev writes; every field in README's "The .grv format")::

    size  field
    1     marker 0xB2: high nibble 0xB = ganrev, low nibble = format version 2
    1     image byte: bits 0-1 mode (0 latent, 1 latent+residual, 2 fallback, 3 latent+modulation), bit 2 gray,
          bit 3 explicit size, bits 4-7 log2 of the side of a square image (0 with an explicit size)
    var   only with an explicit size: width, height (varints, unsigned LEB128)
          -- modes with a latent:
    1     latent byte: bits 0-3 bits per coordinate - 1, bit 4 explicit clip, bits 5-7 zero
    1     sigma of the entropy model, in 1/32 units
    1     only with an explicit clip: clip in 1/16 units (otherwise clip = 3)
    2     generator fingerprint: first 2 bytes of SHA-256 of the weights
          -- each layer (one in every mode but latent):
    1     layer codec id: index into LAYER_CODECS (complete PNG/JPEG/WebP/AVIF files, or bare WebP/AV1
          bitstreams whose container the decoder rebuilds from this header: ganrev.layers; in mode
          latent+modulation, and only there, "film")
    var   layer length in bytes (varint)
          --
    var   latent payload: range-coded grid indices (constriction RangeEncoder, 32-bit words,
          little-endian, trailing zero bytes dropped); empty in fallback mode
    var   the layers' bytes, in order
    3     CRC-24 (OpenPGP) of every byte before it, little-endian

A ``film`` layer (ganrev.modulation) holds a scale and a shift for each channel of one of G's batch-norm
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

import math
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import constriction
import numpy as np
import torch
from PIL import Image

from ganrev.errors import GanrevError
from ganrev.invert import Adam, InversionResult, SearchOptions, invert, per_image_loss
from ganrev.io import convert_channels, from_uint8, resize, to_uint8
from ganrev.metrics import ssim
from ganrev.models import GeneratorCheckpoint
from ganrev.nets.dcgan import Modulation


@runtime_checkable
class ImageCodec(Protocol):
    """One compression scheme: ``encode`` an image to the bytes of a file a user could store, and back.

    Images are float32 tensors ``[C, H, W]`` in [0, 1] (see :mod:`ganrev.io`). ``decode(encode(x))`` has the
    shape and channel count of ``x``. ``name`` is the row label used in tables, e.g. ``"JPEG (10%)"``.
    """

    name: str

    def encode(self, image: torch.Tensor) -> bytes: ...

    def decode(self, data: bytes) -> torch.Tensor: ...


MAGIC_V1 = b"GRV"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
EXTENSION = ".grv"
FINGERPRINT_BYTES = 2
SIGMA_UNITS = 32
CLIP_UNITS = 16
DEFAULT_CLIP = 3.0
# Quantizer-in-the-loop refinement steps by search start. After the encoder start's converged search the
# 50 steps gain +0.0002 SSIM at 6 bits for +50 % encoding time (validation sweep of
# experiments/ablation_init.py; +0.001 at 4 bits in a library run on the same images), so that start skips
# them; after the pool and random starts' small final steps refinement recovers most of the rounding loss.
REFINE_ITERS = {"encoder": 0, "pool": 50, "random": 50}
MODES = ("latent", "latent+residual", "fallback", "latent+modulation")  # index = the mode's code in the file
# index = the codec id in the file; the first four are complete files, the rest bare bitstreams (ganrev.layers)
# ("film": a modulation of the generator, the layer of mode latent+modulation, see ganrev.modulation)
LAYER_CODECS = ("png", "jpeg", "webp", "avif", "vp8", "vp8l", "vp8-down2", "vp8-down4", "av1", "film")
FILM_CODEC = "film"
MODULATION_CLIP = 3.0  # modulation values are quantized over [-3, 3] (fitted ones have std ~1)
RESIDUAL_MID = 128 / 255  # a zero residual, exactly representable in 8 bits

_V1_FIXED_HEADER = struct.Struct("<3sB4sBBBB")
_V1_MIN_FILE = _V1_FIXED_HEADER.size + 4 + 4  # fixed header, four 1-byte varints, CRC32
_VERSION_NIBBLE = 0xB0  # a first byte 0xB_ is read as "ganrev, version _"
_V2_MARKER = _VERSION_NIBBLE | 2
_CHECK_BYTES = 3
_MODE_BITS, _GRAY_BIT, _EXPLICIT_SIZE_BIT, _SIDE_SHIFT = 0x03, 0x04, 0x08, 4
_BITS_MASK, _EXPLICIT_CLIP_BIT = 0x0F, 0x10


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
    the fingerprint names, and reads them as None.
    """

    fingerprint: bytes
    bits: int
    clip: float
    sigma: float
    latent_dim: int | None = None
    resolution: int | None = None


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
    ``film`` layer (``"latent+modulation"``, decoded as G(z) with that modulation, see :mod:`ganrev.modulation`),
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


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise GanrevError("corrupted .grv header: bad variable-length integer")
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
        body = bytearray([_V2_MARKER, image_byte | _EXPLICIT_SIZE_BIT]) + _varint(header.width) + _varint(header.height)
    latent = header.latent
    if latent is not None:
        if not 2 <= latent.bits <= 16:
            raise GanrevError(f"bits must be between 2 and 16, got {latent.bits}")
        if len(latent.fingerprint) != FINGERPRINT_BYTES:
            raise GanrevError(f"a version-2 fingerprint has {FINGERPRINT_BYTES} bytes, got {len(latent.fingerprint)}")
        sigma = _units(latent.sigma, SIGMA_UNITS, "sigma")
        clip = _units(latent.clip, CLIP_UNITS, "clip")
        explicit_clip = latent.clip != DEFAULT_CLIP
        body.append(latent.bits - 1 | (_EXPLICIT_CLIP_BIT if explicit_clip else 0))
        body.append(sigma)
        if explicit_clip:
            body.append(clip)
        body += latent.fingerprint
    elif payload:
        raise GanrevError("a fallback file has no latent, so it cannot carry a latent payload")
    for layer in header.layers:
        if layer.codec not in LAYER_CODECS:
            raise GanrevError(f"unknown layer codec {layer.codec!r}; known: {', '.join(LAYER_CODECS)}")
        body.append(LAYER_CODECS.index(layer.codec))
        body += _varint(len(layer.data))
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
        width, pos = _read_varint(body, pos)
        height, pos = _read_varint(body, pos)
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
        fingerprint, pos = _read_bytes(body, pos, FINGERPRINT_BYTES)
        bits = (latent_byte & _BITS_MASK) + 1
        if latent_byte & ~(_BITS_MASK | _EXPLICIT_CLIP_BIT) or bits < 2 or not sigma_units or not clip_units:
            raise out_of_range
        latent = LatentCoding(fingerprint, bits, clip_units / CLIP_UNITS, sigma_units / SIGMA_UNITS)
    layer_specs = []
    for _ in range(0 if mode == "latent" else 1):
        (codec_id,), pos = _read_bytes(body, pos, 1)
        length, pos = _read_varint(body, pos)
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
        value, pos = _read_varint(data, pos)
        fields.append(value)
    latent_dim, resolution, width, height = fields
    if not 2 <= bits <= 16 or clip == 0 or sigma == 0 or flags > 1 or 0 in fields or pos > len(data) - 4:
        raise GanrevError("corrupted ganrev file: header fields out of range")
    latent = LatentCoding(fingerprint, bits, clip / CLIP_UNITS, sigma / SIGMA_UNITS, latent_dim, resolution)
    return Header(width, height, bool(flags), latent, version=1), data[pos:-4]


@dataclass(frozen=True)
class Quantizer:
    """Uniform grid of ``2**bits`` points over ``[-clip, clip]``, entropy-coded under N(0, sigma)."""

    bits: int
    clip: float

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise GanrevError(f"bits must be between 2 and 16, got {self.bits}")
        if not 0 < self.clip < 256 / CLIP_UNITS:
            raise GanrevError(f"clip must be in (0, 16), got {self.clip}")

    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def step(self) -> float:
        return 2 * self.clip / (self.levels - 1)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Grid indices (int64) of the nearest grid points."""
        return ((z.clamp(-self.clip, self.clip) + self.clip) / self.step).round().long().clamp(0, self.levels - 1)

    def dequantize(self, symbols: torch.Tensor) -> torch.Tensor:
        return symbols.float() * self.step - self.clip

    def _model(self, sigma: float) -> constriction.stream.model.QuantizedGaussian:
        # In index units the prior N(0, sigma) has mean (L-1)/2 and std sigma/step; the end bins take the tails.
        return constriction.stream.model.QuantizedGaussian(0, self.levels - 1, (self.levels - 1) / 2,
                                                          sigma / self.step)

    def encode_symbols(self, symbols: np.ndarray, sigma: float) -> bytes:
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(np.ascontiguousarray(symbols, dtype=np.int32), self._model(sigma))
        return encoder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")

    def decode_symbols(self, payload: bytes, count: int, sigma: float) -> np.ndarray:
        padded = payload + b"\0" * (-len(payload) % 4)
        try:
            decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))
            return np.asarray(decoder.decode(self._model(sigma), count), dtype=np.int64)
        except Exception as exc:  # constriction reports damaged streams with its own exception types
            raise GanrevError(f"corrupted ganrev payload: {exc}") from exc

    def best_sigma(self, symbols: np.ndarray) -> tuple[float, bytes]:
        """The entropy-model sigma (in 1/32 steps, 0.25..4) giving the smallest payload, and that payload."""
        candidates = [(self.encode_symbols(symbols, units / SIGMA_UNITS), units) for units in range(8, 129, 2)]
        payload, units = min(candidates, key=lambda item: (len(item[0]), abs(item[1] - SIGMA_UNITS)))
        return units / SIGMA_UNITS, payload


def refine_quantized(values: torch.Tensor, quantizers: Sequence[tuple[Quantizer, int]],
                     loss_at: Callable[[torch.Tensor], torch.Tensor], iters: int, lr: float) -> list[torch.Tensor]:
    """Quantizer-in-the-loop refinement: Adam on continuous ``values`` ``[N, D]`` whose forward pass sees them
    quantized, the straight-through estimator passing ``loss_at``'s gradient at the grid point to the value.

    The columns are split among ``quantizers``, each given with its column count (a latent; a latent and a
    modulation). The best *quantized* row seen by ``loss_at`` (``[N, D] -> [N]``, lower is better) is kept,
    so refinement never makes an image worse than plain rounding. Returns each quantizer's grid indices.
    """
    widths = [width for _, width in quantizers]

    def snap(current: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(grid indices per quantizer, the values they stand for)"""
        parts = current.detach().split(widths, dim=1)
        symbols = [q.quantize(part) for (q, _), part in zip(quantizers, parts)]
        return symbols, torch.cat([q.dequantize(s) for (q, _), s in zip(quantizers, symbols)], dim=1)

    values = values.clone()
    best, snapped = snap(values)
    with torch.no_grad():
        best_loss = loss_at(snapped)
    adam = Adam(values)
    values.requires_grad_(True)
    for _ in range(iters):
        symbols, snapped = snap(values)
        loss = loss_at(values + (snapped - values).detach())
        better = loss.detach() < best_loss
        best_loss = torch.where(better, loss.detach(), best_loss)
        best = [torch.where(better[:, None], new, old) for new, old in zip(symbols, best)]
        (grad,) = torch.autograd.grad(loss.sum(), values)
        adam.step(grad, lr)
        with torch.no_grad():
            for (q, _), part in zip(quantizers, values.split(widths, dim=1)):
                part.clamp_(-q.clip, q.clip)
    return best


class WrongGeneratorError(GanrevError):
    """A file made with another generator than the loaded one; ``fingerprint`` is the file's (a prefix)."""

    def __init__(self, fingerprint: bytes, loaded: bytes) -> None:
        super().__init__(f"this file was made with another generator (fingerprint {fingerprint.hex()}..., the "
                         f"loaded generator is {loaded.hex()}...): decode it with the generator that made it")
        self.fingerprint = fingerprint


@dataclass
class CompressedImage:
    """One compressed image and what it cost: bytes, and SSIM at the model's resolution per stage."""

    data: bytes
    ssim_latent: float  # G(z*) before quantization
    ssim_quantized: float  # G(Q(z*)), plain rounding
    ssim_refined: float  # after quantizer-in-the-loop refinement: what the file decodes to
    search_loss: float
    iterations: int
    notes: list[str] = field(default_factory=list)


class GanCodec:
    """GAN reversal as an :class:`ImageCodec`: encode = latent search + quantize + range coding."""

    name = "GAN reversal"

    def __init__(self, checkpoint: GeneratorCheckpoint, *, bits: int = 8, search: SearchOptions = SearchOptions(),
                 refine_iters: int | None = None, device: str | torch.device | None = None,
                 progress: bool = False) -> None:
        """``refine_iters``: quantizer-in-the-loop refinement steps; None: ``REFINE_ITERS`` for the search's start."""
        self.checkpoint = checkpoint
        self.quantizer = Quantizer(bits, search.clip)
        self.search = search
        self.refine_iters = REFINE_ITERS[search.init] if refine_iters is None else refine_iters
        self.device = torch.device(device) if device is not None else next(checkpoint.generator.parameters()).device
        self.generator = checkpoint.generator.to(self.device).eval().requires_grad_(False)
        self.progress = progress

    # -- the ImageCodec interface
    def encode(self, image: torch.Tensor) -> bytes:
        return self.compress([image])[0].data

    def decode(self, data: bytes) -> torch.Tensor:
        """Decode one file: G(z) by a single forward pass at batch size 1 (the same path compress reports),
        plus the residual layer where there is one; a fallback file is its classical layer alone."""
        header, payload = unpack_file(data)
        if header.mode == "fallback":
            return decode_layer(header.layers[0], header)
        image = self._decode_latent(header, payload)
        if header.mode == "latent+residual":
            image = add_residual(image, decode_layer(header.layers[0], header))
        return image

    def _decode_latent(self, header: Header, payload: bytes) -> torch.Tensor:
        """G(z), with the file's modulation in mode latent+modulation, at the header's size and channels."""
        self._check_header(header)
        # The header's size is trusted only as far as Pillow trusts an image file's: no decompression bombs.
        if header.width * header.height > Image.MAX_IMAGE_PIXELS:
            raise GanrevError(f"the file claims a {header.width}x{header.height} image, more than the "
                              f"{Image.MAX_IMAGE_PIXELS} pixels ganrev decodes")
        latent = header.latent
        quantizer = Quantizer(latent.bits, latent.clip)
        symbols = quantizer.decode_symbols(payload, self.checkpoint.config.latent_dim, latent.sigma)
        if symbols.min() < 0 or symbols.max() >= quantizer.levels:
            raise GanrevError("corrupted ganrev payload: latent index out of range")
        z = quantizer.dequantize(torch.from_numpy(symbols)).view(1, -1).to(self.device)
        modulation = None
        if header.mode == "latent+modulation":
            film = decode_modulation(header.layers[0], self.generator.norm_channels())
            modulation = Modulation(film.layer, film.params.to(self.device))
        with torch.no_grad():
            image = self.generator.images(z, modulation)[0].float().cpu()
        image = resize(image, header.height, header.width)
        if header.gray:
            image = convert_channels(image, "gray")
        elif image.shape[0] == 1:
            image = convert_channels(image, "rgb")
        return from_uint8(to_uint8(image))

    # -- batched compression
    def to_model_input(self, image: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """Fit an image ``[C, H, W]`` to the generator: channels, then size. Returns notes on what changed."""
        cfg, notes = self.checkpoint.config, []
        model_image = convert_channels(image, "gray" if cfg.channels == 1 else "rgb")
        if tuple(image.shape[1:]) != (cfg.resolution, cfg.resolution):
            notes.append(f"resized {image.shape[2]}x{image.shape[1]} -> {cfg.resolution}x{cfg.resolution} for the "
                         "generator and back on decode: quality is bounded by the generator's domain")
            model_image = resize(model_image, cfg.resolution, cfg.resolution)
        return model_image, notes

    def compress(self, images: list[torch.Tensor]) -> list[CompressedImage]:
        """Compress several images together: one batched latent search, then per-image files."""
        if not images:
            return []
        prepared = [self.to_model_input(image) for image in images]
        for _, notes in prepared:
            for note in notes:
                warnings.warn(note, stacklevel=2)
        batch = torch.stack([model_image for model_image, _ in prepared])
        return self._pack(images, prepared, batch, self._invert(batch))

    def search_latents(self, images: list[torch.Tensor]) -> InversionResult:
        """The batched latent search of :meth:`compress` on its own, to re-use with :meth:`compress_latents`."""
        return self._invert(torch.stack([self.to_model_input(image)[0] for image in images]))

    def _invert(self, batch: torch.Tensor) -> InversionResult:
        return invert(self.generator, batch, self.search, device=self.device, progress=self.progress,
                      encoder=self.checkpoint.encoder)

    def compress_latents(self, images: list[torch.Tensor], result: InversionResult) -> list[CompressedImage]:
        """Quantize, refine and pack the latents of an earlier search of the same ``images``, in the same order.

        ``compress(images)`` is exactly ``invert`` + this, so one search (``result`` from :func:`ganrev.invert.invert`
        on the images as :meth:`to_model_input` prepares them, with this codec's search options) can be re-used for
        several ``bits`` settings: the search does not depend on ``bits``, only quantization and refinement do.
        """
        if len(result.z) != len(images):
            raise GanrevError(f"the search result holds {len(result.z)} latents for {len(images)} images")
        if not images:
            return []
        prepared = [self.to_model_input(image) for image in images]
        batch = torch.stack([model_image for model_image, _ in prepared])
        return self._pack(images, prepared, batch, result)

    def _pack(self, images: list[torch.Tensor], prepared: list[tuple[torch.Tensor, list[str]]], batch: torch.Tensor,
              result: InversionResult) -> list[CompressedImage]:
        """The part of :meth:`compress` after the search: SSIM per stage, refinement, one file per image."""
        targets = batch.to(self.device)
        with torch.no_grad():
            ssim_latent = ssim(self.generator.images(result.z.to(self.device)), targets).cpu()
            naive = self.quantizer.quantize(result.z)
            ssim_quantized = ssim(self.generator.images(self.quantizer.dequantize(naive).to(self.device)), targets).cpu()
        symbols, ssim_refined = self.refine(result.z, targets)
        out = []
        for k, (image, (_, notes)) in enumerate(zip(images, prepared)):
            sigma, payload = self.quantizer.best_sigma(symbols[k].numpy())
            latent = LatentCoding(self.checkpoint.fingerprint_bytes[:FINGERPRINT_BYTES], self.quantizer.bits,
                                  self.quantizer.clip, sigma)
            header = Header(image.shape[2], image.shape[1], image.shape[0] == 1, latent)
            out.append(CompressedImage(pack_file(header, payload), float(ssim_latent[k]), float(ssim_quantized[k]),
                                       float(ssim_refined[k]), float(result.loss[k]),
                                       int(result.iterations[k].sum()), notes))
        return out

    def refine(self, z: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantizer-in-the-loop refinement of the latents ``z`` (:func:`refine_quantized`, at half the
        quantizer's step): returns the grid indices ``[N, d]`` and their SSIM at the model resolution."""
        q = self.quantizer
        loss_fn = per_image_loss(self.search.loss)
        (symbols,) = refine_quantized(z.to(self.device), [(q, z.shape[1])],
                                      lambda latents: loss_fn(self.generator.images(latents), targets),
                                      self.refine_iters, q.step / 2)
        with torch.no_grad():
            final_ssim = ssim(self.generator.images(q.dequantize(symbols)), targets)
        return symbols.cpu(), final_ssim.cpu()

    def _check_header(self, header: Header) -> None:
        cfg, latent = self.checkpoint.config, header.latent
        mine = self.checkpoint.fingerprint_bytes[:len(latent.fingerprint)]
        if latent.fingerprint != mine:
            raise WrongGeneratorError(latent.fingerprint, mine)
        # Only version-1 files store these; in version 2 the fingerprint stands for them.
        stored = (latent.latent_dim, latent.resolution)
        if None not in stored and stored != (cfg.latent_dim, cfg.resolution):
            raise GanrevError(f"file header (latent {latent.latent_dim}, resolution {latent.resolution}) does not "
                              f"match the generator (latent {cfg.latent_dim}, resolution {cfg.resolution})")


def decode_layer(layer: Layer, header: Header) -> torch.Tensor:
    """A layer's image ``[C, H, W]``, checked against the header's size and given the header's channels.

    The channel count comes from the header, not the layer: a WebP file, for one, cannot say "gray", and a
    residual of an RGB image may well decode as gray (all channels alike near mid-gray). A bare layer is
    first rebuilt into its complete file (:func:`ganrev.layers.complete_file`).
    """
    # imported here: ganrev.codecs (which ganrev.layers uses) imports this module
    from ganrev.codecs.specs import codec_from_spec
    from ganrev.layers import complete_file

    spec, data = complete_file(layer.codec, layer.data, header.width, header.height, header.gray)
    image = codec_from_spec(spec).decode(data)
    if tuple(image.shape[1:]) != (header.height, header.width):
        raise GanrevError(f"corrupted ganrev file: its {layer.codec} layer is {image.shape[2]}x{image.shape[1]}, "
                          f"the header says {header.width}x{header.height}")
    return from_uint8(to_uint8(convert_channels(image, "gray" if header.gray else "rgb")))


def encode_modulation(layer: int, quantizer: Quantizer, symbols: np.ndarray) -> Layer:
    """The ``film`` layer for the grid indices ``symbols`` ``[2C]`` of a modulation of batch-norm ``layer``,
    quantized by ``quantizer`` (whose clip must be ``MODULATION_CLIP``), with the smallest-payload sigma."""
    if quantizer.clip != MODULATION_CLIP or not 0 <= layer < 16:
        raise GanrevError(f"a modulation layer is quantized over [-{MODULATION_CLIP}, {MODULATION_CLIP}] at "
                          f"batch-norm layer 0-15, not clip {quantizer.clip} at layer {layer}")
    sigma, payload = quantizer.best_sigma(symbols)
    return Layer(FILM_CODEC, bytes([quantizer.bits - 1 | layer << 4, round(sigma * SIGMA_UNITS)]) + payload)


def film_fields(data: bytes) -> tuple[int, int]:
    """The batch-norm layer and bits per value a ``film`` layer's first byte names (``data`` non-empty)."""
    return data[0] >> 4, (data[0] & 0x0F) + 1


def decode_modulation(layer: Layer, norm_channels: list[int]) -> Modulation:
    """Inverse of :func:`encode_modulation`: the modulation ``[1, 2C]`` of a ``film`` layer, for a generator
    whose batch-norm layers have ``norm_channels`` channels."""
    data = layer.data
    if len(data) < 2:
        raise GanrevError("corrupted ganrev file: its modulation layer is too short")
    (index, bits), sigma_units = film_fields(data), data[1]
    if bits < 2 or index >= len(norm_channels) or not sigma_units:
        raise GanrevError("corrupted ganrev file: modulation layer fields out of range")
    quantizer = Quantizer(bits, MODULATION_CLIP)
    symbols = quantizer.decode_symbols(data[2:], 2 * norm_channels[index], sigma_units / SIGMA_UNITS)
    if symbols.min() < 0 or symbols.max() >= quantizer.levels:
        raise GanrevError("corrupted ganrev payload: modulation index out of range")
    return Modulation(index, quantizer.dequantize(torch.from_numpy(symbols)).view(1, -1))


def residual_image(image: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The image a residual layer codes: ``(image - prediction) / 2`` offset to mid-gray 128/255, in [0, 1].

    Halving lets every difference in [-1, 1] fit an 8-bit image (at the cost of 1 level of precision);
    ``prediction`` is the decoded latent image, 8-bit like :meth:`GanCodec.decode` returns it.
    """
    return ((image - prediction) / 2 + RESIDUAL_MID).clamp(0, 1)


def add_residual(prediction: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`residual_image`: ``prediction + 2 * (residual - 128/255)``, clipped and 8-bit rounded."""
    return from_uint8(to_uint8(prediction + 2 * (residual - RESIDUAL_MID)))


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    """Every byte of the file counts: bpp = bytes * 8 / pixels."""
    return num_bytes * 8 / (width * height)


def latent_entropy_bits(symbols: np.ndarray, quantizer: Quantizer, sigma: float) -> float:
    """Ideal code length (bits) of ``symbols`` under the entropy model: the bound the range coder approaches."""
    model_std = sigma / quantizer.step
    centre = (quantizer.levels - 1) / 2
    cdf = lambda x: 0.5 * (1 + math.erf((x - centre) / (model_std * math.sqrt(2))))  # noqa: E731
    total = 0.0
    for k in symbols.tolist():
        lo = 0.0 if k == 0 else cdf(k - 0.5)
        hi = 1.0 if k == quantizer.levels - 1 else cdf(k + 0.5)
        total -= math.log2(max(hi - lo, 1e-300))
    return total
