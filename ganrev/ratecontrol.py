"""Rate control: the smallest .grv file reaching a target SSIM, or the best SSIM within a target size, per image.

One batched latent search serves every image and every latent precision (:meth:`GanCodec.search_latents`);
each ``bits`` in :attr:`RateTarget.bits` then gets its quantizer-in-the-loop refinement. Per image the engine
weighs three kinds of file, all measured, never estimated:

- ``latent``: the latent alone, at each ``bits``;
- ``latent+residual``: a latent plus a residual layer ``x - G(z)`` (:func:`ganrev.codec.residual_image`),
  coded by each residual coder (:data:`RESIDUAL_CODERS`) at every quality a bisection visits;
- ``fallback``: a classical layer alone (:data:`FALLBACK_CODERS`: AVIF 4:4:4, lossy WebP at full size and
  shrunk 2x and 4x, lossless WebP (posterized), JPEG 4:4:4), for images the generator does not help.

Every candidate is packed into its real file and decoded the way ``ganrev decompress`` decodes it (the latent
image by one generator pass at batch size 1, then the layer); its SSIM against the original is what counts.
``target_ssim``: the file with the fewest bytes whose SSIM is >= the target (ties: higher SSIM);
``target_bpp``: the file with the highest SSIM within the byte budget ``floor(bpp * W * H / 8)`` (ties:
fewer bytes). Since fallback is one of the candidates, no file is bigger (SSIM target) or worse (size
target) than the best classical layer the engine found, plus the .grv header (7-8 bytes).

Search over qualities: bytes and SSIM rise with a coder's quality knob, nearly monotonically, so each coder is
bisected (about 8 encodes of its 14-101 levels) rather than swept; every encode is cached, and the choice is
made over all visited points, so a non-monotone step costs at most a slightly larger file, never a target
missed. A coder is skipped without a bisection when even its lowest quality is already larger than the best
file found (SSIM target) or than the budget (size target).

An image that cannot meet its target still gets the best file found (the highest SSIM, or the smallest
file), with ``met`` False and the ``reason``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ganrev.codec import (
    GanCodec,
    Header,
    Layer,
    add_residual,
    bits_per_pixel,
    decode_layer,
    pack_file,
    residual_image,
    unpack_file,
)
from ganrev.errors import GanrevError
from ganrev.invert import InversionResult
from ganrev.layers import CODER_LEVELS, encode_layer
from ganrev.metrics import ssim

DEFAULT_BITS = (3, 4, 5, 6)
"""Latent precisions tried. On validation emoji (bits: mean bytes, SSIM): 3: 45, 0.751; 4: 57, 0.779;
5: 69, 0.788; 6: 80, 0.790; 8: 105, 0.788 -- above 6 bits only bytes grow."""

RESIDUAL_CODERS = ("av1", "vp8", "vp8l")
"""Coders tried for a residual layer: AVIF 4:4:4 (a bare AV1 layer), lossy WebP, posterized lossless WebP.
JPEG 4:4:4 and shrunk WebP never gave the smallest residual file on validation emoji, so they are not tried."""

FALLBACK_CODERS = ("av1", "vp8", "vp8-down2", "vp8-down4", "vp8l", "jpeg444")


@dataclass(frozen=True)
class RateTarget:
    """What to aim for: exactly one of ``ssim`` (in (0, 1]) and ``bpp`` (> 0); checked on construction."""

    ssim: float | None = None
    bpp: float | None = None
    bits: tuple[int, ...] = DEFAULT_BITS
    fallback: bool = True  # False: never a fallback file (e.g. to study what the generator alone achieves)

    def __post_init__(self) -> None:
        if (self.ssim is None) == (self.bpp is None):
            raise GanrevError("give exactly one target: --target-ssim or --target-bpp"
                              + (", not both" if self.ssim is not None else ""))
        if self.ssim is not None and not (math.isfinite(self.ssim) and 0 < self.ssim <= 1):
            raise GanrevError(f"invalid --target-ssim {self.ssim!r}: must be in (0, 1]")
        if self.bpp is not None and not (math.isfinite(self.bpp) and self.bpp > 0):
            raise GanrevError(f"invalid --target-bpp {self.bpp!r}: must be finite and > 0")
        if not self.bits or any(not 2 <= bits <= 16 for bits in self.bits):
            raise GanrevError(f"latent bits to try must be between 2 and 16, got {self.bits!r}")

    def describe(self) -> str:
        return f"SSIM >= {self.ssim}" if self.ssim is not None else f"<= {self.bpp} bpp"


@dataclass(frozen=True)
class RatedFile:
    """The file chosen for one image and what it is made of; ``ssim`` is measured on its decode."""

    data: bytes
    mode: str
    ssim: float
    bits: int | None  # latent bits per coordinate; None in fallback mode
    latent_bytes: int  # the range-coded latent payload (0 in fallback mode)
    layers: tuple[tuple[str, int], ...]  # (codec id, bytes) of each layer
    met: bool
    reason: str | None  # why the target was not met

    @property
    def header_bytes(self) -> int:
        """Everything that is neither latent payload nor layer: header, layer lengths, check."""
        return len(self.data) - self.latent_bytes - sum(size for _, size in self.layers)


@dataclass(frozen=True)
class _Candidate:
    data: bytes
    ssim: float
    bits: int | None


def budget_bytes(target: RateTarget, width: int, height: int) -> int:
    """The most bytes a file may have for ``target.bpp``: every byte of the file counts."""
    assert target.bpp is not None
    return math.floor(target.bpp * width * height / 8 + 1e-9)


class _Sweep:
    """One coder's files for one image, by level index, encoded on first use and cached."""

    def __init__(self, levels: tuple[int, ...], make: Callable[[int], _Candidate]) -> None:
        self.levels, self._make, self.seen = levels, make, {}

    def at(self, index: int) -> _Candidate:
        if index not in self.seen:
            self.seen[index] = self._make(self.levels[index])
        return self.seen[index]

    def bisect_ssim(self, target: float) -> None:
        """Visit the lowest level whose SSIM reaches ``target``, if the highest does."""
        low, high = 0, len(self.levels) - 1
        if self.at(high).ssim < target or self.at(low).ssim >= target:
            return
        while high - low > 1:  # at(low) misses, at(high) reaches
            middle = (low + high) // 2
            low, high = (low, middle) if self.at(middle).ssim >= target else (middle, high)

    def bisect_bytes(self, budget: int) -> None:
        """Visit the highest level whose file fits ``budget``, if the lowest does."""
        low, high = 0, len(self.levels) - 1
        if len(self.at(low).data) > budget or len(self.at(high).data) <= budget:
            return
        while high - low > 1:  # at(low) fits, at(high) does not
            middle = (low + high) // 2
            low, high = (middle, high) if len(self.at(middle).data) <= budget else (low, middle)


