"""Measuring codecs on images, in the spirit of CompressAI's bench: one record per codec and image, and means.

Every scheme is measured the same honest way: each image is encoded to the complete bytes of a file, those
bytes are decoded, and the decoded image is compared with the original. ``bpp = bytes * 8 / (H * W)`` of
that image, so headers, containers and checksums count. Encode and decode times are wall-clock seconds per
image. GAN reversal searches the latents of all images in one batched call (as :meth:`GanCodec.compress`
does), so its encode time per image is the batch's total divided by the number of images.

Summaries are means over images per scheme (PSNR: the mean of per-image PSNRs, so ``inf`` when any image
is reproduced exactly, as PNG always is). CR = mean PNG bits / mean scheme bits.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch

from ganrev.codecs.base import ImageCodec, bits_per_pixel
from ganrev.codecs.gan import CompressedImage, GanCodec
from ganrev.errors import GanrevError
from ganrev.invert import InversionResult
from ganrev.metrics import image_metrics
from ganrev.progress import progress_bar

__all__ = [
    "CodecLike",
    "evaluate",
    "GAN_SCHEME",
    "GridImages",
    "markdown_table",
    "match_rate",
    "mean_bpp_by_quality",
    "mean_or_none",
    "RateMatch",
    "RECORD_FIELDS",
    "REFERENCE_SCHEME",
    "summarise",
    "TABLE_COLUMNS",
]

GAN_SCHEME = GanCodec.name  # "GAN reversal"
REFERENCE_SCHEME = "PNG"  # CR is measured against it

RECORD_FIELDS = (
    "scheme", "role", "image", "width", "height", "channels", "bytes", "bpp", "mse", "psnr", "ssim", "ms_ssim",
    "lpips", "encode_s", "decode_s", "ssim_latent", "ssim_quantized", "ssim_refined", "search_loss", "iterations",
    "notes",
)
"""Columns of a per-image record (and of the CSV), in order. The ``ssim_*`` stages (SSIM at the generator's
resolution of the latent before quantization, after plain rounding, after refinement), ``search_loss`` and
``iterations`` are filled for GAN reversal only. ``role`` is ``"row"`` for table rows and ``"matched"`` for
the rate-matched JPEG that only feeds the matched-rate comparison."""

_MEAN_FIELDS = ("bytes", "bpp", "mse", "psnr", "ssim", "ms_ssim", "lpips", "encode_s", "decode_s",
                "ssim_latent", "ssim_quantized", "ssim_refined", "search_loss", "iterations")

CodecLike = Union[ImageCodec, tuple[str, ImageCodec]]
"""A codec, or ``(label, codec)`` to record it under another scheme name than ``codec.name``."""


@dataclass
class GridImages:
    """The images a grid shows: their names and originals, and per scheme their decoded images.

    Only these are kept (:meth:`keep` ignores every other image), so a large run holds a few tensors.
    """

    names: list[str]
    originals: list[torch.Tensor]
    decoded: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # scheme -> image name -> image

    def keep(self, scheme: str, name: str, decoded: torch.Tensor) -> None:
        """Keep ``decoded`` as ``scheme``'s version of image ``name`` if the grid shows that image."""
        if name in self.names:
            self.decoded.setdefault(scheme, {})[name] = decoded.detach().cpu()


def _unpack(codec: CodecLike) -> tuple[str, ImageCodec]:
    if isinstance(codec, tuple):
        label, inner = codec
        return str(label), inner
    return codec.name, codec


