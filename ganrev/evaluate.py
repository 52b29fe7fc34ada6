"""Rate-distortion evaluation: the comparison table and the curves, in the spirit of CompressAI's bench.

Every scheme is measured the same honest way: each image is encoded to the complete bytes of a file, those
bytes are decoded, and the decoded image is compared with the original. ``bpp = bytes * 8 / (H * W)`` of
that image, so headers, containers and checksums count. Encode and decode times are wall-clock seconds per
image. GAN reversal searches the latents of all images in one batched call (as :meth:`GanCodec.compress`
does), so its encode time per image is the batch's total divided by the number of images.

The table (:func:`run_table`) has one row per scheme, in this order: PNG, K-means (K=4), JPEG (10%),
JPEG (1%), the learned baselines (JPEG 10% and 1% + ARCNN-ASPP, ComCNN/RecCNN at JPEG 10: the shipped models
trained on the generator's data set, :mod:`ganrev.codecs.learned`), WebP at the GAN's rate, WebP of the image downscaled 2x or 4x at the GAN's rate, AVIF at the
GAN's rate (only where Pillow writes AVIF), GAN reversal. "At the GAN's rate" is the quality whose mean bpp
over the images is closest to GAN reversal's mean bpp; it is found by a sweep over the codec's qualities
(see :func:`match_rate`), which is recorded. For downscaled WebP each scale is swept and the scale whose
matched rate is closest wins (ties: the higher SSIM). The JPEG quality (1..100) closest to the GAN's rate
is found the same way and evaluated too (not a table row), so that the matched-rate SSIM differences
GAN - JPEG and GAN - WebP can be reported. :func:`write_table_grid` draws the first few images as each
scheme decoded them (:class:`GridImages` keeps just those).

Summaries are means over images per scheme (PSNR: the mean of per-image PSNRs, so ``inf`` when any image
is reproduced exactly, as PNG always is). CR = mean PNG bits / mean scheme bits.

JSON outputs spell non-finite numbers as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` so that strict
JSON parsers read them; CSV writes them as ``inf``. Every file is written atomically.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

import ganrev
from ganrev.codecs.classical import (
    DOWNSCALE_FACTORS,
    AVIFCodec,
    DownscaledWebPCodec,
    JPEGCodec,
    KMeansCodec,
    PNGCodec,
    WebPCodec,
    avif_available,
)
from ganrev.codecs.learned import default_curve_sweeps, default_table_specs
from ganrev.codecs.specs import codec_from_spec
from ganrev.codec import CompressedImage, GanCodec, ImageCodec, bits_per_pixel
from ganrev.errors import GanrevError
from ganrev.invert import InversionResult, SearchOptions, default_search
from ganrev.io import atomic_write_text, atomic_writer, convert_channels, list_images, load_image, to_pil
from ganrev.metrics import image_metrics, lpips_status
from ganrev.models import GeneratorCheckpoint, load_generator
from ganrev.reference import measure_classical, reference_curve, reference_families, skipped_families
from ganrev.training.common import choose_device

__all__ = [
    "BEST_CLASSICAL_SERIES",
    "CURVE_BITS",
    "CURVE_JPEG_QUALITIES",
    "CURVE_REFERENCE_BPP",
    "CURVE_WEBP_QUALITIES",
    "CurvesResult",
    "GRID_CAPTION_HEIGHT",
    "GRID_GAP",
    "GRID_LABEL_WIDTH",
    "GRID_MIN_TILE",
    "GridImages",
    "RECORD_FIELDS",
    "RateMatch",
    "TableResult",
    "EvalOptions",
    "display_path",
    "evaluate",
    "generator_label",
    "load_image_folder",
    "markdown_table",
    "match_rate",
    "mean_bpp_by_quality",
    "plot_curves",
    "run_curves",
    "run_metadata",
    "run_table",
    "search_latents",
    "summarise",
    "write_curves_json",
    "write_table_csv",
    "write_table_json",
    "write_table_grid",
    "write_table_markdown",
]

GAN_SCHEME = GanCodec.name  # "GAN reversal"
REFERENCE_SCHEME = "PNG"  # CR is measured against it
HELDOUT_DIR = "heldout"  # a shipped generator's held-out images live in <generator>/heldout/

CURVE_JPEG_QUALITIES = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75)
CURVE_WEBP_QUALITIES = (0, 2, 5, 10, 20, 30, 50, 75)
CURVE_AVIF_QUALITIES = (0, 5, 10, 20, 30, 50, 75)
CURVE_BITS = (2, 3, 4, 5, 6, 8)
CURVE_REFERENCE_BPP = (0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)  # budgets of the per-image reference
BEST_CLASSICAL_SERIES = "Best classical per image"

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

REPO_ROOT = Path(ganrev.__file__).resolve().parent.parent


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`run_table` and :func:`run_curves` measure: one object from the CLI (or a script) down.

    Each generator is searched with the CLI's own defaults for it (:func:`ganrev.invert.default_search`: an
    encoder start when the checkpoint has an encoder, else the best-of-pool start), changed by
    ``search_overrides`` (e.g. ``(("iters", 500),)``), so the table measures what ``ganrev compress`` does.
    ``compare`` names further generator checkpoints, each a GAN-reversal row
    on the same images (the rate matching follows the first generator).
    """

    search_overrides: tuple[tuple[str, Any], ...] = ()  # SearchOptions fields changed from compress's defaults
    bits: int = 6
    refine_iters: int | None = None  # None: compress's default for the search's start (codec.REFINE_ITERS)
    limit: int | None = None
    seed: int = 0  # K-means initialisation (the search's seed is one of ``search_overrides``)
    device: str | torch.device = "auto"
    progress: bool = False
    lpips_weights: str | os.PathLike[str] | None = None
    kmeans_k: int = 4
    rate_step: int = 5  # coarse step of the rate-matching sweeps (1: exhaustive)
    compare: tuple[str | os.PathLike[str], ...] = ()
    jpeg_qualities: tuple[int, ...] = CURVE_JPEG_QUALITIES
    webp_qualities: tuple[int, ...] = CURVE_WEBP_QUALITIES
    avif_qualities: tuple[int, ...] = CURVE_AVIF_QUALITIES  # empty: no AVIF curve
    reference_bpp: tuple[float, ...] = CURVE_REFERENCE_BPP  # the best classical file per image (empty: no curve)
    bits_list: tuple[int, ...] = CURVE_BITS
    iters_list: tuple[int, ...] = ()  # a GAN curve over search iterations (one search each)
    grid_images: int = 0  # the table keeps the decoded first N images of every scheme for a grid (0: none)
    # Learned-baseline rows ("arcnn:10", "comcnn:10", ...; ganrev.codecs.learned). None: the shipped models trained
    # on the generator's data set, as table rows and curve sweeps; (): none.
    learned: tuple[str, ...] | None = None

    def learned_specs(self, checkpoint: GeneratorCheckpoint) -> list[str]:
        if self.learned is not None:
            return list(self.learned)
        return default_table_specs(checkpoint.metadata.get("dataset"))

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise GanrevError(f"invalid --bits {self.bits}: must be 2..16")
        refine_ok = self.refine_iters is None or self.refine_iters >= 0
        if not refine_ok or self.kmeans_k < 1 or self.rate_step < 1 or self.grid_images < 0:
            raise GanrevError("refine_iters and grid_images must be >= 0, kmeans_k and rate_step >= 1")
        if self.limit is not None and self.limit < 1:
            raise GanrevError(f"invalid --limit {self.limit}: must be >= 1")
        if any(not (math.isfinite(bpp) and bpp > 0) for bpp in self.reference_bpp):
            raise GanrevError(f"reference budgets must be finite and > 0 bpp, got {self.reference_bpp!r}")

    def search_for(self, checkpoint: GeneratorCheckpoint) -> SearchOptions:
        """Compress's defaults for this checkpoint with ``search_overrides`` applied."""
        return default_search(checkpoint.encoder is not None, **dict(self.search_overrides))


