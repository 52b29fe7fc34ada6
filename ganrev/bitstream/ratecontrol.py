"""Rate control: the smallest .grv file reaching a target SSIM, or the best SSIM within a target size, per image.

One batched latent search serves every image, every latent precision and every target
(:meth:`GanCodec.search_latents`; :func:`compress_to_targets`), keeping for each ``bits`` in
:attr:`RateTarget.bits` up to :data:`TRACK_ROUNDING_UP_TO` the iterate whose rounding to that grid scores best
(``SearchOptions.rounded_bits``); each ``bits`` then gets its quantizer-in-the-loop refinement. Per image the engine
weighs four kinds of file, all measured, never estimated:

- ``latent``: the latent alone, at each ``bits``; and, for a generator trained with nested dropout, the latent's
  first k coordinates alone for each k of :attr:`RateTarget.leading` (one more search each), the small files low
  rates need;
- ``latent+residual``: a latent plus a residual layer ``x - G(z)`` (:func:`ganrev.codecs.gan.residual_image`),
  coded by each residual coder (:data:`RESIDUAL_CODERS`) at its qualities;
- ``latent+modulation``: a latent plus a modulation of one of G's batch-norm layers (:mod:`ganrev.bitstream.modulation`),
  at each pair of latent and modulation precisions, for each layer tried (:attr:`RateTarget.modulation`);
- ``fallback``: a classical layer alone (:data:`FALLBACK_CODERS`: lossy WebP at full size and shrunk 2x and
  4x, lossless WebP (posterized), JPEG 4:4:4, AVIF 4:4:4), for images the generator does not help.

Every candidate is packed into its real file and decoded the way ``ganrev decompress`` decodes it (the latent
image by one generator pass at batch size 1, then the layer); its SSIM against the original is what counts.
``target_ssim``: the file with the fewest bytes whose SSIM is >= the target (ties: higher SSIM);
``target_bpp``: the file with the highest SSIM within the byte budget ``floor(bpp * W * H / 8)`` (ties:
fewer bytes).

Search over qualities. Neither SSIM nor size is monotone in a coder's quality knob (a shrunk WebP's SSIM can
fall by 0.15 as its quality rises), so a fallback coder is swept, not bisected: from its lowest quality up,
every file that could still be chosen is decoded and scored. The sweep ends at a layer of more than
:data:`STOP_RATIO` times the layer bytes that could still be chosen (within the budget, or below the smallest
file reaching the target so far): no higher quality has been seen to shrink a layer by more than a sixth
(every coder, on emoji, photo crops and residuals; the tests check it). So every setting of every fallback
coder is weighed, and no file is larger (SSIM target) or worse (size target) than the one-layer file of any
classical setting: smaller than the complete WebP or AVIF file (their containers outweigh the 7-8 bytes of
.grv header and check), at most those 7-8 bytes larger than a JPEG file. A residual coder is bisected
(about 8 encodes for each of 4 latents and 5 coders), every file it visits a candidate, so a non-monotone
step costs a slightly worse file, never a missed target: sweeping residuals too took 0.15-1.5 s more per
image on 12 held-out emoji, for 2% fewer bytes at SSIM 0.8 and none at 0.9.

An image that cannot meet its target still gets the best file found (the highest SSIM, or the smallest
file), with ``met`` False and the ``reason``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from ganrev.codecs.base import bits_per_pixel
from ganrev.codecs.gan import GanCodec, add_residual, decode_layer, residual_image
from ganrev.bitstream.container import Header, Layer, pack_file, unpack_file
from ganrev.errors import GanrevError
from ganrev.invert import InversionResult
from ganrev.bitstream.layers import CODER_LEVELS, encode_layer
from ganrev.metrics import ssim
from ganrev.bitstream.modulation import ModulationSearch, modulated_files

DEFAULT_BITS = (2, 3, 4, 5, 6)
"""Latent precisions tried. Above 6 bits only bytes grow (emoji64-google on validation emoji, bits: mean bytes,
SSIM: 3: 45, 0.751; 4: 57, 0.779; 5: 69, 0.788; 6: 80, 0.790; 8: 105, 0.788). 2 bits are for low rates: with
the latent-160 emoji64, 3 bits take 66 bytes, more than 0.1 bpp allows a 64x64 image (51), and at
``--target-bpp 0.1`` all of 16 held-out emoji fell back to classical files (SSIM 0.434); with 2 bits all 16 got
latent files of at most 49 bytes (SSIM 0.694), for 25% more rate-control time (48 s -> 60 s on one thread)."""

TRACK_ROUNDING_UP_TO = 4
"""The searches keep, for each latent precision tried up to this many bits, the iterate whose rounding to that grid
scores best (:attr:`RateTarget.track_rounding`); above it they round the best point. The rounding costs the default
search's point 0.163 SSIM at 2 bits, 0.047 at 3, 0.013 at 4 (experiments/rounded_tracking.py). Measured on 64 Google
validation emoji at ``--target-bpp 0.1`` (experiments/low_rate.py, one EPYC thread): SSIM 0.8304 in 3.22 s per image
without tracking, 0.8376 in 3.63 s tracking 2-4 bits, 0.8380 in 5.45 s tracking 2-6 bits."""

RESIDUAL_CODERS = ("av1", "vp8", "vp8l", "vp8-down2", "vp8-down4")
"""Coders tried for a residual layer: AVIF 4:4:4 (a bare AV1 layer), lossy WebP, posterized lossless WebP, and
WebP shrunk 2x or 4x, a coarse correction small enough for the 20-50 bytes a size target often leaves beside
the latent (held-out emoji at 0.25 bpp: mean SSIM 0.790 without them, 0.797 with). JPEG 4:4:4 is not tried:
its 300-odd bytes of tables never paid on validation emoji."""

FALLBACK_CODERS = ("vp8", "vp8-down2", "vp8-down4", "vp8l", "jpeg444", "av1")
"""Coders tried for a fallback layer. The slow encoder (AV1, ~7 ms a 64x64 file, ten times WebP's) goes last:
by then the files found end its sweep sooner."""

STOP_RATIO = 1.5
"""A sweep ends at a layer of more than this many times the layer bytes that could still be chosen (module
doc). Measured: no higher quality of any coder made a layer smaller than 1/1.2 of a lower quality's."""


@dataclass(frozen=True)
class RateTarget:
    """What to aim for: exactly one of ``ssim`` (in (0, 1]) and ``bpp`` (> 0); checked on construction."""

    ssim: float | None = None
    bpp: float | None = None
    bits: tuple[int, ...] = DEFAULT_BITS
    fallback: bool = True  # False: never a fallback file (e.g. to study what the generator alone achieves)
    modulation: ModulationSearch | None = ModulationSearch()  # None: no latent+modulation files
    # Leading-coordinate counts k whose latent files are tried beside the whole latent's (a search each); None:
    # the generator's own ``leading_latents`` (config.json; a generator trained with nested dropout lists them).
    leading: tuple[int, ...] | None = None
    # The searches keep, for each of ``bits`` up to TRACK_ROUNDING_UP_TO, the iterate whose rounding to that grid
    # scores best (SearchOptions.rounded_bits), rather than rounding the best point: False for the searches before.
    track_rounding: bool = True

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
        if self.leading is not None and any(k < 1 for k in self.leading):
            raise GanrevError(f"leading latent coordinates to try must be >= 1, got {self.leading!r}")

    def describe(self) -> str:
        return f"SSIM >= {self.ssim}" if self.ssim is not None else f"<= {self.bpp} bpp"


def rate_target(ssim: float | None, bpp: float | None, *, modulation_iters: int | None = None,
                bits: int | None = None, leading: int | None = None) -> RateTarget | None:
    """compress's target options as a :class:`RateTarget`, or None without a target; refuses the options a target
    contradicts (fixed ``bits`` or ``leading``) or that need one (``modulation_iters``: steps fitting the
    modulation layer, 0 for no latent+modulation files)."""
    if ssim is None and bpp is None:
        if modulation_iters is not None:
            raise GanrevError("--modulation-iters works only with --target-ssim or --target-bpp")
        return None
    if modulation_iters is not None and modulation_iters < 0:
        raise GanrevError(f"invalid --modulation-iters {modulation_iters!r}: must be >= 0")
    modulation = ModulationSearch() if modulation_iters is None else ModulationSearch(iters=modulation_iters)
    target = RateTarget(ssim=ssim, bpp=bpp, modulation=modulation if modulation.iters else None)
    if bits is not None:
        raise GanrevError("--bits contradicts a target: the engine chooses the bits per image")
    if leading is not None:
        raise GanrevError("--leading contradicts a target: the engine chooses the leading coordinates per image")
    return target


@dataclass(frozen=True)
class RatedFile:
    """The file chosen for one image and what it is made of; ``ssim`` is measured on its decode."""

    data: bytes
    mode: str
    ssim: float
    bits: int | None  # latent bits per coordinate; None in fallback mode
    leading: int | None  # the latent's leading coordinates the file codes; None: all (or no latent)
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


def budget_bytes(target: RateTarget, width: int, height: int) -> int:
    """The most bytes a file may have for ``target.bpp``: every byte of the file counts."""
    assert target.bpp is not None
    return math.floor(target.bpp * width * height / 8 + 1e-9)


class _Choice:
    """One image's candidate files and the best of them for the target so far."""

    def __init__(self, target: RateTarget, budget: int | None) -> None:
        self.target, self.budget = target, budget
        self.candidates: list[_Candidate] = []
        self.best: _Candidate | None = None

    def _better(self, new: _Candidate) -> bool:
        if self.target.ssim is not None:
            return new.ssim >= self.target.ssim and (
                self.best is None or (len(new.data), -new.ssim) < (len(self.best.data), -self.best.ssim))
        return len(new.data) <= self.budget and (
            self.best is None or (new.ssim, -len(new.data)) > (self.best.ssim, -len(self.best.data)))

    def add(self, candidate: _Candidate) -> None:
        self.candidates.append(candidate)
        if self._better(candidate):
            self.best = candidate

    def limit(self) -> float:
        """The most bytes a file not yet seen may have and still be chosen."""
        if self.budget is not None:
            return self.budget
        return math.inf if self.best is None else len(self.best.data)

    def sweep(self, coder: str, source: torch.Tensor, pack: Callable[[Layer], bytes],
              score: Callable[[Layer], float]) -> None:
        """Try every quality of ``coder`` on ``source`` that could give the chosen file, from the lowest up
        (module doc: what ends the sweep). ``pack`` makes the file of a layer, ``score`` the SSIM of its decode.
        The lowest quality is always scored, so that an image no file fits still gets the smallest."""
        scored: set[bytes] = set()  # qualities giving the same file (AV1: 64 quantizers, 101 qualities) decode once
        for index, level in enumerate(CODER_LEVELS[coder]):
            layer = Layer(*encode_layer(coder, source, level))
            data = pack(layer)
            limit = self.limit()
            if index and len(layer.data) > STOP_RATIO * (limit - (len(data) - len(layer.data))):
                return
            if (index == 0 or len(data) <= limit) and data not in scored:
                scored.add(data)
                self.add(_Candidate(data, score(layer)))

    def bisect(self, coder: str, source: torch.Tensor, pack: Callable[[Layer], bytes],
               score: Callable[[Layer], float]) -> None:
        """Bisect the qualities of ``coder`` on ``source`` as if size and SSIM rose with quality: to the lowest
        that reaches the SSIM target, or the highest that fits the budget (about 8 encodes). Every file visited
        is a candidate; ``pack`` and ``score`` as for :meth:`sweep`."""
        levels = CODER_LEVELS[coder]
        visited: dict[int, _Candidate] = {}

        def at(index: int) -> _Candidate:
            if index not in visited:
                layer = Layer(*encode_layer(coder, source, levels[index]))
                visited[index] = _Candidate(pack(layer), score(layer))
                self.add(visited[index])
            return visited[index]

        low, high = 0, len(levels) - 1
        if len(at(low).data) > self.limit():
            return  # even the lowest quality is too big to be chosen
        if self.target.ssim is not None:
            if at(high).ssim < self.target.ssim or at(low).ssim >= self.target.ssim:
                return
            while high - low > 1:  # at(low) misses, at(high) reaches
                middle = (low + high) // 2
                low, high = (low, middle) if at(middle).ssim >= self.target.ssim else (middle, high)
        else:
            if len(at(high).data) <= self.budget:
                return
            while high - low > 1:  # at(low) fits, at(high) does not
                middle = (low + high) // 2
                low, high = (middle, high) if len(at(middle).data) <= self.budget else (low, middle)


def _score(image: torch.Tensor, decoded: torch.Tensor) -> float:
    return float(ssim(decoded[None], image[None])[0])


_LAYER_ENTRY_MIN = 3  # what a layer adds to a file at the least: codec id, a 1-byte length, one byte of data


def choose_file(image: torch.Tensor, latent_files: Sequence[bytes], decoder: GanCodec, target: RateTarget,
                modulated: Sequence[bytes] = ()) -> RatedFile:
    """The file for one 8-bit image ``[C, H, W]``, given its latent-mode files (:attr:`Candidates.latent`) and its
    latent+modulation files (see module doc).

    ``decoder`` decodes the latent files (its generator made them); ``latent_files`` may be empty, leaving
    fallback files only.
    """
    height, width = image.shape[1:]
    gray = image.shape[0] == 1
    budget = budget_bytes(target, width, height) if target.bpp is not None else None
    choice = _Choice(target, budget)

    # latent files first: they set the bar every layered file must beat
    latents = []
    for data in latent_files:
        header, payload = unpack_file(data)
        prediction = decoder.decode(data)  # what decompress makes of the latent alone
        latent = _Candidate(data, _score(image, prediction))
        choice.add(latent)
        latents.append((latent, header, payload, prediction))
    for data in modulated:
        if len(data) <= choice.limit():
            choice.add(_Candidate(data, _score(image, decoder.decode(data))))
    if target.fallback:
        def alone(layer: Layer) -> bytes:
            return pack_file(Header(width, height, gray, None, (layer,)), b"")

        def fallback_ssim(layer: Layer) -> float:
            return _score(image, decode_layer(layer, Header(width, height, gray, None, (layer,))))

        for coder in FALLBACK_CODERS:
            choice.sweep(coder, image, alone, fallback_ssim)
    # residuals on the most accurate latents first: their residuals are the cheapest to code
    for latent, header, payload, prediction in sorted(latents, key=lambda item: -item[0].ssim):
        if len(latent.data) + _LAYER_ENTRY_MIN > choice.limit():
            continue  # every residual file is bigger than its latent file

        def layered(layer: Layer, header: Header = header, payload: bytes = payload) -> bytes:
            return pack_file(replace(header, layers=(layer,)), payload)

        def layered_ssim(layer: Layer, header: Header = header, prediction: torch.Tensor = prediction) -> float:
            return _score(image, add_residual(prediction, decode_layer(layer, replace(header, layers=(layer,)))))

        residual = residual_image(image, prediction)
        for coder in RESIDUAL_CODERS:
            choice.bisect(coder, residual, layered, layered_ssim)

    chosen, candidates = choice.best, choice.candidates
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
    latent = header.latent
    return RatedFile(chosen.data, header.mode, measured, latent and latent.bits, latent and latent.leading,
                     len(payload), tuple((layer.codec, len(layer.data)) for layer in header.layers), reason is None,
                     reason)


@dataclass(frozen=True)
class Candidates:
    """One image's files that do not depend on the target: its latent-mode files (each ``bits``, each leading
    count) and its latent+modulation files."""

    latent: tuple[bytes, ...]
    modulated: tuple[bytes, ...] = ()


def leading_counts(codec: GanCodec, target: RateTarget) -> tuple[int, ...]:
    """The leading-coordinate counts ``target`` tries with ``codec``'s generator: :attr:`RateTarget.leading`, or
    the generator's ``leading_latents``; counts not below its latent size are left out (the whole latent is
    always tried)."""
    latent_dim = codec.checkpoint.config.latent_dim
    given = target.leading if target.leading is not None else codec.checkpoint.metadata.get("leading_latents", ())
    return tuple(sorted({int(k) for k in given if int(k) < latent_dim}))


def candidate_files(codec: GanCodec, images: list[torch.Tensor], target: RateTarget,
                    search: InversionResult | None = None) -> list[Candidates]:
    """Each image's :class:`Candidates` for the bits, modulation and leading counts of ``target``: one batched
    search of the whole latent (``search`` if given, an earlier :meth:`GanCodec.search_latents` of the same
    images, which tracked the rounding at ``target.bits`` or not), one more per leading count, each ``bits``
    refined. The part of rate control that every target shares."""
    tracked = tracked_bits(target.bits) if target.track_rounding else ()
    search = search if search is not None else searching(codec, tracked).search_latents(images)
    latent: list[list[bytes]] = [[] for _ in images]
    for per_image, files in zip(latent, latent_files_by_bits(codec, images, target.bits, search)):
        per_image += [files[bits] for bits in sorted(files)]
    for leading in leading_counts(codec, target):
        truncated = searching(codec, tracked, leading)
        files_by_bits = latent_files_by_bits(truncated, images, target.bits)
        for per_image, files in zip(latent, files_by_bits):
            per_image += [files[bits] for bits in sorted(files)]
    modulated: list[list[bytes]] = ([[] for _ in images] if target.modulation is None else
                                    [[files[key] for key in sorted(files)] for files in
                                     modulated_files(codec, images, search, target.bits, target.modulation)])
    return [Candidates(tuple(files), tuple(more)) for files, more in zip(latent, modulated)]


def tracked_bits(bits: Sequence[int]) -> tuple[int, ...]:
    """Those of ``bits`` whose rounding the searches track: up to :data:`TRACK_ROUNDING_UP_TO`."""
    return tuple(precision for precision in bits if precision <= TRACK_ROUNDING_UP_TO)


def searching(codec: GanCodec, rounded_bits: tuple[int, ...], leading: int | None = None) -> GanCodec:
    """``codec`` with its search tracking the rounding at ``rounded_bits`` and, given ``leading``, searching only that
    many leading coordinates."""
    search = replace(codec.search, rounded_bits=rounded_bits, leading=leading or codec.search.leading)
    return GanCodec(codec.checkpoint, search=search, refine_iters=codec.refine_iters, device=codec.device)


def compress_to_targets(codec: GanCodec, images: list[torch.Tensor],
                        targets: Sequence[RateTarget | Sequence[RateTarget]],
                        search: InversionResult | None = None) -> list[list[RatedFile]]:
    """One file per 8-bit image ``[C, H, W]`` for each of ``targets`` (``[target][image]``), from one set of
    :func:`candidate_files`: an entry of ``targets`` is one target for every image, or a sequence of one target
    per image (e.g. per-image byte budgets). The targets share what makes the candidates (bits, modulation and
    leading counts: the first target's) and differ in what they ask for (``ssim``/``bpp``, ``fallback``).
    ``codec`` supplies the generator and the search and refinement options; its own ``bits`` is not used."""
    per_image = [[entry] * len(images) if isinstance(entry, RateTarget) else list(entry) for entry in targets]
    if any(len(entry) != len(images) for entry in per_image):
        raise GanrevError(f"a per-image target list must hold one target for each of the {len(images)} images")
    if not images or not per_image:
        return [[] for _ in per_image]
    first = per_image[0][0]
    shared = (first.bits, first.modulation, first.leading, first.track_rounding)
    if any((t.bits, t.modulation, t.leading, t.track_rounding) != shared for entry in per_image for t in entry):
        raise GanrevError("targets rated together must try the same bits, modulation and leading counts, and track "
                          "the rounding alike")
    for note in sorted({note for image in images for note in codec.to_model_input(image)[1]}):
        warnings.warn(note, stacklevel=2)
    candidates = candidate_files(codec, images, first, search)
    return [[choose_file(image, found.latent, codec, target, found.modulated)
             for image, found, target in zip(images, candidates, entry)] for entry in per_image]


def compress_to_target(codec: GanCodec, images: list[torch.Tensor], target: RateTarget,
                       search: InversionResult | None = None) -> list[RatedFile]:
    """One file per 8-bit image ``[C, H, W]`` for ``target``: :func:`compress_to_targets` with one target."""
    return compress_to_targets(codec, images, [target], search)[0]


def latent_files_by_bits(codec: GanCodec, images: list[torch.Tensor], bits: tuple[int, ...],
                         search: InversionResult | None = None) -> list[dict[int, bytes]]:
    """Each image's latent-mode file at each of ``bits``, from one latent search (``search`` if given) with
    ``codec``'s search options (its leading count included)."""
    result = search if search is not None else codec.search_latents(images)
    files: list[dict[int, bytes]] = [{} for _ in images]
    for precision in bits:
        at_bits = GanCodec(codec.checkpoint, bits=precision, search=codec.search, refine_iters=codec.refine_iters,
                           device=codec.device)
        for per_image, compressed in zip(files, at_bits.compress_latents(images, result)):
            per_image[precision] = compressed.data
    return files
