"""The adversarial term, off and on: validation reconstruction and prior samples of aegan checkpoints.

    python experiments/adversarial_weight.py runs/emoji64-noadv runs/emoji64-aegan0.2 runs/emoji64-aeganD

For each checkpoint (a `fit-generator --objective aegan` output directory): the encoder-only SSIM and the
SSIM and bytes of the CLI's default compression (encoder start, 6 bits) on 64 validation images (groups
carved from the training side: this is what chooses the weight, not the test split), E(x)'s spread, the
training schedule read from its config, and a grid of 64 samples G(z), z ~ N(0, I) (seed 0), written to
experiments/results/adversarial/<name>.png. Results: experiments/results/adversarial/summary.{json,md}.
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

from ganrev.data import carve_validation, open_dataset  # noqa: E402
from ganrev.io import save_image  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import image_grid  # noqa: E402
from ship_generator import reconstruction_figures  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "adversarial")
    args = parser.parse_args(argv)

    train = open_dataset("emoji:google", "train", resolution=64, channels=3)
    _, validation = carve_validation(train, "emoji")
    assert validation is not None
    step = max(1, len(validation) // args.count)
    images = torch.stack([validation[i] for i in range(0, step * args.count, step)][:args.count])
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in args.runs:
        checkpoint = load_generator(run)
        training = checkpoint.metadata["training"]
        options = training["options"]
        adversarial_epochs = max(0, training["epochs"] - options["adv_warmup"]) if options["adv_weight"] > 0 else 0
        z = torch.randn(64, checkpoint.config.latent_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            save_image(image_grid(checkpoint.generator.images(z)), args.out / f"{run.name}.png")
        figures = reconstruction_figures(checkpoint, images)
        rows.append({"run": run.name, "epochs": training["epochs"], "adv_weight": options["adv_weight"],
                     "adversarial_epochs": adversarial_epochs, "disc_lr": options.get("disc_lr") or 2e-4,
                     "fingerprint": checkpoint.fingerprint, **figures})
        print(rows[-1], flush=True)
    (args.out / "summary.json").write_text(json.dumps({"images": len(images), "set": "validation", "rows": rows},
                                                      indent=2) + "\n")
    lines = ["| run | epochs | adversarial epochs | adv weight | D lr | val SSIM, encoder alone | "
             "val SSIM, default compress | bytes | E(x) std | samples |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['epochs']} | {r['adversarial_epochs']} | {r['adv_weight']} | {r['disc_lr']:g} | "
                     f"{r['encoder_ssim']:.4f} | {r['ssim']:.4f} | {r['bytes']:.1f} | {r['latent_std']:.3f} | "
                     f"[grid]({r['run']}.png) |")
    lines.append(f"\n{len(images)} validation emoji; 6 bits; made by `python experiments/adversarial_weight.py`.")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
