"""The lowest rates: `ganrev compress --target-bpp B` on held-out emoji, every file beside the best classical file
within its bytes.

    python experiments/low_rate.py [-g pretrained/emoji64] [--images DIR | --validation VENDOR] [--bpp 0.1]
                                   [--count 64] [--out DIR] [--leading K,K,...] [--no-track-rounding]
                                   [--patience N] [--refine-iters N]

Images: the generator's heldout/ (for emoji64, Google's renderings of test groups: never trained on, in any
style), or ``--images`` (e.g. a training run measured on the shipped generator's held-out emoji), or
``--validation VENDOR``: that emoji vendor's validation groups, carved from the training side, where engine settings
are chosen. Per image the rate-controlled file (:func:`ganrev.bitstream.ratecontrol.compress_to_target`, the CLI's
defaults),
its mode, bytes and SSIM of its decode, and the best classical file of at most as many bytes
(:func:`ganrev.reference.best_file_within`). Writes OUT/low_rate.{json,md} [experiments/results/low_rate-NAME].
The last four options change the engine's settings from the CLI's defaults, to weigh others on validation groups.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from encoder_refit import vendor_split  # noqa: E402
from ganrev.codecs.gan import GanCodec  # noqa: E402
from ganrev.invert import default_search  # noqa: E402
from ganrev.io import atomic_write_text, load_image  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.bitstream.ratecontrol import (  # noqa: E402
    DEFAULT_BITS,
    RateTarget,
    budget_bytes,
    compress_to_target,
    leading_counts,
)
from ganrev.reference import best_file_within  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from vendor_figures import shown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", type=Path, default=None, help="folder of images [the generator's heldout/]")
    source.add_argument("--validation", default=None, metavar="VENDOR", help="an emoji vendor's validation groups")
    parser.add_argument("--bpp", type=float, default=0.1)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--leading", default=None,
                        help="comma-separated leading-coordinate counts to try [the generator's leading_latents]")
    parser.add_argument("--no-track-rounding", action="store_true",
                        help="round the search's best point, as rate control did before it tracked the rounding")
    parser.add_argument("--patience", type=int, default=None, help="the search's patience [compress's default]")
    parser.add_argument("--refine-iters", type=int, default=None,
                        help="quantizer-in-the-loop refinement steps [compress's default]")
    args = parser.parse_args(argv)
    name = args.generator.resolve().name
    out = args.out or ROOT / "experiments" / "results" / f"low_rate-{name}"
    checkpoint = load_generator(args.generator)
    if args.validation:
        images = [image.float() / 255 for image in vendor_split(args.validation)[1][:args.count]]
        names, shown_images = [f"validation-{k}" for k in range(len(images))], f"{args.validation} validation groups"
    else:
        folder = args.images or args.generator / "heldout"
        paths = sorted(folder.glob("*.png"))[:args.count]
        images, names, shown_images = [load_image(p) for p in paths], [p.name for p in paths], f"`{shown(folder)}`"
    target = RateTarget(bpp=args.bpp, leading=None if args.leading is None
                        else tuple(int(k) for k in args.leading.split(",") if k),
                        track_rounding=not args.no_track_rounding)
    codec = GanCodec(checkpoint, bits=checkpoint.compress_bits,
                     search=default_search(checkpoint.encoder is not None, patience=args.patience),
                     refine_iters=args.refine_iters)
    began = time.perf_counter()
    files = compress_to_target(codec, images, target)
    seconds = time.perf_counter() - began
    rows = []
    for image_name, image, rated in zip(names, images, files):
        classical = best_file_within(image, len(rated.data))
        rows.append({"image": image_name, "mode": rated.mode, "bits": rated.bits, "leading": rated.leading,
                     "bytes": len(rated.data),
                     "bpp": len(rated.data) * 8 / (image.shape[1] * image.shape[2]), "ssim": rated.ssim,
                     "classical": None if classical is None else {"family": classical.family,
                                                                  "quality": classical.quality,
                                                                  "bytes": classical.bytes, "ssim": classical.ssim}})
    n = len(rows)
    budget = budget_bytes(target, images[0].shape[2], images[0].shape[1])
    summary = {"generator": name, "fingerprint": checkpoint.fingerprint, "bpp_target": args.bpp, "images": n,
               "budget_bytes": budget, "bits_tried": list(DEFAULT_BITS), "leading_tried": list(leading_counts(codec, target)),
               "leading_files": sum(r["leading"] is not None for r in rows),
               "within_budget": sum(r["bytes"] <= budget for r in rows),
               "modes": {m: sum(r["mode"] == m for r in rows) for m in sorted({r["mode"] for r in rows})},
               "ssim": sum(r["ssim"] for r in rows) / n, "bytes": sum(r["bytes"] for r in rows) / n,
               "bpp": sum(r["bpp"] for r in rows) / n,
               "classical_ssim": sum(r["classical"]["ssim"] if r["classical"] else 0.0 for r in rows) / n,
               "images_without_classical_file": sum(r["classical"] is None for r in rows),
               "seconds_per_image": seconds / n, "device": f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"}
    summary["gan_minus_classical"] = summary["ssim"] - summary["classical_ssim"]
    atomic_write_text(out / "low_rate.json", json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    md = ["| generator | target | images | within budget | modes | SSIM | bytes | bpp | best classical, same bytes "
          "| GAN − classical |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
          f"| `{name}` | {args.bpp} bpp ({budget} B) | {n} | {summary['within_budget']} | "
          + ", ".join(f"{m} {k}" for m, k in summary["modes"].items())
          + f" | {summary['ssim']:.4f} | {summary['bytes']:.1f} | {summary['bpp']:.3f} | "
          f"{summary['classical_ssim']:.4f} | {summary['gan_minus_classical']:+.4f} |",
          "", f"Leading coordinates tried (`leading_latents`): {summary['leading_tried'] or 'none'}; files of leading "
          f"coordinates chosen: {summary['leading_files']}.",
          "", f"Images: {shown_images}; {summary['device']}, {summary['seconds_per_image']:.2f} s per image to "
          "rate-control; an image with no classical file that "
          f"small counts as SSIM 0 ({summary['images_without_classical_file']} here). Made by "
          f"`python experiments/low_rate.py -g {shown(args.generator)}"
          + (f" --images {shown(folder)}" if args.images else "")
          + (f" --validation {args.validation}" if args.validation else "")
          + (f" --leading {args.leading}" if args.leading is not None else "")
          + (" --no-track-rounding" if args.no_track_rounding else "")
          + (f" --patience {args.patience}" if args.patience is not None else "")
          + (f" --refine-iters {args.refine_iters}" if args.refine_iters is not None else "")
          + f" --bpp {args.bpp} --count {args.count}"
          + (f" --out {shown(out)}" if args.out else "") + "`."]
    atomic_write_text(out / "low_rate.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
