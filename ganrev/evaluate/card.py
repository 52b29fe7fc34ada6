"""What a trained generator is good for, measured when its run ends: the bits ``compress`` uses by default, and
``MODEL_CARD.md``.

:func:`describe_generator` runs the default ``compress`` search once on up to ``count`` validation images (one per
split group, carved from the training side: never the test split) and once on as many training images, and
packs each at every precision of :data:`CANDIDATE_BITS`. The default bits are the knee of that curve
(:func:`choose_bits`); they go into config.json's ``compress_bits``. Then each validation file is set beside
the best classical file within its bytes (:func:`ganrev.reference.best_file_within`: WebP, shrunk WebP, JPEG, AVIF
at every quality that could fit), and the card says how the generator does against it. config.json's ``report`` keeps the
headline (``ganrev models`` shows it).

A generator trained with nested dropout (``fit-generator --nested-dropout``) also gets ``leading_latents``: the
counts k of leading latent coordinates whose files rate control tries (:func:`choose_leading`, on the same
validation images), the small files low rates need.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from ganrev.bitstream.ratecontrol import tracked_bits
from ganrev.codecs.gan import GanCodec
from ganrev.data import carve_validation, one_per_group, open_dataset
from ganrev.errors import GanrevError
from ganrev.evaluate.runs import HELDOUT_DIR
from ganrev.invert import default_search
from ganrev.io import atomic_write_text
from ganrev.metrics import ssim
from ganrev.models import GeneratorCheckpoint, load_generator, set_compress_bits, update_config
from ganrev.reference import best_file_within

CARD_FILE = "MODEL_CARD.md"
CANDIDATE_BITS = (3, 4, 5, 6)
KNEE_GAIN = 0.015
"""One more bit per coordinate must add at least this much mean SSIM to be the default. A bit costs about a
quarter more bytes at latent 160 (20 of 87). On emoji64's validation emoji (experiments/results/default_bits-
emoji64: 3/4/5/6 bits gave 0.843/0.882/0.890/0.893 SSIM at 66/87/107/127 bytes) the rule picks 4 bits, the
precision shipped after measuring (the fifth bit's +0.008 took the files past 0.18 bpp); on Iconify logos the fifth
bit added +0.010 after a 20-minute run and +0.014 on a 300-image folder after one minute (docs/training.md), both
for 0.21 bpp: the rule keeps such folders at 4 bits, under 0.18 bpp, as the shipped generator is."""


LEADING_CANDIDATES = (32, 48, 64, 80, 96, 112, 128)
"""Leading-coordinate counts measured for a generator trained with nested dropout (those below its latent size). 112:
once the search tracked the rounding, 112 coordinates at 3 bits became the best file within 51 bytes (0.1 bpp) for
most of 64 Google validation emoji in rate control (experiments/low_rate.py --leading 48,64,80,96,112)."""
LEADING_BITS = (2, 3, 4)
LEADING_BUDGETS_BPP = (0.06, 0.08, 0.10, 0.12)
"""The low rates ``leading_latents`` serve: at 64x64, 30-61 bytes; the whole latent of 160 coordinates needs about
45 bytes at 2 bits."""
LEADING_CHOSEN = 3
"""How many counts rate control tries: each costs one more search of every image."""

LeadingFiles = dict[tuple[int | None, int], list[tuple[int, float]]]
"""``(leading count or None for the whole latent, bits)`` -> per image (bytes, SSIM of the decoded file)."""


@dataclass(frozen=True)
class BitsPoint:
    """The default search's files at one precision: mean SSIM of the decoded files, bytes and bpp."""

    bits: int
    ssim: float
    bytes: float
    bpp: float


@dataclass(frozen=True)
class SetFigures:
    """One image set at the chosen bits: SSIM of E(x) alone, of the default compress, bytes, bpp, and the best
    classical file within each file's bytes (None where not measured)."""

    name: str
    images: int
    encoder_ssim: float | None
    ssim: float
    bytes: float
    bpp: float
    classical_ssim: float | None = None
    classical_missing: int = 0  # images with no classical file that small (counted as SSIM 0)


@dataclass(frozen=True)
class GeneratorReport:
    """What :func:`describe_generator` measured and chose."""

    bits: int
    curve: tuple[BitsPoint, ...]
    bits_chosen_on: str
    sets: tuple[SetFigures, ...]
    leading: tuple[int, ...] = ()  # leading_latents chosen (a generator trained with nested dropout)
    # per budget in bytes: the mean best latent-file SSIM within it, from the whole latent and with ``leading``
    leading_budgets: tuple[tuple[int, float, float], ...] = ()

    def headline(self) -> dict[str, Any]:
        """config.json's ``report``: the first set's figures (validation where there is one)."""
        first = self.sets[0]
        return {"set": first.name, "images": first.images, "ssim": round(first.ssim, 4), "bpp": round(first.bpp, 4),
                "bytes": round(first.bytes, 1), "bits": self.bits,
                "classical_ssim": None if first.classical_ssim is None else round(first.classical_ssim, 4)}

    def summary_lines(self) -> list[str]:
        """The lines ``fit-generator`` ends with."""
        lines = [f"compress_bits {self.bits} (chosen on {self.bits_chosen_on}: "
                 + ", ".join(f"{p.bits} bits {p.ssim:.3f} @ {p.bpp:.3f} bpp" for p in self.curve) + ")"]
        for figures in self.sets:
            line = f"{figures.name}: SSIM {figures.ssim:.3f} at {figures.bpp:.3f} bpp ({figures.images} images)"
            if figures.classical_ssim is not None:
                line += (f"; best classical file within the same bytes {figures.classical_ssim:.3f} "
                         f"({figures.ssim - figures.classical_ssim:+.3f})")
            lines.append(line)
        if self.leading:
            lines.append(f"leading_latents {', '.join(map(str, self.leading))} (low rates: best latent file within "
                         + ", ".join(f"{budget} B {whole:.3f} -> {picked:.3f}"
                                     for budget, whole, picked in self.leading_budgets) + ")")
        return lines


def choose_bits(curve: list[BitsPoint] | tuple[BitsPoint, ...]) -> int:
    """The knee of the SSIM-by-bits curve: the fewest bits after which one more adds less than :data:`KNEE_GAIN`
    SSIM (the most bits tried when every step adds more)."""
    ordered = sorted(curve, key=lambda p: p.bits)
    if not ordered:
        raise GanrevError("choosing bits needs at least one measured precision")
    for point, following in zip(ordered, ordered[1:]):
        if following.ssim - point.ssim < KNEE_GAIN:
            return point.bits
    return ordered[-1].bits


def measure_leading(checkpoint: GeneratorCheckpoint, images: torch.Tensor, counts: tuple[int | None, ...],
                    bits: tuple[int, ...]) -> LeadingFiles:
    """For each leading count (None: the whole latent) one default search of ``images`` moving only those
    coordinates and tracking the rounding at ``bits`` as rate control's searches do, packed at each of ``bits``: every
    file's bytes and the SSIM of what it decodes to."""
    files: LeadingFiles = {}
    tracked = tracked_bits(bits)
    for count in counts:
        search = replace(default_search(checkpoint.encoder is not None), leading=count, rounded_bits=tracked)
        result = GanCodec(checkpoint, search=search).search_latents(list(images))
        for precision in bits:
            packed = GanCodec(checkpoint, bits=precision, search=search).compress_latents(list(images), result)
            files[count, precision] = [(len(p.data), p.ssim_refined) for p in packed]
    return files


def best_within(files: LeadingFiles, keys: list[tuple[int | None, int]], budget: int) -> float:
    """Mean over images of the best SSIM among the files of ``keys`` within ``budget`` bytes (0 where none fits)."""
    count = len(next(iter(files.values())))
    return sum(max((files[key][i][1] for key in keys if files[key][i][0] <= budget), default=0.0)
               for i in range(count)) / count


def choose_leading(files: LeadingFiles, budgets: tuple[int, ...], how_many: int = LEADING_CHOSEN) -> tuple[int, ...]:
    """Greedily, the leading counts of ``files`` that, beside the whole latent, raise the summed
    :func:`best_within` over ``budgets`` the most; a count that adds nothing is not taken."""
    counts = sorted({count for count, _ in files if count is not None})
    precisions = sorted({precision for _, precision in files})

    def score(picked: list[int]) -> float:
        keys = [(count, precision) for count in [None, *picked] for precision in precisions]
        return sum(best_within(files, keys, budget) for budget in budgets)

    chosen: list[int] = []
    for _ in range(how_many):
        left = [count for count in counts if count not in chosen]
        best = max(left, key=lambda count: score(chosen + [count]), default=None)
        if best is None or score(chosen + [best]) <= score(chosen):
            break
        chosen.append(best)
    return tuple(sorted(chosen))


def _bpp(size: float, image: torch.Tensor) -> float:
    return size * 8 / (image.shape[-1] * image.shape[-2])


def _measure_bits(checkpoint: GeneratorCheckpoint, images: torch.Tensor,
                  bits_tried: tuple[int, ...]) -> tuple[list[BitsPoint], dict[int, list[int]]]:
    """One default search, packed at every precision (:func:`measure_leading` of the whole latent): the curve and
    each precision's file sizes."""
    files = measure_leading(checkpoint, images, (None,), bits_tried)
    curve, sizes = [], {}
    for bits in bits_tried:
        sizes[bits] = [size for size, _ in files[None, bits]]
        size = sum(sizes[bits]) / len(sizes[bits])
        score = sum(value for _, value in files[None, bits]) / len(sizes[bits])
        curve.append(BitsPoint(bits, score, size, _bpp(size, images)))
    return curve, sizes


def _encoder_ssim(checkpoint: GeneratorCheckpoint, images: torch.Tensor) -> float | None:
    if checkpoint.encoder is None:
        return None
    with torch.no_grad():
        return float(ssim(checkpoint.generator.images(checkpoint.encoder(images)).clamp(0, 1), images).mean())


def _classical_beside(images: torch.Tensor, sizes: list[int]) -> tuple[float, int]:
    """Mean SSIM of the best classical file within each file's bytes, and how many images had none that small."""
    scores, missing = [], 0
    for image, size in zip(images, sizes):
        best = best_file_within(image, size)
        missing += best is None
        scores.append(best.ssim if best is not None else 0.0)
    return sum(scores) / len(scores), missing


def _set_figures(checkpoint: GeneratorCheckpoint, name: str, images: torch.Tensor, point: BitsPoint,
                 sizes: list[int], classical: bool) -> SetFigures:
    """One set's figures at ``point``'s precision (``sizes``: its files' bytes), beside the classical files if
    asked."""
    versus = _classical_beside(images, sizes) if classical else (None, 0)
    return SetFigures(name, len(images), _encoder_ssim(checkpoint, images), point.ssim, point.bytes, point.bpp,
                      versus[0], versus[1])


def compare_with_classical(checkpoint: GeneratorCheckpoint, images: torch.Tensor, name: str,
                           bits: int | None = None, classical: bool = True) -> SetFigures:
    """``images`` compressed by the default search at ``bits`` (the generator's own when None), each file beside
    the best classical file within its bytes (when ``classical``)."""
    bits = checkpoint.compress_bits if bits is None else bits
    (point,), sizes = _measure_bits(checkpoint, images, (bits,))
    return _set_figures(checkpoint, name, images, point, sizes[bits], classical)


def evaluation_images(source: str, resolution: int, channels: int, count: int) -> dict[str, torch.Tensor]:
    """Up to ``count`` images, one per split group, of the validation groups (carved from the training side) and
    of the groups fitted ("seen"); a source too small for validation groups has only "seen"."""
    train = open_dataset(source, "train", resolution=resolution, channels=channels)
    fit, validation = carve_validation(train, source)
    sets = {"validation": validation, "seen": fit} if validation is not None else {"seen": fit}
    return {name: torch.stack([dataset[i] for i in one_per_group(dataset, source, count)])
            for name, dataset in sets.items() if dataset is not None}


def describe_generator(directory: str | os.PathLike[str], *, count: int = 64, classical: bool = True,
                       bits_tried: tuple[int, ...] = CANDIDATE_BITS, command: str | None = None) -> GeneratorReport:
    """Measure a trained generator with an encoder on its own data, record its default bits (``compress_bits``)
    and headline (``report``) in config.json, and write ``MODEL_CARD.md`` beside it.

    ``count``: images per set; ``classical``: also measure the best classical file within each validation file's
    bytes (1-2 s an image); ``command``: the command that trained it, for the card."""
    directory = Path(directory)
    checkpoint = load_generator(directory)
    meta, cfg = checkpoint.metadata, checkpoint.config
    if "dataset" not in meta:
        raise GanrevError(f"{directory}: its config.json names no data set to measure it on")
    image_sets = evaluation_images(meta["dataset"], cfg.resolution, cfg.channels, count)
    chosen_on = "validation" if "validation" in image_sets else "seen"
    measured = {name: _measure_bits(checkpoint, images, bits_tried) for name, images in image_sets.items()}
    curve = measured[chosen_on][0]
    bits = choose_bits(curve)
    sets = tuple(_set_figures(checkpoint, name, images, next(p for p in measured[name][0] if p.bits == bits),
                              measured[name][1][bits], classical and name == chosen_on)
                 for name, images in image_sets.items())
    report = GeneratorReport(bits, tuple(curve), f"{len(image_sets[chosen_on])} {chosen_on} images", sets)
    if meta.get("training", {}).get("options", {}).get("nested_dropout", 0) > 0:
        report = _with_leading(report, checkpoint, image_sets[chosen_on])
        update_config(directory, {"leading_latents": list(report.leading)})
    set_compress_bits(directory, bits)
    update_config(directory, {"report": report.headline()})
    atomic_write_text(directory / CARD_FILE, model_card(directory.name, checkpoint, report, command))
    return report


def _with_leading(report: GeneratorReport, checkpoint: GeneratorCheckpoint, images: torch.Tensor) -> GeneratorReport:
    """``report`` with the leading counts chosen on ``images`` and what they give at each low-rate budget."""
    counts = tuple(count for count in LEADING_CANDIDATES if count < checkpoint.config.latent_dim)
    files = measure_leading(checkpoint, images, (None, *counts), LEADING_BITS)
    side = images.shape[-1] * images.shape[-2]
    budgets = tuple(int(bpp * side / 8) for bpp in LEADING_BUDGETS_BPP)
    leading = choose_leading(files, budgets)
    whole = [(None, precision) for precision in LEADING_BITS]
    picked = [(count, precision) for count in (None, *leading) for precision in LEADING_BITS]
    return replace(report, leading=leading, leading_budgets=tuple(
        (budget, best_within(files, whole, budget), best_within(files, picked, budget)) for budget in budgets))


def fit_command(options: Any, out: str | os.PathLike[str]) -> str:
    """The ``ganrev fit-generator`` command line of a run's options (a TrainOptions): the data, the output and
    every option that differs from its default."""
    defaults = type(options)(data=options.data, objective=options.objective)
    parts = ["ganrev", "fit-generator", "--data", str(options.data), "--out", str(out)]
    for field in fields(options):
        if field.name in ("data", "epochs"):
            continue
        value, default = getattr(options, field.name), getattr(defaults, field.name)
        if field.name == "init_from" and value is None:
            value = "none"  # random weights, said outright: the default may start from a shipped generator
        if value == default or value is None:
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + field.name.replace("_", "-"))
        else:
            parts += [flag, str(value)]
    parts += ["--epochs", str(options.epochs)]
    return shlex.join(parts)


