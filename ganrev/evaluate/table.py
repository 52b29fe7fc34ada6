"""The comparison table (``ganrev table``): one row per scheme, as JSON, CSV, Markdown and an image grid.

The table (:func:`run_table`) has one row per scheme, in this order: PNG, K-means (K=4), JPEG (10%),
JPEG (1%), the learned baselines (JPEG 10% and 1% + ARCNN-ASPP, ComCNN/RecCNN at JPEG 10: the shipped models
trained on the generator's data set, :mod:`ganrev.codecs.learned`), WebP at the GAN's rate, WebP of the image
downscaled 2x or 4x at the GAN's rate, AVIF at the GAN's rate (only where Pillow writes AVIF), GAN reversal
(one row per generator and ``--effort`` level).
"At the GAN's rate" is the quality whose mean bpp over the images is closest to GAN reversal's mean bpp; it
is found by a sweep over the codec's qualities (see :func:`ganrev.evaluate.records.match_rate`), which is
recorded. For downscaled WebP each scale is swept and the scale whose matched rate is closest wins (ties: the
higher SSIM). The JPEG quality (1..100) closest to the GAN's rate is found the same way and evaluated too (not
a table row), so that the matched-rate SSIM differences GAN - JPEG and GAN - WebP can be reported.
:func:`write_table_grid` draws the first few images as each scheme decoded them
(:class:`~ganrev.evaluate.records.GridImages` keeps just those).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image, ImageDraw

from ganrev.codecs.base import ImageCodec
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
from ganrev.codecs.gan import GanCodec
from ganrev.codecs.hyperprior import NAME_PREFIX as PEER_PREFIX  # the learned-codec peer's rows
from ganrev.codecs.specs import codec_from_spec
from ganrev.errors import GanrevError
from ganrev.evaluate.records import (
    GAN_SCHEME,
    RECORD_FIELDS,
    GridImages,
    RateMatch,
    evaluate,
    markdown_table,
    match_rate,
    mean_or_none,
    summarise,
)
from ganrev.evaluate.runs import (
    EvalOptions,
    display_path,
    dump_json,
    load_image_folder,
    resolve_checkpoint,
    resolve_images_dir,
    run_metadata,
    search_latents,
    settings_record,
)
from ganrev.invert import InversionResult
from ganrev.io import atomic_write_text, atomic_writer, convert_channels, to_pil
from ganrev.models import GeneratorCheckpoint

__all__ = [
    "GRID_CAPTION_HEIGHT",
    "GRID_GAP",
    "GRID_LABEL_WIDTH",
    "GRID_MIN_TILE",
    "run_table",
    "TableResult",
    "write_table_csv",
    "write_table_grid",
    "write_table_json",
    "write_table_markdown",
]

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
        if "compressai" in match:
            m = match["compressai"]
            parts.append(f"nearest {m['scheme']} at {m['bpp']:.3f} bpp: SSIM {m['ssim']:.4f}, SSIM GAN − it = "
                         f"{m['ssim_gap']:+.4f}")
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
    GAN-reversal row per generator (``generator`` first, then ``options.compare``) and effort (in the order of
    ``options.efforts``), each searched with ``options.search_for``; the rates are matched to the first of these
    rows. With ``options.grid_images`` the result keeps those first images' decodings.
    """
    started = time.perf_counter()
    checkpoint, dev = resolve_checkpoint(generator, options.device)
    folder = resolve_images_dir(checkpoint, images_dir)
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

    compared = [resolve_checkpoint(path, dev)[0] for path in options.compare]
    gan_rows, searches = [], []
    for ckpt in [checkpoint] + compared:
        for effort in options.efforts:
            gan = GanCodec(ckpt, bits=options.bits_for(ckpt), search=options.search_for(ckpt, effort),
                           refine_iters=options.refine_iters, device=dev, progress=options.progress)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # resize notes are kept per image in the records
                searches.append(search_latents(gan, images))
            gan_rows.append(evaluate(images, [(options.gan_label(ckpt, effort), gan)], gan_search=searches[-1], **kw))
    result = searches[0]
    target = mean_or_none([r["bpp"] for r in gan_rows[0]])
    gan_ssim = mean_or_none([r["ssim"] for r in gan_rows[0]])

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
    rate_match: dict[str, Any] = {"target_bpp": target, "gan_ssim": gan_ssim,
                                  "gan_scheme": options.gan_label(checkpoint, options.efforts[0])}
    for key, m in matches.items():
        ssim_value = mean_or_none([r["ssim"] for r in matched_rows[key]])
        rate_match[key] = {**m.to_dict(), "scheme": matched_rows[key][0]["scheme"], "ssim": ssim_value,
                           "ssim_gap": gan_ssim - ssim_value}
    rate_match["webp_downscaled"].update(
        scale=scale, by_scale={str(s): m.to_dict() for s, m in by_scale.items()},
        choice=f"the scale in {list(DOWNSCALE_FACTORS)} whose matched mean bpp is closest (ties: higher SSIM)")
    peer = _nearest_learned(learned_rows, target, prefix=PEER_PREFIX)
    if peer is not None:
        rate_match["compressai"] = {**peer, "ssim_gap": gan_ssim - peer["ssim"]}
    metadata["settings"] = settings_record(options, checkpoint)
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
    scale = max(evaluated, key=lambda s: mean_or_none([r["ssim"] for r in evaluated[s]]))
    return scale, by_scale, evaluated[scale]


def _nearest_learned(rows: list[dict[str, Any]], target: float | None, prefix: str) -> dict[str, Any] | None:
    """The scheme among ``rows`` named ``prefix...`` whose mean bpp is nearest ``target``: scheme, bpp, SSIM."""
    schemes = sorted({row["scheme"] for row in rows if row["scheme"].startswith(prefix)})
    if target is None or not schemes:
        return None
    means = {scheme: (mean_or_none([r["bpp"] for r in rows if r["scheme"] == scheme]),
                      mean_or_none([r["ssim"] for r in rows if r["scheme"] == scheme])) for scheme in schemes}
    scheme = min(schemes, key=lambda name: abs(means[name][0] - target))
    return {"scheme": scheme, "bpp": means[scheme][0], "ssim": means[scheme][1],
            "choice": "the shipped CompressAI model whose mean bpp is nearest the GAN's"}


def _factory(key: str) -> Callable[[int], ImageCodec]:
    return {"jpeg": JPEGCodec, "webp": WebPCodec, "avif": AVIFCodec}[key]


def write_table_json(result: TableResult, path: str | os.PathLike[str]) -> None:
    """Metadata, summary, rate matching and per-image records as JSON, atomically."""
    atomic_write_text(path, dump_json(result.to_dict()))


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
    search, efforts = meta["settings"]["search"], meta["settings"]["efforts"]
    searched = f"{search['iters']} search iterations, {search['restarts']} restarts"
    if len(efforts) > 1:  # settings["search"] is the first effort's
        searched = f"efforts {', '.join(map(str, efforts))} (the first: {searched})"
    note = (f"{meta['images']} images from `{meta['images_dir']}`; generator `{meta['generator']['path']}` "
            f"(fingerprint {meta['generator']['fingerprint'][:12]}); {searched}, "
            f"{meta['settings']['bits']} bits; {meta['device']}; "
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