def display_path(path: str | os.PathLike[str] | None) -> str | None:
    """A path as results files show it: relative to the repository when inside it (no machine paths)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def generator_label(checkpoint: GeneratorCheckpoint) -> str:
    """A GAN-reversal row's scheme name: ``GAN reversal (<checkpoint directory name>)``."""
    return f"{GAN_SCHEME} ({checkpoint.path.name})" if checkpoint.path is not None else GAN_SCHEME


# ----------------------------------------------------------------------------------------------- images


def load_image_folder(folder: str | os.PathLike[str], limit: int | None = None) -> tuple[list[str], list[torch.Tensor]]:
    """Names (paths relative to ``folder``) and tensors of the images in ``folder``, sorted, first ``limit``."""
    root = Path(folder)
    if not root.is_dir():
        raise GanrevError(f"image folder not found: {root}")
    paths = list_images(root)
    if limit is not None:
        if limit < 1:
            raise GanrevError(f"--limit must be at least 1, got {limit}")
        paths = paths[:limit]
    if not paths:
        raise GanrevError(f"no images in {root}")
    return [p.relative_to(root).as_posix() for p in paths], [load_image(p) for p in paths]


# ------------------------------------------------------------------------------------------- evaluation


def search_latents(codec: GanCodec, images: Sequence[torch.Tensor]) -> InversionResult:
    """The batched latent search :meth:`GanCodec.compress` runs, on its own, so that it can be re-used.

    ``codec.compress_latents(images, search_latents(codec, images))`` gives the same files as
    ``codec.compress(images)``.
    """
    return codec.search_latents(list(images))


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
        for name, image in zip(tqdm(names, desc=label, disable=not progress, leave=False, dynamic_ncols=True),
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
    for name, image, result in zip(tqdm(names, desc=f"{label} decode", disable=not progress, leave=False,
                                        dynamic_ncols=True), images, results):
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


# -------------------------------------------------------------------------------------------- rate match


def mean_bpp_by_quality(factory: Callable[[int], ImageCodec], images: Sequence[torch.Tensor],
                        qualities: Iterable[int], *, progress: bool = False,
                        desc: str = "rate sweep") -> dict[int, float]:
    """Mean bpp over ``images`` of ``factory(q)`` for each quality ``q`` (encoding only: sizes are all it needs)."""
    out = {}
    for quality in tqdm(list(qualities), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
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


# --------------------------------------------------------------------------------------------- summaries


def _mean(values: list[Any]) -> float | None:
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
            row[key] = _mean([r.get(key) for r in rows])
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


# ----------------------------------------------------------------------------------------------- metadata


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} logical cores, torch uses {torch.get_num_threads()} threads)"