def _quality_metrics(reference: torch.Tensor, decoded: torch.Tensor,
                     lpips_weights: str | os.PathLike[str] | None) -> dict[str, Any]:
    if decoded.shape != reference.shape:
        raise GanrevError(f"a decoder returned shape {tuple(decoded.shape)} for an image of shape "
                          f"{tuple(reference.shape)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "LPIPS unavailable" is reported once, in the run's metadata
        values = image_metrics(reference, decoded, lpips_weights=lpips_weights)
    return {key: values[key] for key in ("mse", "psnr", "ssim", "ms_ssim", "lpips")}


def _record(scheme: str, role: str, name: str, image: torch.Tensor, data: bytes, decoded: torch.Tensor,
            encode_s: float, decode_s: float, lpips_weights: str | os.PathLike[str] | None) -> dict[str, Any]:
    channels, height, width = image.shape
    record: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    record.update(scheme=scheme, role=role, image=name, width=int(width), height=int(height),
                  channels=int(channels), bytes=len(data), bpp=bits_per_pixel(len(data), int(width), int(height)),
                  encode_s=encode_s, decode_s=decode_s)
    record.update(_quality_metrics(image, decoded, lpips_weights))
    return record


def evaluate(images: Sequence[torch.Tensor], codecs: Iterable[CodecLike], *, names: Sequence[str] | None = None,
             lpips_weights: str | os.PathLike[str] | None = None, gan_search: InversionResult | None = None,
             role: str = "row", progress: bool = False, grid: GridImages | None = None) -> list[dict[str, Any]]:
    """Per-image records (see :data:`RECORD_FIELDS`) of every codec on every image, codec-major.

    Each image is encoded to bytes, the bytes are decoded, and the decoded image is scored against the
    original. A :class:`GanCodec` compresses all images in one batched call (``compress``, or with
    ``gan_search`` given, ``compress_latents`` on that earlier search, whose time is then counted in);
    its encode time per image is the total divided by the number of images. With ``grid``, the decoded
    images it shows are kept there.
    """
    images = list(images)
    names = [f"image{k:04d}" for k in range(len(images))] if names is None else list(names)
    if len(names) != len(images):
        raise GanrevError(f"{len(names)} names for {len(images)} images")
    records: list[dict[str, Any]] = []
    for item in codecs:
        label, codec = _unpack(item)
        if isinstance(codec, GanCodec):
            records += _evaluate_gan(label, role, codec, images, names, lpips_weights, gan_search, progress, grid)
            continue
        for name, image in zip(progress_bar(names, label, progress),
                               images):
            started = time.perf_counter()
            data = codec.encode(image)
            encoded = time.perf_counter()
            decoded = codec.decode(data)
            done = time.perf_counter()
            records.append(_record(label, role, name, image, data, decoded, encoded - started, done - encoded,
                                   lpips_weights))
            if grid is not None:
                grid.keep(label, name, decoded)
    return records


def _evaluate_gan(label: str, role: str, codec: GanCodec, images: list[torch.Tensor], names: list[str],
                  lpips_weights: str | os.PathLike[str] | None, search: InversionResult | None,
                  progress: bool, grid: GridImages | None) -> list[dict[str, Any]]:
    if not images:
        return []
    started = time.perf_counter()
    if search is None:
        results: list[CompressedImage] = codec.compress(images)
        total = time.perf_counter() - started
    else:
        results = codec.compress_latents(images, search)
        total = time.perf_counter() - started + search.seconds
    per_image = total / len(images)
    records = []
    for name, image, result in zip(progress_bar(names, f"{label} decode", progress), images,
                                        results):
        started = time.perf_counter()
        decoded = codec.decode(result.data)
        decode_s = time.perf_counter() - started
        record = _record(label, role, name, image, result.data, decoded, per_image, decode_s, lpips_weights)
        record.update(ssim_latent=result.ssim_latent, ssim_quantized=result.ssim_quantized,
                      ssim_refined=result.ssim_refined, search_loss=result.search_loss,
                      iterations=result.iterations, notes="; ".join(result.notes) or None)
        records.append(record)
        if grid is not None:
            grid.keep(label, name, decoded)
    return records


def mean_bpp_by_quality(factory: Callable[[int], ImageCodec], images: Sequence[torch.Tensor],
                        qualities: Iterable[int], *, progress: bool = False,
                        desc: str = "rate sweep") -> dict[int, float]:
    """Mean bpp over ``images`` of ``factory(q)`` for each quality ``q`` (encoding only: sizes are all it needs)."""
    out = {}
    for quality in progress_bar(list(qualities), desc, progress):
        codec = factory(quality)
        bpps = [bits_per_pixel(len(codec.encode(image)), image.shape[2], image.shape[1]) for image in images]
        out[int(quality)] = sum(bpps) / len(bpps)
    return out


@dataclass
class RateMatch:
    """The quality of a codec whose mean bpp is closest to a target, and the sweep that found it."""

    codec: str  # "JPEG", "WebP", "AVIF"
    target_bpp: float
    quality: int
    bpp: float
    sweep: dict[int, float]  # every quality tried -> mean bpp
    strategy: str

    @property
    def in_range(self) -> bool:
        """Whether the target lies between the smallest and largest rate the sweep reached."""
        return min(self.sweep.values()) <= self.target_bpp <= max(self.sweep.values())

    def to_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "target_bpp": self.target_bpp, "quality": self.quality, "bpp": self.bpp,
                "in_range": self.in_range, "strategy": self.strategy,
                "sweep": {str(q): b for q, b in sorted(self.sweep.items())}}


