"""Files of the latent's leading coordinates: what each count k and precision gives, and which counts rate control
should try (config.json's ``leading_latents``).

    python experiments/leading_study.py runs/gen-nd pretrained/emoji64 [--count 32] [--set validation]
        [--leading 32,48,64,80,96,128] [--bits 2,3,4] [--out DIR] [--write-config]

For every checkpoint and every fetched emoji vendor, ``--count`` images of ``--set`` (``validation``: groups carved
from the training side, what chooses settings; ``test`` for published figures only), one per base emoji. For each
leading count k (and the whole latent) one default search (:class:`ganrev.invert.SearchOptions` ``leading=k``),
then each ``--bits``: the file's bytes and the SSIM of what it decodes to (:meth:`GanCodec.compress_latents`).
Then, per image and byte budget (0.06-0.17 bpp of a 64x64 image), the best latent file within the budget: from the
whole latent alone, from every count, and from the few counts :func:`ganrev.evaluate.card.choose_leading` picks on
these images (what a run trained with nested dropout records as ``leading_latents``). Latent files only (no layers, no
fallback): what the generator alone gives. ``--write-config`` (validation set only) records each checkpoint's pick
as its config.json's ``leading_latents``, for a generator trained without nested dropout whose run could not.
Writes OUT/leading.{json,md} [experiments/results/leading-study].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from ganrev.data import emoji_vendors  # noqa: E402
from ganrev.evaluate.card import (  # noqa: E402
    LEADING_BITS,
    LEADING_BUDGETS_BPP,
    LEADING_CANDIDATES,
    LEADING_CHOSEN,
    best_within,
    choose_leading,
    measure_leading,
)
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.models import load_generator, update_config  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ship_generator import vendor_images  # noqa: E402
from vendor_figures import shown  # noqa: E402

BUDGET_BPP = (*LEADING_BUDGETS_BPP, 0.17)  # the low rates leading counts serve, and the default rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--set", default="validation", choices=("seen", "validation", "test"))
    parser.add_argument("--leading", default=",".join(map(str, LEADING_CANDIDATES)))
    parser.add_argument("--bits", default=",".join(map(str, LEADING_BITS)))
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "leading-study")
    parser.add_argument("--write-config", action="store_true", help="record each checkpoint's chosen counts as its "
                        "config.json's leading_latents (validation set only)")
    args = parser.parse_args(argv)
    if args.write_config and args.set != "validation":
        parser.error("--write-config chooses on the validation set only")
    counts = [int(k) for k in args.leading.split(",")]
    bits = [int(b) for b in args.bits.split(",")]
    vendors = emoji_vendors("emoji")
    images = {v: vendor_images(v, args.set, args.count) for v in vendors}
    report: dict = {"set": args.set, "count": args.count, "leading": counts, "bits": bits,
                    "budget_bpp": list(BUDGET_BPP), "device": f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)",
                    "runs": []}
    md = [f"Latent files only (no layer, no fallback), {args.count} {args.set} images per vendor, default search; "
          f"{report['device']}.", ""]
    for run in args.runs:
        checkpoint = load_generator(run)
        latent_dim = checkpoint.config.latent_dim
        run_counts = [k for k in counts if k < latent_dim]
        pooled: dict = {}
        per_vendor = {}
        for vendor in vendors:
            files = measure_leading(checkpoint, images[vendor], (None, *run_counts), tuple(bits))
            for key, rows in files.items():
                pooled.setdefault(key, []).extend(rows)
            per_vendor[vendor] = {f"{k or latent_dim}x{b}": {"bytes": sum(r[0] for r in rows) / len(rows),
                                                            "ssim": sum(r[1] for r in rows) / len(rows)}
                                  for (k, b), rows in files.items()}
            print(f"{shown(run)} {vendor}: " + ", ".join(f"{key} {v['ssim']:.3f}@{v['bytes']:.0f}B"
                                                          for key, v in per_vendor[vendor].items()), flush=True)
        n = len(next(iter(pooled.values())))
        chosen = choose_leading(pooled, tuple(int(bpp * 4096 / 8) for bpp in LEADING_BUDGETS_BPP))
        whole = [(None, b) for b in bits]
        every = [(k, b) for k in [None, *run_counts] for b in bits]
        picked = [(k, b) for k in [None, *chosen] for b in bits]
        budgets = {}
        for bpp in BUDGET_BPP:
            budget = int(bpp * 4096 / 8)
            budgets[str(bpp)] = {"bytes": budget, "whole": best_within(pooled, whole, budget),
                                 "every": best_within(pooled, every, budget),
                                 "chosen": best_within(pooled, picked, budget)}
        if args.write_config:
            update_config(run, {"leading_latents": list(chosen)})
        report["runs"].append({"run": shown(run), "fingerprint": checkpoint.fingerprint, "latent_dim": latent_dim,
                               "per_vendor": per_vendor, "chosen_leading": chosen, "budgets": budgets})
        md += [f"### `{shown(run)}` (latent {latent_dim})", "",
               "Mean SSIM @ bytes, all vendors pooled, by leading coordinates k (rows) and bits (columns):", "",
               "| k | " + " | ".join(f"{b} bits" for b in bits) + " |", "|---:|" + "---:|" * len(bits)]
        for k in [*run_counts, None]:
            cells = []
            for b in bits:
                rows = pooled[k, b]
                cells.append(f"{sum(r[1] for r in rows) / n:.3f} @ {sum(r[0] for r in rows) / n:.1f}")
            md.append(f"| {k or f'{latent_dim} (all)'} | " + " | ".join(cells) + " |")
        md += ["", f"Best latent file within each budget (mean SSIM; 0 where none fits); greedy pick of "
               f"{LEADING_CHOSEN} counts on the budgets below 0.17 bpp (what ganrev.evaluate.card chooses): {chosen}", "", "| budget | whole latent | every k | picked k |",
               "|---|---:|---:|---:|"]
        for bpp, row in budgets.items():
            md.append(f"| {bpp} bpp ({row['bytes']} B) | {row['whole']:.4f} | {row['every']:.4f} | "
                      f"{row['chosen']:.4f} |")
        md.append("")
    md.append(f"Made by `python experiments/leading_study.py {' '.join(shown(r) for r in args.runs)} --count "
              f"{args.count} --set {args.set} --leading {args.leading} --bits {args.bits}"
              + f" --out {shown(args.out)}" + (" --write-config" if args.write_config else "") + "`.")
    atomic_write_text(args.out / "leading.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / "leading.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