def _score(image: torch.Tensor, decoded: torch.Tensor) -> float:
    return float(ssim(decoded[None], image[None])[0])


def choose_file(image: torch.Tensor, latent_files: dict[int, bytes], decoder: GanCodec,
                target: RateTarget) -> RatedFile:
    """The file for one 8-bit image ``[C, H, W]``, given its latent-mode files at each ``bits`` (see module doc).

    ``decoder`` decodes the latent files (its generator made them); ``latent_files`` may be empty, leaving
    fallback files only.
    """
    height, width = image.shape[1:]
    gray = image.shape[0] == 1
    candidates: list[_Candidate] = []
    budget = budget_bytes(target, width, height) if target.bpp is not None else None

    def best() -> _Candidate | None:
        if target.ssim is not None:
            reaching = [c for c in candidates if c.ssim >= target.ssim]
            return min(reaching, key=lambda c: (len(c.data), -c.ssim), default=None)
        fitting = [c for c in candidates if len(c.data) <= budget]
        return max(fitting, key=lambda c: (c.ssim, -len(c.data)), default=None)

    def sweep(make: Callable[[int], _Candidate], coder: str) -> None:
        run = _Sweep(CODER_LEVELS[coder], make)
        lowest, incumbent = run.at(0), best()
        if target.ssim is not None:
            if incumbent is None or len(lowest.data) < len(incumbent.data):
                run.bisect_ssim(target.ssim)
        else:
            run.bisect_bytes(budget)
        candidates.extend(run.seen.values())

    # latent files first: they set the bar every layered file must beat
    latents = []
    for bits, data in sorted(latent_files.items()):
        header, payload = unpack_file(data)
        prediction = decoder.decode(data)  # what decompress makes of the latent alone
        candidates.append(_Candidate(data, _score(image, prediction), bits))
        latents.append((bits, header, payload, prediction))
    if target.fallback:
        for coder in FALLBACK_CODERS:
            def fallback(level: int, coder: str = coder) -> _Candidate:
                layer = Layer(*encode_layer(coder, image, level))
                header = Header(width, height, gray, None, (layer,))
                return _Candidate(pack_file(header, b""), _score(image, decode_layer(layer, header)), None)
            sweep(fallback, coder)
    # residuals on the most accurate latents first: their residuals are the cheapest to code
    for bits, header, payload, prediction in sorted(latents, key=lambda item: -_score(image, item[3])):
        residual = residual_image(image, prediction)
        for coder in RESIDUAL_CODERS:
            def layered(level: int, coder: str = coder, header: Header = header, payload: bytes = payload,
                        prediction: torch.Tensor = prediction, bits: int = bits,
                        residual: torch.Tensor = residual) -> _Candidate:
                layered_header = replace(header, layers=(Layer(*encode_layer(coder, residual, level)),))
                decoded = add_residual(prediction, decode_layer(layered_header.layers[0], layered_header))
                return _Candidate(pack_file(layered_header, payload), _score(image, decoded), bits)
            sweep(layered, coder)

    chosen = best()
    reason = None
    if chosen is None:
        if target.ssim is not None:
            chosen = max(candidates, key=lambda c: (c.ssim, -len(c.data)))
            reason = (f"the best file found decodes to SSIM {chosen.ssim:.4f} < {target.ssim} "
                      f"({len(chosen.data)} bytes)")
        else:
            chosen = min(candidates, key=lambda c: (len(c.data), -c.ssim))
            reason = (f"the smallest file found has {len(chosen.data)} bytes "
                      f"({bits_per_pixel(len(chosen.data), width, height):.4f} bpp) > {target.bpp} bpp "
                      f"({budget} bytes)")
    return _rated(chosen, image, decoder, reason)


