"""The loss-function study of seeds 000/001 on ganrev's own autoencoder (issue 10).

Two questions, two parts:

1. **Training loss.** The project's encoder + DCGAN generator (``fit-generator --objective aegan``, the same
   code, not a fork) is trained with each of the seeds' seven reconstruction losses -- ``l1, l2, ssim,
   ms-ssim, bce, ms-ssim+l1, ms-ssim+l2`` -- and ``ssim+l1`` (the default before this study), once as a plain autoencoder (adversarial weight 0, as in the seeds) and once
   with the adversarial term (reconstruction-only first epoch, then adversarial, as the shipped recipe does),
   at equal budget: same epochs, steps, seed and data. Each run is measured on held-out (test-split) images
   as a codec at ``--bits 6`` with the encoder alone (``--init encoder --iters 0``, no refinement): the
   autoencoder's own quality, in real files.
2. **Search loss.** For the shipped generator, ``compress --loss NAME`` from its encoder start at equal
   iterations (the search pinned in ``SEARCH_SETTINGS``) on its held-out folder: which search loss gives the
   best SSIM, PSNR and LPIPS.

Results: ``experiments/results/loss_study.{json,md,png}`` (``--out``). Each training run's checkpoint and
metrics stay under ``--runs``; a run whose ``metrics.json`` exists is not trained again, so an interrupted
study resumes, and parts can run in separate processes (``--datasets``) before a final call writes the report.

    python experiments/loss_study.py                # full: 2 data sets x 8 losses x adversarial off/on
    python experiments/loss_study.py --datasets emoji --no-report &    # the same, both data sets side by side
    python experiments/loss_study.py --datasets fashion-mnist --no-report; wait; python experiments/loss_study.py
    python experiments/loss_study.py --quick        # 1 step per run on the shipped held-out folders (a test)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from ganrev.codecs.gan import GanCodec
from ganrev.bitstream.container import FORMAT_VERSION
from ganrev.data import open_dataset
from ganrev.evaluate import evaluate
from ganrev.invert import SearchOptions, default_search
from ganrev.io import atomic_write_bytes, load_image
from ganrev.metrics import lpips_status
from ganrev.models import load_generator
from ganrev.training.common import image_grid
from ganrev.training.generator import TrainOptions, fit_generator

ROOT = Path(__file__).resolve().parent.parent
SEED_LOSSES = ("l1", "l2", "ssim", "ms-ssim", "bce", "ms-ssim+l1", "ms-ssim+l2")  # the seeds' seven
STUDY_LOSSES = SEED_LOSSES + ("ssim+l1",)  # + fit-generator's default before this study, to test it too
SEARCH_LOSSES = ("ssim", "ms-ssim", "l1", "l2", "bce", "ms-ssim+l1", "ms-ssim+l2", "ssim+l1")
ADV_WEIGHT = 0.05  # the shipped default of fit-generator
BITS = 6
# The search of part 2, pinned: compress's encoder-start defaults when the study ran (since then the default
# is 200 iterations at lr 0.3 without refinement; README "Where the quality and the speed come from"), so the
# published comparison of search losses stays what this script regenerates.
SEARCH_SETTINGS = {"iters": 100, "lr": 0.05, "patience": 100}
SEARCH_REFINE_ITERS = 50
PICTURE_IMAGES = 8


@dataclass(frozen=True)
class DatasetPlan:
    """One data set of the study and its equal-for-every-loss budget."""

    name: str  # as reported: emoji, fashion-mnist
    source: str  # what open_dataset takes: a built-in name or a folder
    resolution: int
    channels: int
    latent_dim: int
    width: int
    epochs: int
    steps_per_epoch: int | None  # None: whole epochs
    eval_images: int  # held-out images measured (evenly spaced over the test split)

    def options(self, loss: str, adversarial: bool) -> TrainOptions:
        return TrainOptions(data=self.source, resolution=self.resolution, channels=self.channels,
                            latent_dim=self.latent_dim, width=self.width, disc_width=self.width,
                            epochs=self.epochs, max_steps_per_epoch=self.steps_per_epoch, recon_loss=loss,
                            adv_weight=ADV_WEIGHT if adversarial else 0.0, adv_warmup=max(1, self.epochs // 3),
                            validation=False, seed=0,
                            # the study's recipe, from before the defaults became emoji64's (same figures on rerun)
                            lr=1e-3, beta2=0.999, latent_noise=0.0, cooldown=0, init_from=None)


def full_plans() -> list[DatasetPlan]:
    # Budgets sized for this project's 2-core CPU machine: measured per step on one free thread, the 16 emoji
    # runs take ~42 min and the 16 Fashion-MNIST runs ~32 min, so the two data sets side by side (above) and
    # the search part (~10 min) fit in an hour. Emoji gets 3 epochs (141 steps of 64), Fashion-MNIST
    # 3 x 200 steps (0.64 of an epoch: it has 18x the images).
    return [DatasetPlan("fashion-mnist", "fashion-mnist", 32, 1, 64, 32, 3, 200, 1000),
            DatasetPlan("emoji", "emoji", 64, 3, 100, 32, 3, None, 400)]


def quick_plans() -> list[DatasetPlan]:
    # The shipped held-out folders stand in for the data sets: small, offline, present in every checkout.
    return [DatasetPlan("fashion-mnist", str(ROOT / "pretrained/fashion-mnist32/heldout"), 32, 1, 8, 4, 2, 1, 4),
            DatasetPlan("emoji", str(ROOT / "pretrained/emoji64/heldout"), 64, 3, 8, 4, 2, 1, 4)]


def heldout_images(plan: DatasetPlan) -> tuple[list[str], list[torch.Tensor]]:
    test = open_dataset(plan.source, "test", resolution=plan.resolution, channels=plan.channels)
    step = max(1, len(test) // plan.eval_images)
    indices = list(range(0, len(test), step))[:plan.eval_images]
    labels = test.labels or [str(i) for i in range(len(test))]
    return [labels[i] for i in indices], [test[i] for i in indices]


def run_path(runs: Path, dataset: str, loss: str, adversarial: bool) -> Path:
    """Where one study run keeps its checkpoint and metrics."""
    return runs / dataset / f"{loss}-{'adv' if adversarial else 'ae'}"


def train_and_measure(plan: DatasetPlan, loss: str, adversarial: bool, runs: Path, names: list[str],
                      images: list[torch.Tensor], progress: bool) -> dict[str, Any]:
    """One study run: train (unless its metrics exist), then measure the encoder-only codec at BITS bits."""
    run_dir = run_path(runs, plan.name, loss, adversarial)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        row = json.loads(metrics_path.read_text())
        if row.get("format_version") == FORMAT_VERSION:
            return row
        # Measured in files of another container version: the bytes differ, so measure again (no training).
        row |= measure(run_dir, names, images)
        atomic_write_bytes(metrics_path, (json.dumps(row, indent=1) + "\n").encode())
        return row
    options = plan.options(loss, adversarial)
    started = time.perf_counter()
    if (run_dir / "train_state.pt").is_file():  # an interrupted run: finish it
        fit_generator(options, run_dir, resume=True, progress=progress, describe=False)
    else:
        fit_generator(options, run_dir, progress=progress, describe=False)  # the study measures its own way
    seconds = time.perf_counter() - started
    row = {"dataset": plan.name, "loss": loss, "adversarial": adversarial, "epochs": plan.epochs,
           "steps_per_epoch": plan.steps_per_epoch, "seconds": round(seconds, 1),
           **measure(run_dir, names, images)}
    atomic_write_bytes(metrics_path, (json.dumps(row, indent=1) + "\n").encode())
    return row


def encoder_codec(run_dir: Path) -> GanCodec:
    """The run's generator as a BITS-bit codec of the encoder's latent alone: no search, no refinement."""
    return GanCodec(load_generator(run_dir), bits=BITS, search=SearchOptions(init="encoder", iters=0, restarts=1),
                    refine_iters=0, device="cpu")


def measure(run_dir: Path, names: list[str], images: list[torch.Tensor]) -> dict[str, Any]:
    codec = encoder_codec(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = evaluate(images, [("encoder", codec)], names=names)
    return mean_metrics(records)


def mean_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [r[key] for r in records if r[key] is not None]
        return round(sum(values) / len(values), 4) if values else None

    return {"ssim": mean("ssim"), "ms_ssim": mean("ms_ssim"), "psnr": mean("psnr"), "lpips": mean("lpips"),
            "bytes": mean("bytes"), "bpp": mean("bpp"), "images": len(records), "format_version": FORMAT_VERSION}


@torch.no_grad()
def reconstructions(run_dir: Path, images: torch.Tensor) -> torch.Tensor:
    """What the 6-bit encoder-only file decodes to, for the picture."""
    codec = encoder_codec(run_dir)
    return torch.stack([codec.decode(item.data) for item in codec.compress(list(images))])


def picture(panels: list[tuple[str, list[str], torch.Tensor]], path: Path) -> None:
    """Stack one labelled panel per data set: each row is one set of images (originals first)."""
    rendered = []
    label_width = 150
    for title, row_labels, rows in panels:
        n_rows, n_cols, channels, h, w = rows.shape
        scale = max(1, 64 // h)  # Fashion-MNIST's 32 px doubled, so both panels read alike
        tiles = rows.flatten(0, 1).expand(-1, 3, -1, -1) if channels == 1 else rows.flatten(0, 1)
        tiles = torch.nn.functional.interpolate(tiles, scale_factor=scale, mode="nearest")
        grid = image_grid(tiles, nrow=n_cols)
        array = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        body = Image.fromarray(array)
        panel = Image.new("RGB", (label_width + body.width, body.height + 20), "white")
        panel.paste(body, (label_width, 20))
        draw = ImageDraw.Draw(panel)
        draw.text((4, 4), title, fill="black")
        row_height = h * scale + 2
        for k, label in enumerate(row_labels):
            draw.text((4, 20 + 2 + k * row_height + row_height // 2 - 6), label, fill="black")
        rendered.append(panel)
    out = Image.new("RGB", (max(p.width for p in rendered), sum(p.height for p in rendered)), "white")
    top = 0
    for panel in rendered:
        out.paste(panel, (0, top))
        top += panel.height
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def search_study(generator_dir: Path, losses: tuple[str, ...], limit: int | None, runs: Path) -> list[dict[str, Any]]:
    """compress --loss NAME with the shipped generator's default start and iterations, per loss (each row is
    kept under ``runs/search/`` and re-used, like the training runs)."""
    checkpoint = load_generator(generator_dir)
    paths = sorted((generator_dir / "heldout").glob("*.png"))[:limit]
    images = [load_image(p) for p in paths]
    rows = []
    for loss in losses:
        cached = runs / "search" / f"{generator_dir.name}-{checkpoint.fingerprint[:12]}" / f"{loss}.json"
        row = json.loads(cached.read_text()) if cached.is_file() else {}
        if row.get("format_version") == FORMAT_VERSION:
            rows.append(row)
            continue
        search = default_search(checkpoint.encoder is not None, loss=loss, **SEARCH_SETTINGS)
        codec = GanCodec(checkpoint, bits=BITS, search=search, refine_iters=SEARCH_REFINE_ITERS, device="cpu")
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = evaluate(images, [(loss, codec)], names=[p.name for p in paths])
        rows.append({"generator": generator_dir.name, "search_loss": loss, "init": search.init,
                     "iters": search.iters, "restarts": search.restarts,
                     "seconds": round(time.perf_counter() - started, 1), **mean_metrics(records)})
        atomic_write_bytes(cached, (json.dumps(rows[-1], indent=1) + "\n").encode())
    return rows


def _cell(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict[str, Any]], search_rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Loss study (issue 10; seeds 000/001)", "",
             f"Device: {meta['device']}. Command: `{meta['command']}`.", "",
             "Training: each row is the project's encoder + DCGAN generator trained with that reconstruction "
             "loss at the same budget; *adv* adds the adversarial term after a reconstruction-only warm-up. "
             f"Measured on held-out test-split images as real {BITS}-bit files decoded from the encoder's latent "
             "alone (no search). LPIPS: AlexNet v0.1, lower is better. Bold: the best of each column per data "
             "set. *train s* is wall time on a machine shared with other jobs: it says nothing about a loss's "
             "speed.", ""]
    for dataset in meta["datasets"]:
        plan = dataset
        lines += [f"## {plan['name']} ({plan['resolution']}x{plan['resolution']}, {plan['channels']} channel(s), "
                  f"latent {plan['latent_dim']}, {plan['epochs']} epochs"
                  + (f" x {plan['steps_per_epoch']} steps" if plan["steps_per_epoch"] else "")
                  + f", {plan['eval_images']} held-out images)", "",
                  "| loss | adversarial | SSIM | MS-SSIM | PSNR | LPIPS | bytes | train s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        chosen = [r for r in rows if r["dataset"] == plan["name"]]
        best = {key: (max if key != "lpips" else min)((r[key] for r in chosen if r[key] is not None), default=None)
                for key in ("ssim", "ms_ssim", "psnr", "lpips")}
        for r in chosen:
            cells = []
            for key, digits in (("ssim", 4), ("ms_ssim", 4), ("psnr", 2), ("lpips", 4)):
                text = _cell(r[key], digits)
                cells.append(f"**{text}**" if r[key] is not None and r[key] == best[key] else text)
            lines.append(f"| {r['loss']} | {'on' if r['adversarial'] else 'off'} | " + " | ".join(cells)
                         + f" | {_cell(r['bytes'], 1)} | {r['seconds']:.0f} |")
        lines.append("")
    if search_rows:
        first = search_rows[0]
        lines += [f"## Search loss (`compress --loss`), generator {first['generator']}, its held-out folder "
                  f"({first['images']} images), init {first['init']}, {first['iters']} iterations x "
                  f"{first['restarts']} restart(s) at lr {SEARCH_SETTINGS['lr']}, {SEARCH_REFINE_ITERS} refinement "
                  f"steps, {BITS} bits", "",
                  "| search loss | SSIM | MS-SSIM | PSNR | LPIPS | bytes | s |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in search_rows:
            lines.append(f"| {r['search_loss']} | {_cell(r['ssim'], 4)} | {_cell(r['ms_ssim'], 4)} | "
                         f"{_cell(r['psnr'], 2)} | {_cell(r['lpips'], 4)} | {_cell(r['bytes'], 1)} | {r['seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget on the shipped held-out folders")
    parser.add_argument("--datasets", default=None, help="comma-separated subset of the data sets to run")
    parser.add_argument("--losses", default=None, help="comma-separated subset of the losses (for split runs: "
                        "processes given disjoint subsets may run side by side)")
    parser.add_argument("--runs", type=Path, default=None, help="checkpoints [runs/loss_study(_quick)]")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--generator", type=Path, default=ROOT / "pretrained" / "emoji64",
                        help="generator of the search-loss part")
    parser.add_argument("--no-search", action="store_true", help="skip the search-loss part")
    parser.add_argument("--no-report", action="store_true", help="train and measure only (for split runs)")
    parser.add_argument("--search-only", action="store_true", help="the search-loss part only (for split runs)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plans = quick_plans() if args.quick else full_plans()
    args.runs = args.runs or ROOT / "runs" / ("loss_study_quick" if args.quick else "loss_study")
    if args.datasets:
        wanted = args.datasets.split(",")
        plans = [p for p in plans if p.name in wanted]

    search_losses, search_limit = (("ssim", "l2"), 4) if args.quick else (SEARCH_LOSSES, None)
    if args.search_only:
        search_study(args.generator, search_losses, search_limit, args.runs)
        return 0
    rows, panels = [], []
    for plan in plans:
        names, images = heldout_images(plan)
        shown = torch.stack(images[:PICTURE_IMAGES])
        picture_rows, labels = [shown], ["original"]
        for adversarial in (False, True):
            for loss in args.losses.split(",") if args.losses else STUDY_LOSSES:
                row = train_and_measure(plan, loss, adversarial, args.runs, names, images, args.progress)
                rows.append(row)
                print(f"{plan.name:14s} {loss:11s} adv={'on ' if adversarial else 'off'} SSIM {row['ssim']:.4f} "
                      f"PSNR {row['psnr']:.2f} bytes {row['bytes']:.1f} [{row['seconds']:.0f} s]", flush=True)
                if not args.no_report:  # the picture is part of the report
                    picture_rows.append(reconstructions(run_path(args.runs, plan.name, loss, adversarial), shown))
                    labels.append(f"{loss}{' +adv' if adversarial else ''}")
        panels.append((f"{plan.name}: originals, then each loss's {BITS}-bit encoder-only decode",
                       labels, torch.stack(picture_rows)))
    if args.no_report:
        return 0
    search_rows = [] if args.no_search else search_study(args.generator, search_losses, search_limit, args.runs)
    # The device each run trained on, as its checkpoint recorded it (the report itself may run elsewhere).
    device = ", ".join(sorted({json.loads((run_path(args.runs, r["dataset"], r["loss"], r["adversarial"])
                                            / "config.json").read_text())["training"]["device"] for r in rows}))
    meta = {"device": device, "torch": torch.__version__, "lpips": lpips_status()[1].split(" from ")[0],
            "command": "python experiments/loss_study.py" + (" --quick" if args.quick else ""),
            "bits": BITS, "adv_weight": ADV_WEIGHT, "datasets": [asdict(p) | {"source": p.name} for p in plans]}
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta, "rows": rows, "search": search_rows}
    atomic_write_bytes(args.out / "loss_study.json", (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(args.out / "loss_study.md", markdown(rows, search_rows, meta).encode())
    picture(panels, args.out / "loss_study.png")
    print(f"wrote {args.out / 'loss_study.json'}, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