def run_metadata(checkpoint: GeneratorCheckpoint, device: torch.device, *, images_dir: Path | None = None,
                 images: int | None = None, lpips_weights: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where and with what a run happened: device, versions, generator, data, LPIPS status, date."""
    import PIL

    lpips_ok, lpips_reason = lpips_status(lpips_weights)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": _device_name(device),
        "torch_device": str(device),
        "versions": {"ganrev": ganrev.__version__, "torch": torch.__version__, "pillow": PIL.__version__,
                     "python": platform.python_version()},
        "platform": platform.platform(),
        "generator": {"path": display_path(checkpoint.path),
                      "fingerprint": checkpoint.fingerprint, "config": asdict(checkpoint.config),
                      "dataset": checkpoint.metadata.get("dataset"),
                      "training_epochs": (checkpoint.metadata.get("training") or {}).get("epochs")},
        "images_dir": display_path(images_dir),
        "images": images,
        "lpips": {"available": lpips_ok, "reason": lpips_reason},
        "avif_available": avif_available(),
        "command": " ".join([Path(sys.argv[0]).name] + [display_path(a) if os.path.isabs(a) else a
                                                        for a in sys.argv[1:]]),
    }


def _checkpoint(generator: str | os.PathLike[str] | GeneratorCheckpoint,
                device: str | torch.device) -> tuple[GeneratorCheckpoint, torch.device]:

    dev = choose_device(device) if isinstance(device, str) else torch.device(device)
    if isinstance(generator, GeneratorCheckpoint):
        return generator, dev
    return load_generator(generator, dev), dev


def _images_dir(checkpoint: GeneratorCheckpoint, images_dir: str | os.PathLike[str] | None) -> Path:
    if images_dir is not None:
        return Path(images_dir)
    if checkpoint.path is None:
        raise GanrevError("no image folder given and the generator has no directory to find heldout/ in")
    default = checkpoint.path / HELDOUT_DIR
    if not default.is_dir():
        raise GanrevError(f"no image folder given and the generator has no {HELDOUT_DIR}/ folder ({default}): "
                          "pass --images DIR")
    return default


# -------------------------------------------------------------------------------------------------- table


@dataclass
class TableResult:
    """The comparison table: per-image records, summary rows, the rate matching, and run metadata."""

    records: list[dict[str, Any]]  # every evaluated image, all schemes (role "row" or "matched")
    summary: list[dict[str, Any]]  # the table rows, in order
    rate_match: dict[str, Any]  # target bpp, per codec: RateMatch.to_dict() + the matched SSIM and GAN - it
    metadata: dict[str, Any]
    names: list[str] = field(default_factory=list)
    search: InversionResult | None = field(default=None, repr=False)  # the GAN search, for run_curves to re-use
    grid: GridImages | None = field(default=None, repr=False)  # with EvalOptions.grid_images: for write_table_grid

    def markdown(self) -> str:
        return markdown_table(self.summary)

    def matched_rate_line(self) -> str:
        """One line: the GAN's rate and SSIM, and each rate-matched codec's quality, rate, SSIM and SSIM gap."""
        match = self.rate_match
        parts = []
        for key in ("jpeg", "webp", "webp_downscaled", "avif"):
            if key not in match:
                continue
            m = match[key]
            reach = "" if m["in_range"] else (", the lowest it reaches" if m["bpp"] > match["target_bpp"]
                                              else ", the highest it reaches")
            parts.append(f"{m['codec']} q={m['quality']} at {m['bpp']:.3f} bpp{reach}: SSIM {m['ssim']:.4f}, "
                         f"SSIM GAN − {m['codec']} = {m['ssim_gap']:+.4f}")
        return (f"Matched rate ({match.get('gan_scheme', GAN_SCHEME)} {match['target_bpp']:.3f} bpp, SSIM {match['gan_ssim']:.4f}): "
                + "; ".join(parts))

    def to_dict(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "summary": self.summary, "rate_match": self.rate_match,
                "matched_rate": self.matched_rate_line(), "per_image": self.records}


def run_table(generator: str | os.PathLike[str] | GeneratorCheckpoint,
              images_dir: str | os.PathLike[str] | None = None,
              options: EvalOptions = EvalOptions()) -> TableResult:
    """The comparison table on the images in ``images_dir`` (default: ``<generator>/heldout``).

    Rows: PNG, K-means, JPEG 10% and 1%, WebP, downscaled WebP and AVIF at the GAN's rate, then one
    GAN-reversal row per generator (``generator`` first, then ``options.compare``), each searched with
    ``options.search_for``. With ``options.grid_images`` the result keeps those first images' decodings.
    """
    started = time.perf_counter()
    checkpoint, dev = _checkpoint(generator, options.device)
    folder = _images_dir(checkpoint, images_dir)
    names, images = load_image_folder(folder, options.limit)
    metadata = run_metadata(checkpoint, dev, images_dir=folder, images=len(images),
                            lpips_weights=options.lpips_weights)
    grid = (GridImages(names[:options.grid_images], images[:options.grid_images]) if options.grid_images
            else None)
    kw: dict[str, Any] = {"names": names, "lpips_weights": options.lpips_weights, "progress": options.progress,
                          "grid": grid}

    baseline_rows = evaluate(images, [PNGCodec(), KMeansCodec(options.kmeans_k, seed=options.seed), JPEGCodec(10),
                                      JPEGCodec(1)], **kw)
    learned_rows = evaluate(images, [codec_from_spec(spec) for spec in options.learned_specs(checkpoint)], **kw)

    compared = [_checkpoint(path, dev)[0] for path in options.compare]
    gan_rows, searches = [], []
    for ckpt in [checkpoint] + compared:
        gan = GanCodec(ckpt, bits=options.bits, search=options.search_for(ckpt), refine_iters=options.refine_iters,
                       device=dev, progress=options.progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resize notes are kept per image in the records
            searches.append(search_latents(gan, images))
        gan_rows.append(evaluate(images, [(generator_label(ckpt), gan)], gan_search=searches[-1], **kw))
    result = searches[0]
    target = _mean([r["bpp"] for r in gan_rows[0]])
    gan_ssim = _mean([r["ssim"] for r in gan_rows[0]])

    step, progress = options.rate_step, options.progress
    matches = {"jpeg": match_rate(JPEGCodec, images, target, lo=1, hi=100, step=step, codec="JPEG",
                                  progress=progress),
               "webp": match_rate(WebPCodec, images, target, lo=0, hi=100, step=step, codec="WebP",
                                  progress=progress)}
    if avif_available():
        matches["avif"] = match_rate(AVIFCodec, images, target, lo=0, hi=100, step=step, codec="AVIF",
                                     progress=progress)
    matched_rows = {}
    for key, m in matches.items():
        codec = _factory(key)(m.quality)
        matched_rows[key] = evaluate(images, [(f"{codec.name} at GAN rate", codec)],
                                     role="matched" if key == "jpeg" else "row", **kw)
    scale, by_scale, downscaled_rows = _match_downscaled_webp(images, target, options, kw)
    matches["webp_downscaled"] = by_scale[scale]
    matched_rows["webp_downscaled"] = downscaled_rows

    rows = (baseline_rows + learned_rows + matched_rows["webp"] + downscaled_rows + matched_rows.get("avif", [])
            + [r for g in gan_rows for r in g])
    summary = summarise(rows)
    rate_match: dict[str, Any] = {"target_bpp": target, "gan_ssim": gan_ssim, "gan_scheme": generator_label(checkpoint)}
    for key, m in matches.items():
        ssim_value = _mean([r["ssim"] for r in matched_rows[key]])
        rate_match[key] = {**m.to_dict(), "scheme": matched_rows[key][0]["scheme"], "ssim": ssim_value,
                           "ssim_gap": gan_ssim - ssim_value}
    rate_match["webp_downscaled"].update(
        scale=scale, by_scale={str(s): m.to_dict() for s, m in by_scale.items()},
        choice=f"the scale in {list(DOWNSCALE_FACTORS)} whose matched mean bpp is closest (ties: higher SSIM)")
    metadata["settings"] = _settings(options, checkpoint)
    metadata["compared_generators"] = [{"path": display_path(ckpt.path), "fingerprint": ckpt.fingerprint}
                                       for ckpt in compared]
    metadata["gan"] = {"search_seconds": result.seconds, "image_iterations": result.image_iterations,
                       "mean_iterations_per_restart": float(result.iterations.float().mean())}
    metadata["wall_s"] = time.perf_counter() - started
    return TableResult(rows + matched_rows["jpeg"], summary, rate_match, metadata, names, result, grid)


def _match_downscaled_webp(images: list[torch.Tensor], target: float, options: EvalOptions,
                           kw: dict[str, Any]) -> tuple[int, dict[int, RateMatch], list[dict[str, Any]]]:
    """The downscaled-WebP row: the scale, every scale's rate match, and the chosen scale's records.

    Each scale in :data:`DOWNSCALE_FACTORS` gets the quality closest to ``target``; the scale whose rate is
    closest wins, and where scales tie on rate each is evaluated and the higher mean SSIM wins.
    """
    by_scale = {scale: match_rate(functools.partial(DownscaledWebPCodec, scale=scale), images, target, lo=0,
                                  hi=100, step=options.rate_step, codec=f"WebP downscaled {scale}x",
                                  progress=options.progress)
                for scale in DOWNSCALE_FACTORS}
    closest = min(abs(m.bpp - target) for m in by_scale.values())
    evaluated = {}
    for scale, m in by_scale.items():
        if abs(m.bpp - target) == closest:
            codec = DownscaledWebPCodec(m.quality, scale)
            evaluated[scale] = evaluate(images, [(f"{codec.name} at GAN rate", codec)], **kw)
    scale = max(evaluated, key=lambda s: _mean([r["ssim"] for r in evaluated[s]]))
    return scale, by_scale, evaluated[scale]


def _settings(options: EvalOptions, checkpoint: GeneratorCheckpoint) -> dict[str, Any]:
    """The options as recorded in results files (JSON-ready; paths relative to the repository)."""
    settings = asdict(options)
    settings["search"] = asdict(options.search_for(checkpoint))
    settings["search_overrides"] = dict(options.search_overrides)
    settings["device"] = str(options.device)
    settings["lpips_weights"] = display_path(options.lpips_weights)
    settings["compare"] = [display_path(p) for p in options.compare]
    return settings


def _factory(key: str) -> Callable[[int], ImageCodec]:
    return {"jpeg": JPEGCodec, "webp": WebPCodec, "avif": AVIFCodec}[key]


# -------------------------------------------------------------------------------------------------- writers


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _dump_json(payload: Any) -> str:
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"


def write_table_json(result: TableResult, path: str | os.PathLike[str]) -> None:
    """Metadata, summary, rate matching and per-image records as JSON, atomically."""
    atomic_write_text(path, _dump_json(result.to_dict()))


def write_table_csv(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Per-image records as CSV (columns :data:`RECORD_FIELDS`; empty cells for ``None``), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RECORD_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if record.get(k) is None else record.get(k)) for k in RECORD_FIELDS})
    atomic_write_text(path, buffer.getvalue())


def write_table_markdown(result: TableResult, path: str | os.PathLike[str]) -> None:
    """The Markdown table, the matched-rate line and a short provenance note, atomically."""
    meta = result.metadata
    search = meta["settings"]["search"]
    note = (f"{meta['images']} images from `{meta['images_dir']}`; generator `{meta['generator']['path']}` "
            f"(fingerprint {meta['generator']['fingerprint'][:12]}); {search['iters']} search iterations, "
            f"{search['restarts']} restarts, {meta['settings']['bits']} bits; {meta['device']}; "
            f"torch {meta['versions']['torch']}, ganrev {meta['versions']['ganrev']}; {meta['wall_s']:.0f} s. "
            f"LPIPS: {meta['lpips']['reason'] if not meta['lpips']['available'] else 'AlexNet'}.")
    atomic_write_text(path, result.markdown() + "\n" + result.matched_rate_line() + "\n\n" + note + "\n")


GRID_MIN_TILE = 128  # tiles are enlarged by a whole factor (nearest neighbour) to at least this many pixels
GRID_GAP = 8
GRID_LABEL_WIDTH = 190  # the column of scheme names at the left
GRID_CAPTION_HEIGHT = 30  # two lines of the default font under each tile
_GRID_BACKGROUND = (232, 232, 232)  # not white: emoji on white must still show their tile's edge


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text`` cut (with "...") to fit ``width`` pixels in the default font."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` pixels (a longer word is cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(_fit(draw, word, width))
    return lines


def write_table_grid(result: TableResult, path: str | os.PathLike[str]) -> None:
    """The table as pictures: the originals, then each table row's decoded images, as a PNG, atomically.

    One column per image of ``result.grid`` (the run's first ``EvalOptions.grid_images`` images), one row
    per scheme in table order under a row of originals; each row is named at the left and each tile
    captioned with its file's bytes and SSIM. Tiles are enlarged by a whole factor with nearest neighbour
    (tiny images stay readable, no pixel is invented) so that the larger side is at least
    :data:`GRID_MIN_TILE`. The image is ``GRID_LABEL_WIDTH + N * (tile width + GRID_GAP)`` by
    ``GRID_GAP + rows * (tile height + GRID_CAPTION_HEIGHT + GRID_GAP)`` pixels.
    """
    grid = result.grid
    if grid is None:
        raise GanrevError("this table kept no decoded images for a grid: run it with grid_images >= 1")
    factor = max(1, math.ceil(GRID_MIN_TILE / max(max(image.shape[1:]) for image in grid.originals)))
    tile_w = factor * max(image.shape[2] for image in grid.originals)
    tile_h = factor * max(image.shape[1] for image in grid.originals)
    found = {(r["scheme"], r["image"]): r for r in result.records}
    schemes = [row["scheme"] for row in result.summary]
    canvas = Image.new("RGB", (GRID_LABEL_WIDTH + len(grid.names) * (tile_w + GRID_GAP),
                               GRID_GAP + (1 + len(schemes)) * (tile_h + GRID_CAPTION_HEIGHT + GRID_GAP)),
                       _GRID_BACKGROUND)
    draw = ImageDraw.Draw(canvas)  # Pillow's default font: no font file to ship or find
    line = GRID_CAPTION_HEIGHT // 2

    def put_row(row: int, label: str, tiles: list[tuple[torch.Tensor, str, str]]) -> None:
        top = GRID_GAP + row * (tile_h + GRID_CAPTION_HEIGHT + GRID_GAP)
        lines = _wrap(draw, label, GRID_LABEL_WIDTH - 2 * GRID_GAP)
        label_top = top + (tile_h - len(lines) * line) // 2
        for k, text in enumerate(lines):
            draw.text((GRID_GAP, label_top + k * line), text, fill=(0, 0, 0))
        for column, (image, first, second) in enumerate(tiles):
            left = GRID_LABEL_WIDTH + column * (tile_w + GRID_GAP)
            picture = to_pil(convert_channels(image, "rgb"))
            picture = picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
            canvas.paste(picture, (left + (tile_w - picture.width) // 2, top + (tile_h - picture.height) // 2))
            for k, text in enumerate((first, second)):
                draw.text((left, top + tile_h + 2 + k * line), _fit(draw, text, tile_w), fill=(0, 0, 0))

    put_row(0, "original", [(image, name, f"{image.shape[2]}x{image.shape[1]}")
                            for name, image in zip(grid.names, grid.originals)])
    for row, scheme in enumerate(schemes, start=1):
        tiles = []
        for name in grid.names:
            record = found[scheme, name]
            tiles.append((grid.decoded[scheme][name], f"{record['bytes']} B", f"SSIM {record['ssim']:.3f}"))
        put_row(row, scheme, tiles)
    with atomic_writer(path) as handle:
        canvas.save(handle, format="PNG")


# -------------------------------------------------------------------------------------------------- curves


@dataclass
class CurvesResult:
    """Rate-distortion points (one dict per scheme and setting, means over images) and run metadata."""

    points: list[dict[str, Any]]
    metadata: dict[str, Any]

    def series(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for point in self.points:
            out.setdefault(point["series"], []).append(point)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "points": self.points}


_POINT_FIELDS = ("bytes", "bpp", "psnr", "mse", "ssim", "ms_ssim", "lpips", "encode_s", "decode_s", "ssim_latent",
                 "ssim_quantized", "ssim_refined")


def _point(series: str, parameter: str, value: int | float, records: list[dict[str, Any]]) -> dict[str, Any]:
    (row,) = summarise(records)
    return {"series": series, "parameter": parameter, "value": value, "images": row["images"],
            **{key: row[key] for key in _POINT_FIELDS}}


def _best_classical_points(images: list[torch.Tensor], budgets_bpp: Sequence[float],
                           progress: bool) -> list[dict[str, Any]]:
    """The per-image reference (:func:`ganrev.reference.reference_curve`) at each budget, as curve points.

    Every setting is measured once per image and every budget read off those measurements. Only bytes, bpp and
    SSIM are measured (the reference is chosen by SSIM); the other fields are None.
    """
    measured = [measure_classical(image) for image in tqdm(images, desc=f"{BEST_CLASSICAL_SERIES} curve",
                                                           disable=not progress, leave=False, dynamic_ncols=True)]
    return [{"series": BEST_CLASSICAL_SERIES, "parameter": "budget_bpp", "value": point.budget_bpp,
             "images": point.images, **dict.fromkeys(_POINT_FIELDS), "bytes": point.bytes, "bpp": point.bpp,
             "ssim": point.ssim, "images_without_file": point.images_without_file}
            for point in reference_curve(measured, budgets_bpp)]


def run_curves(generator: str | os.PathLike[str] | GeneratorCheckpoint,
               images_dir: str | os.PathLike[str] | None = None, options: EvalOptions = EvalOptions(), *,
               search: InversionResult | None = None) -> CurvesResult:
    """Rate-distortion points: JPEG and WebP (and AVIF where available) quality sweeps, the best classical file
    per image at each of ``options.reference_bpp`` (:mod:`ganrev.reference`: an image with no classical file
    within a budget counts as 0 bytes and SSIM 0 there), GAN reversal over bits.

    The latent search does not depend on ``bits``, so it runs once (``options.search_for`` the generator, or
    ``search`` from an earlier run on the same images, e.g. :attr:`TableResult.search`) and each of
    ``options.bits_list`` only re-quantizes, refines and packs. ``options.iters_list`` adds a GAN series over
    search iterations at ``options.bits`` (one search each).
    """
    started = time.perf_counter()
    checkpoint, dev = _checkpoint(generator, options.device)
    folder = _images_dir(checkpoint, images_dir)
    names, images = load_image_folder(folder, options.limit)
    if search is not None and len(search.z) != len(images):
        raise GanrevError(f"the search given holds {len(search.z)} latents for {len(images)} images")
    metadata = run_metadata(checkpoint, dev, images_dir=folder, images=len(images),
                            lpips_weights=options.lpips_weights)
    kw: dict[str, Any] = {"names": names, "lpips_weights": options.lpips_weights}
    progress = options.progress
    points = []
    sweeps: list[tuple[str, Callable[[int], ImageCodec], Sequence[int]]] = [
        ("JPEG", JPEGCodec, options.jpeg_qualities), ("WebP", WebPCodec, options.webp_qualities)]
    if options.avif_qualities and avif_available():
        sweeps.append(("AVIF", AVIFCodec, options.avif_qualities))
    if options.learned is None:
        sweeps += default_curve_sweeps(checkpoint.metadata.get("dataset"))
    for series, factory, qualities in sweeps:
        for quality in tqdm(list(qualities), desc=f"{series} curve", disable=not progress, leave=False,
                            dynamic_ncols=True):
            points.append(_point(series, "quality", int(quality), evaluate(images, [factory(quality)], **kw)))
    if options.reference_bpp:
        points += _best_classical_points(images, options.reference_bpp, progress)

    search_options = options.search_for(checkpoint)
    searches: dict[int, InversionResult] = {}

    def search_at(count: int) -> InversionResult:
        if count not in searches:
            if count == search_options.iters and search is not None:
                searches[count] = search
            else:
                codec = GanCodec(checkpoint, bits=options.bits, search=replace(search_options, iters=count),
                                 device=dev, progress=progress)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    searches[count] = search_latents(codec, images)
        return searches[count]

    iters = search_options.iters
    gan_series = [("GAN reversal (bits)", "bits", b, iters, b) for b in options.bits_list]
    gan_series += [("GAN reversal (iterations)", "iters", n, n, options.bits) for n in options.iters_list]
    for series, parameter, value, count, b in tqdm(gan_series, desc="GAN curve", disable=not progress, leave=False,
                                                   dynamic_ncols=True):
        codec = GanCodec(checkpoint, bits=b, search=replace(search_options, iters=count),
                         refine_iters=options.refine_iters, device=dev)
        records = evaluate(images, [codec], gan_search=search_at(count), **kw)
        points.append(_point(series, parameter, int(value), records))
    metadata["settings"] = _settings(options, checkpoint) | {
        "avif_qualities": list(options.avif_qualities) if avif_available() else [], "search_reused": search is not None,
        "reference_families": list(reference_families()) if options.reference_bpp else [],
        "reference_skipped": skipped_families() if options.reference_bpp else {}}
    metadata["wall_s"] = time.perf_counter() - started
    return CurvesResult(points, metadata)


def write_curves_json(curves: CurvesResult, path: str | os.PathLike[str]) -> None:
    """The curve points and metadata as JSON, atomically."""
    atomic_write_text(path, _dump_json(curves.to_dict()))


_STYLE = {"JPEG": ("tab:blue", "o"), "WebP": ("tab:green", "s"), "AVIF": ("tab:purple", "^"),
          "GAN reversal (bits)": ("tab:red", "D"), "GAN reversal (iterations)": ("tab:orange", "v"),
          "JPEG + ARCNN-ASPP": ("tab:cyan", "P"), "JPEG + ARCNN-ASPP blind": ("tab:olive", "p"),
          "ComCNN/RecCNN": ("tab:brown", "X"), BEST_CLASSICAL_SERIES: ("black", ".")}


def plot_curves(curves: CurvesResult, path: str | os.PathLike[str], title: str | None = None) -> None:
    """Two panels, SSIM vs bpp and PSNR vs bpp (log-x), each point labelled with its setting (the best classical
    file per image: dashed black, SSIM only, labelled with its budget); PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for series, points in curves.series().items():
        points = sorted(points, key=lambda p: p["value"])  # the line follows the setting
        colour, marker = _STYLE.get(series, (None, "x"))
        prefix = {"quality": "q", "bits": "b", "iters": "i", "budget_bpp": "≤"}
        for ax, key in zip(axes, ("ssim", "psnr")):
            # bpp 0: no image had a file within the budget, a point a log axis cannot show
            shown = [p for p in points if p[key] is not None and math.isfinite(p[key]) and p["bpp"] > 0]
            ax.plot([p["bpp"] for p in shown], [p[key] for p in shown], marker=marker, color=colour, label=series,
                    markersize=4, linewidth=1.2,
                    linestyle="--" if series == BEST_CLASSICAL_SERIES else "-")  # a bound, not a codec
            for p in shown:
                value = f"{p['value']:g}" if isinstance(p["value"], float) else p["value"]
                ax.annotate(f"{prefix.get(p['parameter'], '')}{value}", (p["bpp"], p[key]), fontsize=6,
                            xytext=(3, 2), textcoords="offset points", color=colour)
    for ax, label in zip(axes, ("SSIM", "PSNR (dB)")):
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (whole file)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    meta = curves.metadata
    figure.suptitle(title or f"Rate-distortion on {meta.get('images')} images ({meta.get('images_dir')}), "
                             f"{meta['settings']['search']['iters']} search iterations", fontsize=9)
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png")
