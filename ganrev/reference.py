"""The best classical file per image: the reference rate control and the curves are measured against.

For one image the reference is the best complete classical file a user could pick by hand among every setting
of :func:`reference_families`: lossy WebP at every quality 0-100, at full size and shrunk 2x and 4x
(:class:`~ganrev.codecs.classical.DownscaledWebPCodec`, enlarged bicubic on decode), lossless WebP, JPEG 4:4:4 at
every quality 1-100 and AVIF 4:4:4 at every quality 0-100. For an SSIM target it is the smallest file reaching
it (:func:`reference_bytes`); within a byte budget, the file with the highest SSIM (:func:`best_within`,
:func:`reference_ssim`). These are complete, standard files: their container bytes count, as a .grv file's do.

AVIF is measured only where this Pillow writes it (:func:`ganrev.codecs.classical.avif_available`); elsewhere the
family is left out and :func:`skipped_families` says so, for results files to record.

:func:`measure_classical` encodes, decodes and scores every setting on one image once (about 500 files; on a
64x64 image 1-2 s on one CPU thread, half of it AVIF's encoder); every target and budget is then read off those
measurements, and :func:`reference_curve` reads a series of bpp budgets over many images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ganrev.codecs.base import ImageCodec, bits_per_pixel
from ganrev.codecs.classical import (
    AVIFCodec,
    DownscaledWebPCodec,
    JPEGCodec,
    WebPCodec,
    WebPLosslessCodec,
    avif_available,
)
from ganrev.errors import GanrevError
from ganrev.metrics import ssim
from ganrev.bitstream.ratecontrol import STOP_RATIO, RateTarget, budget_bytes

__all__ = [
    "AVIF_FAMILY",
    "ClassicalFile",
    "ClassicalFiles",
    "ReferencePoint",
    "best_file_within",
    "best_within",
    "measure_classical",
    "reference_bytes",
    "reference_curve",
    "reference_families",
    "reference_ssim",
    "skipped_families",
]

AVIF_FAMILY = "AVIF 4:4:4"


def reference_families() -> dict[str, list[tuple[int, ImageCodec]]]:
    """Every classical setting the reference may pick, by family: ``(quality, codec)``; without AVIF where
    this Pillow cannot write it (:func:`skipped_families`)."""
    families: dict[str, list[tuple[int, ImageCodec]]] = {
        "WebP": [(q, WebPCodec(q)) for q in range(101)],
        "WebP 2x down": [(q, DownscaledWebPCodec(q, 2)) for q in range(101)],
        "WebP 4x down": [(q, DownscaledWebPCodec(q, 4)) for q in range(101)],
        "WebP lossless": [(100, WebPLosslessCodec())],
        "JPEG 4:4:4": [(q, JPEGCodec(q, "4:4:4")) for q in range(1, 101)],
    }
    if avif_available():
        families[AVIF_FAMILY] = [(q, AVIFCodec(q, subsampling="4:4:4")) for q in range(101)]
    return families


def skipped_families() -> dict[str, str]:
    """The reference's families this Pillow cannot make, each with why (empty where AVIF is available)."""
    if avif_available():
        return {}
    return {AVIF_FAMILY: "this Pillow build cannot write AVIF (needs Pillow >= 11.2 built with libavif)"}


@dataclass(frozen=True)
class ClassicalFile:
    """One setting's file for one image: the setting, the file's bytes and its decode's SSIM to the image."""

    family: str
    quality: int
    bytes: int
    ssim: float


@dataclass(frozen=True)
class ClassicalFiles:
    """Every reference setting's file for one image, in :func:`reference_families` order, and the image's size
    (a budget in bpp is bytes of that image)."""

    width: int
    height: int
    files: tuple[ClassicalFile, ...]


