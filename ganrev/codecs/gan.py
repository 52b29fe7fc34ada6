"""The GAN-reversal codec (an :class:`~ganrev.codecs.base.ImageCodec`): search, quantize, bitstream.

Compressing an image = search z* (:mod:`ganrev.invert`), quantize it on a uniform grid of ``2**bits``
points over ``[-clip, clip]``, refine the quantized latent with the quantizer in the loop
(straight-through gradients), then range-code the grid indices with a discretised Gaussian model
N(0, sigma) - the generator's prior, with sigma chosen per file to minimise its size.

The quantizer and its entropy coding are :mod:`ganrev.bitstream.quantize`'s; the file format is :mod:`ganrev.bitstream.container`'s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ganrev.bitstream.container import (
    FILM_CODEC,
    FINGERPRINT_BYTES,
    SIGMA_UNITS,
    Header,
    LatentCoding,
    Layer,
    pack_file,
    unpack_file,
)
from ganrev.errors import GanrevError
from ganrev.invert import InversionResult, SearchOptions, invert, leading_mask, target_loss
from ganrev.io import convert_channels, from_uint8, resize, to_uint8
from ganrev.metrics import ssim
from ganrev.models import GeneratorCheckpoint
from ganrev.nets.dcgan import Modulation
from ganrev.bitstream.quantize import Quantizer, refine_quantized

# Quantizer-in-the-loop refinement steps by search start. After the encoder start's converged search the
# 50 steps gain +0.0002 SSIM at 6 bits for +50 % encoding time (validation sweep of
# experiments/ablation_init.py; +0.001 at 4 bits in a library run on the same images), so that start skips
# them; after the pool and random starts' small final steps refinement recovers most of the rounding loss.
REFINE_ITERS = {"encoder": 0, "pool": 50, "random": 50}
# A search of 0 iterations (``--iters 0``, ``--effort 0``) is not refined either: it asks for its starting point as it
# is (E(x), or the best pool sample), in milliseconds, and refinement is a search of its own.
MODULATION_CLIP = 3.0  # modulation values are quantized over [-3, 3] (fitted ones have std ~1)
RESIDUAL_MID = 128 / 255  # a zero residual, exactly representable in 8 bits


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
    ssim_latent: float  # G(z*) before quantization (z*: the search's point that the file rounds)
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
        """``refine_iters``: quantizer-in-the-loop refinement steps; None: ``REFINE_ITERS`` for the search's start,
        0 after no search (``search.iters`` 0)."""
        self.checkpoint = checkpoint
        self.quantizer = Quantizer(bits, search.clip)
        self.search = search
        default_refine = REFINE_ITERS[search.init] if search.iters else 0
        self.refine_iters = default_refine if refine_iters is None else refine_iters
        self.device = torch.device(device) if device is not None else next(checkpoint.generator.parameters()).device
        self.generator = checkpoint.generator.to(self.device).eval().requires_grad_(False)
        self.progress = progress
        latent_dim = checkpoint.config.latent_dim
        leading_mask(latent_dim, search.leading)  # more leading coordinates than the latent has: refused now
        # The latent coordinates a file holds: the search's leading ones, or all.
        self.coded = search.leading or latent_dim

    def full_latents(self, coded: torch.Tensor) -> torch.Tensor:
        """Latents ``[N, latent_dim]`` from their first coordinates ``[N, k]``, the others at the prior's mean 0
        (as a file that codes k leading coordinates decodes)."""
        return torch.nn.functional.pad(coded, (0, self.checkpoint.config.latent_dim - coded.shape[1]))

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
        latent, latent_dim = header.latent, self.checkpoint.config.latent_dim
        if latent.coded(latent_dim) > latent_dim:
            raise GanrevError(f"corrupted ganrev file: it codes {latent.leading} latent coordinates, the generator "
                              f"has {latent_dim}")
        quantizer = Quantizer(latent.bits, latent.clip)
        symbols = quantizer.decode_symbols(payload, latent.coded(latent_dim), latent.sigma)
        if symbols.min() < 0 or symbols.max() >= quantizer.levels:
            raise GanrevError("corrupted ganrev payload: latent index out of range")
        z = self.full_latents(quantizer.dequantize(torch.from_numpy(symbols)).view(1, -1)).to(self.device)
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
        z = result.latents_for(self.quantizer.bits)  # a search that tracked this grid's rounding kept its best
        with torch.no_grad():
            ssim_latent = ssim(self.generator.images(z.to(self.device)), targets).cpu()
            naive = self.full_latents(self.quantizer.dequantize(self.quantizer.quantize(z[:, :self.coded])))
            ssim_quantized = ssim(self.generator.images(naive.to(self.device)), targets).cpu()
        symbols, ssim_refined = self.refine(z, targets)
        out = []
        for k, (image, (_, notes)) in enumerate(zip(images, prepared)):
            out.append(CompressedImage(self.latent_file(image, self.quantizer, symbols[k]), float(ssim_latent[k]),
                                       float(ssim_quantized[k]), float(ssim_refined[k]), float(result.loss[k]),
                                       int(result.iterations[k].sum()), notes))
        return out

    def latent_file(self, image: torch.Tensor, quantizer: Quantizer, symbols: torch.Tensor,
                    layers: tuple[Layer, ...] = ()) -> bytes:
        """The file of ``image`` (its size and channels) holding the grid indices ``symbols`` ``[k]`` of
        ``quantizer`` (range-coded with the smallest-payload sigma) and ``layers`` after them: the latent's first
        k coordinates (k below the generator's latent size: a file of leading coordinates)."""
        sigma, payload = quantizer.best_sigma(symbols.numpy())
        leading = len(symbols) if len(symbols) < self.checkpoint.config.latent_dim else None
        latent = LatentCoding(self.checkpoint.fingerprint_bytes[:FINGERPRINT_BYTES], quantizer.bits, quantizer.clip,
                              sigma, leading=leading)
        return pack_file(Header(image.shape[2], image.shape[1], image.shape[0] == 1, latent, layers), payload)

    def refine(self, z: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantizer-in-the-loop refinement of the latents ``z`` (:func:`refine_quantized`, at half the
        quantizer's step) of their coded coordinates: returns the grid indices ``[N, k]`` and their SSIM at the
        model resolution."""
        q = self.quantizer
        loss_at = target_loss(self.search.loss, targets)
        (symbols,) = refine_quantized(z[:, :self.coded].to(self.device), [(q, self.coded)],
                                      lambda latents: loss_at(self.generator.images(self.full_latents(latents))),
                                      self.refine_iters, q.step / 2)
        with torch.no_grad():
            final_ssim = ssim(self.generator.images(self.full_latents(q.dequantize(symbols))), targets)
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
    first rebuilt into its complete file (:func:`ganrev.bitstream.layers.complete_file`).
    """
    # imported here: ganrev.codecs (which ganrev.bitstream.layers uses) imports this module
    from ganrev.codecs.specs import codec_from_spec
    from ganrev.bitstream.layers import complete_file

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