def _rated(chosen: _Candidate, image: torch.Tensor, decoder: GanCodec, reason: str | None) -> RatedFile:
    header, payload = unpack_file(chosen.data)
    measured = _score(image, decoder.decode(chosen.data))  # the whole file, decoded as decompress does
    if measured != chosen.ssim:
        raise GanrevError(f"internal error: a file measured at SSIM {chosen.ssim} decodes to {measured}")
    return RatedFile(chosen.data, header.mode, measured, chosen.bits, len(payload),
                     tuple((layer.codec, len(layer.data)) for layer in header.layers), reason is None, reason)


def compress_to_target(codec: GanCodec, images: list[torch.Tensor], target: RateTarget,
                       search: InversionResult | None = None) -> list[RatedFile]:
    """One file per 8-bit image ``[C, H, W]`` for ``target``: one batched latent search (or ``search``, an
    earlier :meth:`GanCodec.search_latents` of the same images), each ``target.bits`` refined, then
    :func:`choose_file` per image. ``codec`` supplies the generator and the search and refinement options;
    its own ``bits`` is not used."""
    if not images:
        return []
    for note in sorted({note for image in images for note in codec.to_model_input(image)[1]}):
        warnings.warn(note, stacklevel=2)
    latent_files = latent_files_by_bits(codec, images, target.bits, search)
    return [choose_file(image, files, codec, target) for image, files in zip(images, latent_files)]


def latent_files_by_bits(codec: GanCodec, images: list[torch.Tensor], bits: tuple[int, ...],
                         search: InversionResult | None = None) -> list[dict[int, bytes]]:
    """Each image's latent-mode file at each of ``bits``, from one latent search (``search`` if given): the
    part of :func:`compress_to_target` that does not depend on the target, to re-use for several targets."""
    result = search if search is not None else codec.search_latents(images)
    files: list[dict[int, bytes]] = [{} for _ in images]
    for precision in bits:
        at_bits = GanCodec(codec.checkpoint, bits=precision, search=codec.search, refine_iters=codec.refine_iters,
                           device=codec.device)
        for per_image, compressed in zip(files, at_bits.compress_latents(images, result)):
            per_image[precision] = compressed.data
    return files