def measure_classical(image: torch.Tensor) -> ClassicalFiles:
    """Encode ``image`` ``[C, H, W]`` with every reference setting, decode each file and score its SSIM."""
    files = []
    scored: dict[tuple[str, bytes], float] = {}  # neighbouring qualities often write the very same file
    for family, settings in reference_families().items():
        for quality, codec in settings:
            data = codec.encode(image)
            if (family, data) not in scored:
                scored[family, data] = float(ssim(codec.decode(data)[None], image[None])[0])
            files.append(ClassicalFile(family, quality, len(data), scored[family, data]))
    return ClassicalFiles(int(image.shape[2]), int(image.shape[1]), tuple(files))


def reference_bytes(measured: ClassicalFiles, target_ssim: float) -> int | None:
    """The bytes of the smallest file whose SSIM is at least ``target_ssim``; None where no file reaches it."""
    return min((f.bytes for f in measured.files if f.ssim >= target_ssim), default=None)


def best_within(measured: ClassicalFiles, budget: int) -> ClassicalFile | None:
    """The file with the highest SSIM of at most ``budget`` bytes (ties: fewer bytes); None where no classical
    file is that small."""
    return min((f for f in measured.files if f.bytes <= budget), key=lambda f: (-f.ssim, f.bytes), default=None)


def best_file_within(image: torch.Tensor, budget: int) -> ClassicalFile | None:
    """:func:`best_within` of ``image`` without measuring every setting: each family is swept from its lowest
    quality up and left at the first file of more than :data:`~ganrev.bitstream.ratecontrol.STOP_RATIO` times ``budget``
    bytes, the rule rate control's sweeps use (no higher quality has been seen to shrink a file by more than a
    sixth). For budgets near the smallest files, a few dozen encodes instead of about 500."""
    best: ClassicalFile | None = None
    for family, settings in reference_families().items():
        for quality, codec in settings:
            data = codec.encode(image)
            if len(data) > STOP_RATIO * budget:
                break
            if len(data) <= budget:
                score = float(ssim(codec.decode(data)[None], image[None])[0])
                candidate = ClassicalFile(family, quality, len(data), score)
                if best is None or (-score, len(data)) < (-best.ssim, best.bytes):
                    best = candidate
    return best


def reference_ssim(measured: ClassicalFiles, budget: int) -> float:
    """The best SSIM within ``budget`` bytes; 0 where no classical file is that small."""
    best = best_within(measured, budget)
    return best.ssim if best is not None else 0.0


@dataclass(frozen=True)
class ReferencePoint:
    """The per-image reference at one bpp budget: means over images of each image's best file within it."""

    budget_bpp: float
    images: int
    bytes: float
    bpp: float
    ssim: float
    images_without_file: int  # images with no classical file within the budget: counted as 0 bytes, SSIM 0


def reference_curve(measured: Sequence[ClassicalFiles], budgets_bpp: Iterable[float]) -> list[ReferencePoint]:
    """The per-image reference at each of ``budgets_bpp``, one point per budget.

    For each image, its budget is ``floor(bpp * W * H / 8)`` bytes (as ``ganrev compress --target-bpp``'s) and
    its file the one with the highest SSIM within it (:func:`best_within`). A point's bytes, bpp and SSIM are the
    means over images of those files'. An image with no classical file that small counts as 0 bytes and SSIM 0
    (``images_without_file`` says how many), so at budgets below the smallest files the curve falls toward
    zero.
    """
    if not measured:
        raise GanrevError("the reference curve needs at least one measured image")
    points = []
    for bpp in budgets_bpp:
        target = RateTarget(bpp=bpp)  # checks the budget: finite and > 0
        chosen = [(m, best_within(m, budget_bytes(target, m.width, m.height))) for m in measured]
        points.append(ReferencePoint(
            budget_bpp=bpp, images=len(measured),
            bytes=sum(f.bytes if f is not None else 0 for _, f in chosen) / len(measured),
            bpp=sum(bits_per_pixel(f.bytes, m.width, m.height) if f is not None else 0.0
                    for m, f in chosen) / len(measured),
            ssim=sum(f.ssim if f is not None else 0.0 for _, f in chosen) / len(measured),
            images_without_file=sum(f is None for _, f in chosen)))
    return points
