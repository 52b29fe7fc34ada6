"""Latent + modulation: a second layer that adapts the generator to one image, for more quality per byte.

A latent alone reaches what the generator can draw; on emoji it was not trained on, that stops near SSIM 0.79
however many bits the latent gets. A modulation layer codes, beside the latent, one scale and one shift per
channel of one of G's batch-norm outputs (:class:`ganrev.nets.dcgan.Modulation`, FiLM): 2C numbers that bend G
towards the image (128 for the third layer of ``emoji64``), decoded by the same single forward pass of G.
It is a residual in G's feature space rather than in pixels, which is why it is cheap: on validation emoji,
35 bytes of modulation of the third layer lift a 5-bit latent from SSIM 0.788 to 0.83, where residual
layers in the 20-50 bytes a 0.25 bpp budget leaves raised the held-out mean by 0.007 (ganrev.bitstream.ratecontrol).

Encoding: from the latent search's z and zero modulation, Adam on (z, modulation) together
(:func:`fit_modulation`), then quantizer-in-the-loop refinement of both (straight-through,
:func:`ganrev.bitstream.quantize.refine_quantized`, as for the latent alone; plain rounding of the modulation loses
most of its gain: 0.797 instead of 0.828 after 20 steps) at every pair of precisions. Pairs share a batch
of up to ``CHUNK_IMAGES`` rows, each pair's rows on its own grids, so a few images do not run the generator
a row at a time (one image: a layer's eight pairs together; ``compress --target-bpp`` on one CPU thread
10 s instead of 16 s, the same files). The modulation is quantized like the latent: a uniform grid over
``[-MODULATION_CLIP, MODULATION_CLIP]``, range-coded under N(0, sigma) with sigma chosen per file.

The layer's bytes (layer codec ``film``) are described in :mod:`ganrev.bitstream.container` and written by
:func:`ganrev.codecs.gan.encode_modulation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ganrev.adam import Adam
from ganrev.codecs.gan import MODULATION_CLIP, GanCodec, encode_modulation
from ganrev.errors import GanrevError
from ganrev.invert import LOSSES, InversionResult, target_loss
from ganrev.nets.dcgan import Generator, Modulation
from ganrev.bitstream.quantize import Quantizer, RowBlocks, refine_quantized

CHUNK_IMAGES = 64  # rows fitted or refined together (the latent search's CPU chunk): bounds the autograd memory


@dataclass(frozen=True)
class ModulationSearch:
    """How a modulation layer is fitted: ``iters`` Adam steps on (z, modulation) at step ``lr``, then
    ``refine_iters`` quantizer-in-the-loop steps at each precision, with the search ``loss``."""

    iters: int = 150
    lr: float = 0.05
    refine_iters: int = 30
    refine_lr: float = 0.0125
    loss: str = "ssim"  # rate control chooses files by SSIM
    layers: tuple[int, ...] = (-1, -2)  # batch-norm layers tried, counted from the output's end as well
    bits: tuple[int, ...] = (3, 4)  # modulation precisions tried

    def __post_init__(self) -> None:
        steps_ok = math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.refine_lr) and self.refine_lr > 0
        if self.loss not in LOSSES:
            raise GanrevError(f"unknown modulation loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.iters < 0 or self.refine_iters < 0 or not steps_ok:
            raise GanrevError("modulation iters and refine_iters must be >= 0, lr and refine_lr finite and > 0")
        if not self.bits or any(not 2 <= bits <= 16 for bits in self.bits):
            raise GanrevError(f"modulation bits must be between 2 and 16, got {self.bits!r}")


def resolve_layer(generator: Generator, layer: int) -> int:
    """A batch-norm layer index, negative ones counted from the end (-1: the last hidden layer's)."""
    count = len(generator.norm_channels())
    if not -count <= layer < count:
        raise GanrevError(f"the generator has batch-norm layers 0-{count - 1}, not {layer}")
    return layer % count


def fit_modulation(generator: Generator, targets: torch.Tensor, z: torch.Tensor, layer: int,
                   options: ModulationSearch, *, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the latents ``z`` ``[N, d]`` (from the latent search) and a modulation of batch-norm ``layer``
    (negative: counted from the end; from zero) together, towards ``targets`` ``[N, C, R, R]`` in [0, 1].
    Returns the continuous ``(z, params)``; latents stay in ``[-clip, clip]``, modulation values in
    ``[-MODULATION_CLIP, MODULATION_CLIP]``."""
    layer = resolve_layer(generator, layer)
    channels = generator.norm_channels()[layer]
    loss_at = target_loss(options.loss, targets)
    joint = torch.cat([z.to(targets.device), torch.zeros(len(z), 2 * channels, device=targets.device)], dim=1)
    dim = z.shape[1]
    adam = Adam(joint)
    joint.requires_grad_(True)
    for _ in range(options.iters):
        loss = loss_at(generator.images(joint[:, :dim], Modulation(layer, joint[:, dim:])))
        (grad,) = torch.autograd.grad(loss.sum(), joint)
        adam.step(grad, options.lr)
        with torch.no_grad():
            joint[:, :dim].clamp_(-clip, clip)
            joint[:, dim:].clamp_(-MODULATION_CLIP, MODULATION_CLIP)
    joint = joint.detach()
    return joint[:, :dim], joint[:, dim:]


def refine_modulated(generator: Generator, targets: torch.Tensor, z: torch.Tensor, params: torch.Tensor, layer: int,
                     precisions: Sequence[tuple[Quantizer, Quantizer]],
                     options: ModulationSearch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Quantizer-in-the-loop refinement of a fitted (z, modulation) together (:func:`refine_quantized`, at
    ``options.refine_lr``), for each ``(latent quantizer, modulation quantizer)`` of ``precisions``; all of them
    in one batch, each pair's copy of the rows on its own grids (a single image otherwise runs the generator on
    one row at a time). Returns per pair the grid indices of the latents ``[N, d]`` and of the modulation
    ``[N, 2C]``."""
    dim, copies = z.shape[1], len(precisions)
    targets = targets.repeat(copies, 1, 1, 1)
    target_at = target_loss(options.loss, targets)

    def loss_at(values: torch.Tensor) -> torch.Tensor:
        return target_at(generator.images(values[:, :dim], Modulation(layer, values[:, dim:])))

    latent_symbols, modulation_symbols = refine_quantized(
        torch.cat([z, params], dim=1).to(targets.device).repeat(copies, 1),
        [(RowBlocks(tuple(latent for latent, _ in precisions)), dim),
         (RowBlocks(tuple(modulation for _, modulation in precisions)), params.shape[1])],
        loss_at, options.refine_iters, options.refine_lr)
    return list(zip(latent_symbols.cpu().chunk(copies), modulation_symbols.cpu().chunk(copies)))


def modulated_files(codec: GanCodec, images: list[torch.Tensor], search: InversionResult, latent_bits: tuple[int, ...],
                    options: ModulationSearch = ModulationSearch()) -> list[dict[tuple[int, int, int], bytes]]:
    """Each image's ``latent+modulation`` files, keyed ``(latent bits, layer, modulation bits)``: for every layer
    of ``options.layers`` one fit from the latents of ``search`` (of the same images, as
    :meth:`GanCodec.search_latents` makes it), then a refinement and a file for every pair of precisions."""
    if codec.coded != codec.checkpoint.config.latent_dim:
        raise GanrevError("a latent+modulation file codes the whole latent, not its leading coordinates")
    files: list[dict[tuple[int, int, int], bytes]] = []
    for first in range(0, len(images), CHUNK_IMAGES):
        chunk = slice(first, first + CHUNK_IMAGES)
        files += _modulated_chunk(codec, images[chunk], search.z[chunk], latent_bits, options)
    return files


def _modulated_chunk(codec: GanCodec, images: list[torch.Tensor], z_searched: torch.Tensor,
                     latent_bits: tuple[int, ...],
                     options: ModulationSearch) -> list[dict[tuple[int, int, int], bytes]]:
    """:func:`modulated_files` for at most ``CHUNK_IMAGES`` images."""
    generator = codec.generator
    targets = torch.stack([codec.to_model_input(image)[0] for image in images]).to(codec.device)
    files: list[dict[tuple[int, int, int], bytes]] = [{} for _ in images]
    pairs = [(bits, modulation_bits) for bits in latent_bits for modulation_bits in options.bits]
    pairs_per_batch = max(1, CHUNK_IMAGES // len(images))  # a batch of at most CHUNK_IMAGES rows
    for layer in dict.fromkeys(resolve_layer(generator, layer) for layer in options.layers):
        z, params = fit_modulation(generator, targets, z_searched, layer, options, clip=codec.search.clip)
        for first in range(0, len(pairs), pairs_per_batch):
            batch = pairs[first:first + pairs_per_batch]
            precisions = [(Quantizer(bits, codec.search.clip), Quantizer(modulation_bits, MODULATION_CLIP))
                          for bits, modulation_bits in batch]
            refined = refine_modulated(generator, targets, z, params, layer, precisions, options)
            for (bits, modulation_bits), (latent_q, modulation_q), (latent_symbols, modulation_symbols) in zip(
                    batch, precisions, refined):
                for k, image in enumerate(images):
                    film = encode_modulation(layer, modulation_q, modulation_symbols[k].numpy())
                    files[k][bits, layer, modulation_bits] = codec.latent_file(image, latent_q, latent_symbols[k],
                                                                               (film,))
    return files
