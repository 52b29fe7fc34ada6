"""Seen and unseen quality per emoji vendor: the CLI's default compression of each checkpoint, vendor by vendor.

    python experiments/vendor_figures.py pretrained/emoji64 runs/mv32/best [--count 64] [--sets seen,validation]
    python experiments/vendor_figures.py ... --sets test        # published figures only

For every checkpoint and every fetched vendor (``ganrev fetch emoji``), ``--count`` images, one per base emoji
(:func:`ganrev.data.one_per_group`: the same emoji for every vendor), from each set: ``seen`` (groups trained
on), ``validation`` (groups carved from the training side, never trained on: what chooses checkpoints and
hyper-parameters) and ``test`` (held-out groups). A vendor the checkpoint was not trained on is an unseen
*style* on every set. Figures: SSIM of G(E(x)) (encoder alone), SSIM and bytes of the default compression
(encoder start + search, at ``--bits`` [the checkpoint's own]), bpp at 64x64. Writes experiments/results/vendors/summary.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from ganrev.data import emoji_vendors  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ship_generator import reconstruction_figures, trained_vendors, vendor_images  # noqa: E402

SETS = ("seen", "validation", "test")
DEFAULT_OUT = ROOT / "experiments" / "results" / "vendors"


def shown(path: Path) -> str:
    """A path as the experiments' footers print it: relative to the repository, never a machine path (outside
    it, the name alone)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--sets", default="seen,validation", help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--bits", type=int, default=None, help="bits per latent coordinate [each checkpoint's own, "
                        "what compress uses; a larger latent needs fewer to keep the bytes]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sets = [s for s in args.sets.split(",") if s]
    if not sets or set(sets) - set(SETS):
        parser.error(f"--sets: comma-separated names of {', '.join(SETS)}")
    vendors = emoji_vendors("emoji")
    images = {(v, s): vendor_images(v, s, args.count) for v in vendors for s in sets}
    rows = []
    for run in args.runs:
        checkpoint = load_generator(run)
        training = checkpoint.metadata["training"]
        trained_on = trained_vendors(checkpoint.metadata)
        for (vendor, which), batch in images.items():
            started = time.perf_counter()
            bits = checkpoint.compress_bits if args.bits is None else args.bits
            figures = reconstruction_figures(checkpoint, batch, bits)
            rows.append({"run": shown(run),
                         "fingerprint": checkpoint.fingerprint, "trained_on": trained_on,
                         "epochs": training["epochs"], "train_wall_s": training.get("wall_s"),
                         "latent_dim": checkpoint.config.latent_dim, "bits": bits,
                         "vendor": vendor, "set": which, "style": "trained" if vendor in trained_on else "unseen style",
                         "images": len(batch), "bpp": figures["bytes"] * 8 / (64 * 64),
                         "seconds_per_image": (time.perf_counter() - started) / len(batch), **figures})
            print({k: rows[-1][k] for k in ("run", "vendor", "set", "encoder_ssim", "ssim", "bytes")}, flush=True)
    device = f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"
    atomic_write_text(args.out / "summary.json", json.dumps({"device": device, "machine": platform.machine(),
                                                             "sets": sets, "rows": rows}, indent=2) + "\n")
    lines = ["| checkpoint | trained on | epochs | latent | bits | vendor | set | SSIM, encoder alone | "
             "SSIM, default compress | bytes | bpp |", "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {'+'.join(r['trained_on'])} | {r['epochs']} | {r['latent_dim']} | {r['bits']} | "
                     f"{r['vendor']} ({r['style']}) | "
                     f"{r['set']} | {r['encoder_ssim']:.4f} | {r['ssim']:.4f} | {r['bytes']:.1f} | {r['bpp']:.3f} |")
    lines.append(f"\n{args.count} images per vendor and set, one per base emoji; {device}; made by "
                 f"`python experiments/vendor_figures.py {' '.join(shown(r) for r in args.runs)} --count {args.count} "
                 f"--sets {','.join(sets)}" + ("" if args.bits is None else f" --bits {args.bits}")
                 + ("" if args.out == DEFAULT_OUT else f" --out {shown(args.out)}") + "`.")
    atomic_write_text(args.out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