def match_rate(factory: Callable[[int], ImageCodec], images: Sequence[torch.Tensor], target_bpp: float, *,
               lo: int = 0, hi: int = 100, step: int = 5, codec: str = "", progress: bool = False) -> RateMatch:
    """The quality in ``lo..hi`` whose mean bpp over ``images`` is closest to ``target_bpp``.

    Coarse-to-fine: every ``step``-th quality from ``lo`` (and ``hi``), then every quality within
    ``step - 1`` of the best coarse one; ``step=1`` is the exhaustive sweep. Ties go to the higher quality.
    The result is the closest among all qualities tried, all of which are recorded in ``sweep``.
    """
    if step < 1 or lo > hi:
        raise GanrevError(f"bad rate sweep: qualities {lo}..{hi} in steps of {step}")
    coarse = sorted(set(range(lo, hi + 1, step)) | {hi})
    sweep = mean_bpp_by_quality(factory, images, coarse, progress=progress, desc=f"{codec} rate sweep")

    def best() -> int:
        return min(sweep, key=lambda q: (abs(sweep[q] - target_bpp), -q))

    centre = best()
    fine = [q for q in range(max(lo, centre - step + 1), min(hi, centre + step - 1) + 1) if q not in sweep]
    sweep.update(mean_bpp_by_quality(factory, images, fine, progress=progress, desc=f"{codec} rate refine"))
    quality = best()
    strategy = "exhaustive" if step == 1 else f"every {step}th quality in {lo}..{hi}, then +-{step - 1} around the best"
    return RateMatch(codec, target_bpp, quality, sweep[quality], dict(sorted(sweep.items())), strategy)


def mean_or_none(values: list[Any]) -> float | None:
    """The mean of ``values``; None when there are none or any is None (a metric some image lacks)."""
    if not values or any(v is None for v in values):
        return None
    return math.fsum(float(v) for v in values) / len(values)


def summarise(records: Iterable[dict[str, Any]], reference: str = REFERENCE_SCHEME) -> list[dict[str, Any]]:
    """Means over images per scheme, in order of first appearance, with CR against ``reference``.

    Each row: ``scheme``, ``role``, ``images``, the mean of every numeric record field (``None`` where any
    image lacks it, e.g. LPIPS without weights or the GAN-only SSIM stages), and ``cr`` = mean
    ``reference`` bits / mean scheme bits (``None`` without a ``reference`` row).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["scheme"], []).append(record)
    summary = []
    for scheme, rows in groups.items():
        row: dict[str, Any] = {"scheme": scheme, "role": rows[0].get("role", "row"), "images": len(rows)}
        for key in _MEAN_FIELDS:
            row[key] = mean_or_none([r.get(key) for r in rows])
        summary.append(row)
    ref = next((row for row in summary if row["scheme"] == reference), None)
    for row in summary:
        row["cr"] = ref["bytes"] / row["bytes"] if ref is not None and row["bytes"] else None
    return summary


def _cell(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


TABLE_COLUMNS = ("Scheme", "BPP", "CR", "PSNR", "MSE", "SSIM", "MS-SSIM", "LPIPS")


def markdown_table(summary: Iterable[dict[str, Any]]) -> str:
    """The summary as a Markdown table: Scheme | BPP | CR | PSNR | MSE | SSIM | MS-SSIM | LPIPS."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * 7) + "|"]
    for row in summary:
        cells = [row["scheme"], _cell(row["bpp"], 3), _cell(row["cr"], 1), _cell(row["psnr"], 2),
                 _cell(row["mse"], 2), _cell(row["ssim"], 4), _cell(row["ms_ssim"], 4), _cell(row["lpips"], 4)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
