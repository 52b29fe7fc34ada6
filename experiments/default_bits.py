"""Which --bits `ganrev compress` uses by default: SSIM and bytes of the default search at each precision.

    python experiments/default_bits.py [-g pretrained/emoji64] [--count 64] [--bits 4,5,6,7,8]

On ``--count`` validation emoji of each vendor the generator was trained on (groups carved from the training
side, one per base emoji: never the test split), the CLI's default search, quantized at each number of bits per
latent coordinate; SSIM of the decoded file and bytes per file. Writes OUT/default_bits.{json,md} (``--out``
[experiments/results/default_bits-NAME], NAME the generator's folder).
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

from ganrev.codecs.gan import GanCodec  # noqa: E402
from ganrev.invert import default_search  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ship_generator import trained_vendors, vendor_images  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--bits", default="4,5,6,7,8")
    parser.add_argument("--out", type=Path, default=None, help="[experiments/results/default_bits-NAME]")
    args = parser.parse_args(argv)
    args.out = args.out or ROOT / "experiments" / "results" / f"default_bits-{args.generator.resolve().name}"
    checkpoint = load_generator(args.generator)
    vendors = trained_vendors(checkpoint.metadata)
    images = torch.cat([vendor_images(vendor, "validation", args.count) for vendor in vendors])
    search = default_search(checkpoint.encoder is not None)
    rows = []
    for bits in (int(b) for b in args.bits.split(",")):
        results = GanCodec(checkpoint, bits=bits, search=search).compress(list(images))
        size = sum(len(r.data) for r in results) / len(results)
        rows.append({"bits": bits, "ssim": sum(r.ssim_refined for r in results) / len(results), "bytes": size,
                     "bpp": size * 8 / (images.shape[2] * images.shape[3])})
        print(rows[-1], flush=True)
    device = f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"
    name = args.generator.name
    atomic_write_text(args.out / "default_bits.json", json.dumps(
        {"generator": name, "fingerprint": checkpoint.fingerprint, "vendors": vendors, "images": len(images),
         "set": "validation", "device": device, "rows": rows}, indent=2) + "\n")
    lines = ["| bits | SSIM | bytes | bpp |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['bits']} | {r['ssim']:.4f} | {r['bytes']:.1f} | {r['bpp']:.3f} |" for r in rows]
    shown = args.generator.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else Path(shown.name)
    out = args.out.resolve()
    command = (f"python experiments/default_bits.py -g {shown} --count {args.count} --bits {args.bits}"
               + (f" --out {out.relative_to(ROOT)}" if out.is_relative_to(ROOT) else ""))
    lines.append(f"\n`{name}`, {len(images)} validation emoji ({', '.join(vendors)}), the default search; {device}; "
                 f"made by `{command}`.")
    atomic_write_text(args.out / "default_bits.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