def model_card(name: str, checkpoint: GeneratorCheckpoint, report: GeneratorReport, command: str | None) -> str:
    """MODEL_CARD.md of a trained generator from its config.json and ``report``."""
    meta, cfg = checkpoint.metadata, checkpoint.config
    training, split = meta.get("training", {}), meta.get("split", {})
    options = training.get("options", {})
    batch = options.get("batch_size", 64)
    steps = (f"{training['epochs'] * (training['fit_images'] // batch):,} steps of {batch} images"
             if "fit_images" in training and "epochs" in training else "not recorded")
    parameters = sum(p.numel() for p in checkpoint.generator.parameters())
    rows = [
        ("architecture", f"DCGAN, latent {cfg.latent_dim}, width {cfg.width}, {parameters:,} parameters"
                         + (", with an encoder" if checkpoint.encoder is not None else "")),
        ("fingerprint (SHA-256 of weights)", f"`{checkpoint.fingerprint}`"),
        ("data", f"`{meta.get('dataset', '?')}`, {cfg.resolution}x{cfg.resolution} "
                 f"{'RGB' if cfg.channels == 3 else 'gray'}"),
        ("images", f"{split.get('train_images', '?')} on the training side ({training.get('fit_images', '?')} "
                   f"fitted, {training.get('validation_images', 0)} validation), {split.get('test_images', '?')} "
                   "held out (test)"),
        ("split", split.get("rule", "not recorded")),
        ("training", f"{training.get('objective', '?')}, {training.get('epochs', '?')} epochs, {steps}"
                     + (f", started from `{options['init_from']}`" if options.get("init_from") else "")),
        ("wall time", f"{training['wall_s'] / 60:.1f} min" if "wall_s" in training else "not recorded"),
        ("device", f"{training.get('device', '?')}, {training.get('precision', 'fp32')}, torch "
                   f"{training.get('torch', '?')}"),
        ("compress's default", f"{report.bits} bits per latent coordinate (`compress_bits` in config.json)"),
    ]
    text = f"# {name}: a ganrev generator for `{meta.get('dataset', '?')}`\n\n| | |\n|---|---|\n"
    text += "".join(f"| {key} | {value} |\n" for key, value in rows)
    if command:
        text += f"\nTrained by:\n\n```bash\n{command}\n```\n"
    search = default_search(checkpoint.encoder is not None)
    text += (f"\n## How well it compresses\n\nMeasured when the run ended: `ganrev compress`'s default search "
             f"({search.init} start, <= {search.iters} iterations), {report.bits} bits per coordinate, one image per "
             "split group; validation groups were carved from the training side and never fitted; the test split "
             "was not touched. The best classical file is the one with the highest SSIM among WebP (also shrunk "
             "2x and 4x), lossless WebP, JPEG 4:4:4 and AVIF 4:4:4 at every quality, within each GAN file's "
             "bytes.\n\n| images | count | SSIM, encoder alone | SSIM, default compress | bytes | bpp | best "
             "classical, same bytes | GAN - classical |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
    for figures in report.sets:
        encoder = "-" if figures.encoder_ssim is None else f"{figures.encoder_ssim:.4f}"
        classical = "-" if figures.classical_ssim is None else f"{figures.classical_ssim:.4f}"
        gap = "-" if figures.classical_ssim is None else f"{figures.ssim - figures.classical_ssim:+.4f}"
        text += (f"| {figures.name} | {figures.images} | {encoder} | {figures.ssim:.4f} | {figures.bytes:.1f} | "
                 f"{figures.bpp:.3f} | {classical} | {gap} |\n")
    missing = sum(f.classical_missing for f in report.sets)
    if missing:
        text += f"\n{missing} images had no classical file as small as the GAN file: counted as SSIM 0.\n"
    heldout = sorted((checkpoint.path / HELDOUT_DIR).glob("*.png")) if checkpoint.path is not None else []
    if heldout:
        text += (f"\n`heldout/`: {len(heldout)} images of the test split (one per split group, never trained on or "
                 f"measured above): `ganrev table -g {name}` sets every codec beside this generator on them.\n")
    text += (f"\n## Default bits\n\nThe default search on {report.bits_chosen_on}, packed at each precision; "
             f"the default is the fewest bits after which one more adds less than {KNEE_GAIN} SSIM:\n\n"
             "| bits | SSIM | bytes | bpp |\n|---:|---:|---:|---:|\n")
    text += "".join(f"| {p.bits}{' (default)' if p.bits == report.bits else ''} | {p.ssim:.4f} | {p.bytes:.1f} | "
                    f"{p.bpp:.3f} |\n" for p in report.curve)
    if report.leading:
        text += (f"\n## Low rates\n\nTrained with nested dropout: files of the latent's first k coordinates decode "
                 f"well. Rate control (`--target-bpp`, `--target-ssim`) also tries k = "
                 f"{', '.join(map(str, report.leading))} (`leading_latents` in config.json), chosen on "
                 f"{report.bits_chosen_on} as the counts that most raise the best latent file within "
                 f"{', '.join(str(b) for b, _, _ in report.leading_budgets)} bytes at "
                 f"{', '.join(map(str, LEADING_BITS))} bits:\n\n| budget | bpp | whole latent | with those k |\n"
                 "|---:|---:|---:|---:|\n")
        side = checkpoint.config.resolution ** 2
        text += "".join(f"| {budget} B | {budget * 8 / side:.3f} | {whole:.4f} | {picked:.4f} |\n"
                        for budget, whole, picked in report.leading_budgets)
        text += "\nMean SSIM of the best latent file within the budget, 0 where none fits (no layers, no fallback).\n"
    text += ("\nOther rates: `ganrev compress --bits N`, or rate control (`--target-ssim`, `--target-bpp`), which "
             "adds a residual or modulation layer, or falls back to a classical file, where that is better.\n")
    return text


__all__ = ["CANDIDATE_BITS", "CARD_FILE", "KNEE_GAIN", "LEADING_BITS", "LEADING_BUDGETS_BPP", "LEADING_CANDIDATES",
           "BitsPoint", "GeneratorReport", "LeadingFiles", "SetFigures", "best_within", "choose_bits", "choose_leading",
           "compare_with_classical", "describe_generator", "evaluation_images", "fit_command", "measure_leading",
           "model_card"]
