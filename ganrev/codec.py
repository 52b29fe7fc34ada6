"""The codec interface every scheme implements, and the GAN-reversal codec: quantize + bitstream.

Compressing an image = search z* (:mod:`ganrev.invert`), quantize it on a uniform grid of ``2**bits``
points over ``[-clip, clip]``, refine the quantized latent with the quantizer in the loop
(straight-through gradients), then range-code the grid indices with a discretised Gaussian model
N(0, sigma) - the generator's prior, with sigma chosen per file to minimise its size.

Why a uniform grid in z rather than uniform in the Gaussian CDF: a CDF-uniform grid makes every symbol
equally likely under the prior, so entropy coding could not save a single bit; a uniform grid with an
entropy coder sits ~0.25 bit/coordinate from the Gaussian's rate-distortion bound at high rate, fixed-rate
Lloyd-Max designs do worse.

File layout (format version 1; integers little-endian, ``varint`` = unsigned LEB128)::

    offset  size  field
    0       3     magic "GRV"
    3       1     format version (1)
    4       4     generator fingerprint: first 4 bytes of SHA-256 of the weights
    8       1     bits per latent coordinate (2..16)
    9       1     clip, in 1/16 units (latents lie in [-clip, clip])
    10      1     sigma of the entropy model, in 1/32 units
    11      1     flags: bit 0 = the original image had one channel (gray)
    12      var   latent size (varint), model resolution (varint), original width, height (varints)
    ...     var   payload: range-coded grid indices (constriction RangeEncoder, 32-bit words,
                  little-endian, trailing zero bytes dropped)
    end-4   4     CRC32 of every byte before it

A file whose CRC fails is reported as corrupted or truncated; one made with another generator, one of an
unknown version, or one whose header disagrees with the generator is refused with the cause.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import constriction
import numpy as np
import torch

from ganrev.errors import GanrevError
from ganrev.invert import InversionResult, SearchOptions, invert, per_image_loss
from ganrev.io import convert_channels, from_uint8, resize, to_uint8
from ganrev.metrics import ssim
from ganrev.models import GeneratorCheckpoint


@runtime_checkable
class ImageCodec(Protocol):
    """One compression scheme: ``encode`` an image to the bytes of a file a user could store, and back.

    Images are float32 tensors ``[C, H, W]`` in [0, 1] (see :mod:`ganrev.io`). ``decode(encode(x))`` has the
    shape and channel count of ``x``. ``name`` is the row label used in tables, e.g. ``"JPEG (10%)"``.
    """

    name: str

    def encode(self, image: torch.Tensor) -> bytes: ...

    def decode(self, data: bytes) -> torch.Tensor: ...


MAGIC = b"GRV"
FORMAT_VERSION = 1
EXTENSION = ".grv"
FINGERPRINT_BYTES = 4
_FIXED_HEADER = struct.Struct("<3sB4sBBBB")
_MIN_FILE = _FIXED_HEADER.size + 4 + 4  # fixed header, four 1-byte varints, CRC32
SIGMA_UNITS = 32
CLIP_UNITS = 16


@dataclass(frozen=True)
class Header:
    """Everything in a .grv file except the payload."""

    fingerprint: bytes
    bits: int
    clip: float
    sigma: float
    latent_dim: int
    resolution: int
    width: int
    height: int
    gray: bool
    version: int = FORMAT_VERSION


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


def pack_file(header: Header, payload: bytes) -> bytes:
    """Serialise a header and payload into the bytes of a .grv file (layout in the module docstring)."""
    body = _FIXED_HEADER.pack(MAGIC, header.version, header.fingerprint[:FINGERPRINT_BYTES], header.bits,
                              round(header.clip * CLIP_UNITS), round(header.sigma * SIGMA_UNITS), int(header.gray))
    body += b"".join(_varint(v) for v in (header.latent_dim, header.resolution, header.width, header.height))
    body += payload
    return body + struct.pack("<I", zlib.crc32(body))


def unpack_file(data: bytes) -> tuple[Header, bytes]:
    """Parse and verify a .grv file; raise GanrevError naming the cause when it is not a valid one."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise GanrevError("not a ganrev compressed file (bad magic bytes)")
    if len(data) < _MIN_FILE:
        raise GanrevError(f"truncated ganrev file: {len(data)} bytes, at least {_MIN_FILE} needed")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise GanrevError("corrupted or truncated ganrev file (CRC32 mismatch)")
    _, version, fingerprint, bits, clip, sigma, flags = _FIXED_HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise GanrevError(f"ganrev file format version {version} is not supported by this ganrev "
                          f"(it reads version {FORMAT_VERSION})")
    pos = _FIXED_HEADER.size
    fields = []
    for _ in range(4):
        value, pos = _read_varint(data, pos)
        fields.append(value)
    latent_dim, resolution, width, height = fields
    if not 2 <= bits <= 16 or clip == 0 or sigma == 0 or flags > 1 or 0 in fields or pos > len(data) - 4:
        raise GanrevError("corrupted ganrev file: header fields out of range")
    header = Header(fingerprint, bits, clip / CLIP_UNITS, sigma / SIGMA_UNITS, latent_dim, resolution, width,
                    height, bool(flags), version)
    return header, data[pos:-4]


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
                 refine_iters: int = 50, device: str | torch.device | None = None, progress: bool = False) -> None:
        self.checkpoint = checkpoint
        self.quantizer = Quantizer(bits, search.clip)
        self.search = search
        self.refine_iters = refine_iters
        self.device = torch.device(device) if device is not None else next(checkpoint.generator.parameters()).device
        self.generator = checkpoint.generator.to(self.device).eval().requires_grad_(False)
        self.progress = progress

    # -- the ImageCodec interface
    def encode(self, image: torch.Tensor) -> bytes:
        return self.compress([image])[0].data

    def decode(self, data: bytes) -> torch.Tensor:
        """Decode one file: a single forward pass of G at batch size 1 (the same path compress reports)."""
        header, payload = unpack_file(data)
        self._check_header(header)
        quantizer = Quantizer(header.bits, header.clip)
        symbols = quantizer.decode_symbols(payload, header.latent_dim, header.sigma)
        if symbols.min() < 0 or symbols.max() >= quantizer.levels:
            raise GanrevError("corrupted ganrev payload: latent index out of range")
        z = quantizer.dequantize(torch.from_numpy(symbols)).view(1, -1).to(self.device)
        with torch.no_grad():
            image = self.generator.images(z)[0].float().cpu()
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
            header = Header(self.checkpoint.fingerprint_bytes[:FINGERPRINT_BYTES], self.quantizer.bits,
                            self.quantizer.clip, sigma, self.checkpoint.config.latent_dim,
                            self.checkpoint.config.resolution, image.shape[2], image.shape[1], image.shape[0] == 1)
            out.append(CompressedImage(pack_file(header, payload), float(ssim_latent[k]), float(ssim_quantized[k]),
                                       float(ssim_refined[k]), float(result.loss[k]),
                                       int(result.iterations[k].sum()), notes))
        return out

    def refine(self, z: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantizer-in-the-loop refinement: Adam on a continuous z whose forward pass sees Q(z).

        The straight-through estimator passes G's gradient at Q(z) to z. The best *quantized* latent seen
        (by the search loss) is kept, so refinement never makes an image worse than plain rounding.
        Returns the grid indices ``[N, d]`` and their SSIM at the model resolution.
        """
        q = self.quantizer
        loss_fn = per_image_loss(self.search.loss)
        latent = z.to(self.device).clone()
        best_symbols = q.quantize(latent)
        with torch.no_grad():
            best_loss = loss_fn(self.generator.images(q.dequantize(best_symbols)), targets)
        optimiser = torch.optim.Adam([latent.requires_grad_(True)], lr=q.step / 2)
        for _ in range(self.refine_iters):
            symbols = q.quantize(latent.detach())
            snapped = latent + (q.dequantize(symbols) - latent).detach()
            loss = loss_fn(self.generator.images(snapped), targets)
            better = loss.detach() < best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_symbols = torch.where(better[:, None], symbols, best_symbols)
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            with torch.no_grad():
                latent.clamp_(-q.clip, q.clip)
        with torch.no_grad():
            final_ssim = ssim(self.generator.images(q.dequantize(best_symbols)), targets)
        return best_symbols.cpu(), final_ssim.cpu()

    def _check_header(self, header: Header) -> None:
        cfg = self.checkpoint.config
        mine = self.checkpoint.fingerprint_bytes[:FINGERPRINT_BYTES]
        if header.fingerprint != mine:
            raise WrongGeneratorError(header.fingerprint, mine)
        if header.latent_dim != cfg.latent_dim or header.resolution != cfg.resolution:
            raise GanrevError(f"file header (latent {header.latent_dim}, resolution {header.resolution}) does not "
                              f"match the generator (latent {cfg.latent_dim}, resolution {cfg.resolution})")


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
