"""Rate-SSIM curves (``ganrev table --curves``): every scheme swept over its qualities (GAN reversal over
latent bits), beside the best classical file per image (:mod:`ganrev.reference`); their points as JSON,
each series also in CompressAI's results-JSON layout (:func:`write_compressai_results`), and a plot. Each series'
BD-rate against the run's reference curves (:meth:`CurvesResult.bd_rates`) is in the JSON and in
:meth:`CurvesResult.markdown`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ganrev.codecs.base import ImageCodec
from ganrev.codecs.classical import AVIFCodec, JPEGCodec, WebPCodec, avif_available
from ganrev.codecs.gan import GanCodec
from ganrev.codecs.hyperprior import NAME_PREFIX as PEER_PREFIX  # the learned peer's series (default_curve_sweeps)
from ganrev.codecs.learned import default_curve_sweeps
from ganrev.errors import GanrevError
from ganrev.evaluate.bdrate import bd_rate
from ganrev.evaluate.records import evaluate, summarise
from ganrev.evaluate.runs import (
    EvalOptions,
    dump_json,
    load_image_folder,
    resolve_checkpoint,
    resolve_images_dir,
    run_metadata,
    search_latents,
    settings_record,
)
from ganrev.invert import InversionResult
from ganrev.io import atomic_write_text, atomic_writer
from ganrev.models import GeneratorCheckpoint
from ganrev.progress import progress_bar
from ganrev.reference import measure_classical, reference_curve, reference_families, skipped_families

__all__ = [
    "BD_RATE_METRICS",
    "BEST_CLASSICAL_SERIES",
    "compressai_results",
    "CurvesResult",
    "plot_curves",
    "run_curves",
    "write_compressai_results",
    "write_curves_json",
    "write_curves_markdown",
]

BEST_CLASSICAL_SERIES = "Best classical per image"
# The metrics BD-rate is given in: point field -> name in the Markdown
BD_RATE_METRICS = {"ssim": "SSIM", "ms_ssim": "MS-SSIM", "psnr": "PSNR"}


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

    def bd_rates(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """``{series: {reference: {metric: percent or None}}}``: each series' BD-rate
        (:func:`ganrev.evaluate.bdrate.bd_rate`: mean rate difference at equal quality, negative = fewer bits)
        against each reference curve of this run, the best classical file per image and the learned peer
        (CompressAI) series, itself included (0). A metric is there when both curves carry it (the best
        classical file per image has SSIM only); None: no overlapping quality interval or under 2 usable points.
        """
        curves = {name: {metric: [(p["bpp"], p[metric]) for p in points if p.get(metric) is not None]
                         for metric in BD_RATE_METRICS} for name, points in self.series().items()}
        references = sorted((name for name in curves if name == BEST_CLASSICAL_SERIES or name.startswith(PEER_PREFIX)),
                            key=lambda name: name != BEST_CLASSICAL_SERIES)  # the classical bound first
        return {name: {reference: {metric: bd_rate(curves[reference][metric], curve[metric])
                                   for metric in BD_RATE_METRICS if curves[reference][metric] and curve[metric]}
                       for reference in references}
                for name, curve in curves.items()}

    def markdown(self) -> str:
        """The BD-rates as a Markdown table: a row per series, a column per reference and metric."""
        rates = self.bd_rates()
        columns = list(dict.fromkeys((reference, metric) for by_reference in rates.values()
                                     for reference, by_metric in by_reference.items() for metric in by_metric))
        if not columns:
            return "BD-rate: no reference curve with a metric in common (best classical file per image, CompressAI)\n"
        lines = [("BD-rate, % bits at equal quality against each reference curve (negative: fewer bits; PCHIP of "
                  "log-rate over the qualities both curves reach; —: no overlap or not measured)"), "",
                 "| Series | " + " | ".join(f"vs {ref}: {BD_RATE_METRICS[m]}" for ref, m in columns) + " |",
                 "|---|" + "---:|" * len(columns)]
        for name, by_reference in rates.items():
            values = [by_reference.get(reference, {}).get(metric) for reference, metric in columns]
            lines.append(f"| {name} | " + " | ".join("—" if v is None else f"{v:+.1f}" for v in values) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "points": self.points, "bd_rate": self.bd_rates()}


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
    measured = [measure_classical(image) for image in progress_bar(images, f"{BEST_CLASSICAL_SERIES} curve",
                                                                   progress)]
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
    search iterations at ``options.bits_for`` the generator (one search each).
    """
    started = time.perf_counter()
    checkpoint, dev = resolve_checkpoint(generator, options.device)
    folder = resolve_images_dir(checkpoint, images_dir)
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
        for quality in progress_bar(list(qualities), f"{series} curve", progress):
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
                codec = GanCodec(checkpoint, bits=options.bits_for(checkpoint),
                                 search=replace(search_options, iters=count), device=dev, progress=progress)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    searches[count] = search_latents(codec, images)
        return searches[count]

    iters = search_options.iters
    gan_series = [("GAN reversal (bits)", "bits", b, iters, b) for b in options.bits_list]
    bits = options.bits_for(checkpoint)
    gan_series += [("GAN reversal (iterations)", "iters", n, n, bits) for n in options.iters_list]
    for series, parameter, value, count, b in progress_bar(gan_series, "GAN curve", progress):
        codec = GanCodec(checkpoint, bits=b, search=replace(search_options, iters=count),
                         refine_iters=options.refine_iters, device=dev)
        records = evaluate(images, [codec], gan_search=search_at(count), **kw)
        points.append(_point(series, parameter, int(value), records))
    metadata["settings"] = settings_record(options, checkpoint) | {
        "avif_qualities": list(options.avif_qualities) if avif_available() else [], "search_reused": search is not None,
        "reference_families": list(reference_families()) if options.reference_bpp else [],
        "reference_skipped": skipped_families() if options.reference_bpp else {}}
    metadata["wall_s"] = time.perf_counter() - started
    return CurvesResult(points, metadata)


def write_curves_json(curves: CurvesResult, path: str | os.PathLike[str]) -> None:
    """The curve points, metadata and BD-rates (:meth:`CurvesResult.bd_rates`) as JSON, atomically."""
    atomic_write_text(path, dump_json(curves.to_dict()))


def write_curves_markdown(curves: CurvesResult, path: str | os.PathLike[str]) -> None:
    """The BD-rate table (:meth:`CurvesResult.markdown`), atomically."""
    atomic_write_text(path, curves.markdown())


# The keys CompressAI names a metric by, for each point field. Its published results files
# (compressai/results/image/<dataset>/*.json) say psnr and ms-ssim, while 1.2.8's eval_model writes psnr-rgb and
# ms-ssim-rgb and its plot utility reads only those (-m psnr looks up psnr-rgb): both spellings are written so that
# scripts made for either find them (ganrev's PSNR and MS-SSIM are over all channels, like CompressAI's -rgb ones).
# The metrics CompressAI does not name (ssim, lpips) keep the same style.
_COMPRESSAI_KEYS = {"bpp": ("bpp",), "psnr": ("psnr", "psnr-rgb"), "ms_ssim": ("ms-ssim", "ms-ssim-rgb"),
                    "ssim": ("ssim",), "lpips": ("lpips",), "encode_s": ("encoding_time",),
                    "decode_s": ("decoding_time",)}


def compressai_results(curves: CurvesResult) -> dict[str, dict[str, Any]]:
    """Each series in CompressAI's results-JSON layout, keyed by a file name made of the series' name:
    ``{"name", "description", "results": {"bpp": [...], "psnr": [...], "psnr-rgb": [...], "ms-ssim": [...],
    "ms-ssim-rgb": [...], ...}}`` with one entry per point in increasing bpp, so that CompressAI's plotting
    (``python -m compressai.utils.plot -f ... -m psnr|ms-ssim|ssim``) or any script reading those files draws
    ganrev's curves beside published ones. A metric some point lacks (LPIPS offline; PSNR and MS-SSIM of the best
    classical file per image, whose bytes and SSIM only are measured) is left out of that series, and CompressAI's plot
    then refuses that file for that metric; times are seconds per image."""
    meta = curves.metadata
    source = (f"{meta.get('images')} images of {meta.get('images_dir')}; {meta.get('device')}; "
              f"generator {(meta.get('generator') or {}).get('path')}")
    files: dict[str, dict[str, Any]] = {}
    for series, points in curves.series().items():
        points = sorted(points, key=lambda point: point["bpp"])
        results = {key: [point[field] for point in points] for field, keys in _COMPRESSAI_KEYS.items()
                   if all(point.get(field) is not None for point in points) for key in keys}
        parameters = ", ".join(sorted({point["parameter"] for point in points}))
        name = "-".join("".join(c if c.isalnum() else " " for c in series.lower()).split())
        files[f"{name}.json"] = {"name": series, "description": f"ganrev {series} ({parameters} sweep): {source}",
                                 "results": results}
    return files


PARTIAL_DIR = "ssim-only"
"""Where series without PSNR (the best classical file per image: bytes and SSIM only) go, below the CompressAI
folder: CompressAI's plot refuses a whole ``-f folder/*.json`` for a metric one file lacks, and PSNR is its
default, so the folder itself holds only series that every ``-m`` it offers can plot."""


def write_compressai_results(curves: CurvesResult, directory: str | os.PathLike[str]) -> list[Path]:
    """:func:`compressai_results` as files in ``directory`` (made if missing), each written atomically; a series
    without PSNR in ``directory/``:data:`PARTIAL_DIR`."""
    written = []
    for name, payload in compressai_results(curves).items():
        folder = Path(directory) if "psnr-rgb" in payload["results"] else Path(directory) / PARTIAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / name, dump_json(payload))
        written.append(folder / name)
    return written


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
