"""Package a trained run as a shipped generator: weights + config, sample grid, held-out set, model card.

    python experiments/ship_generator.py runs/emoji64 pretrained/emoji64 \
        --command "ganrev fit-generator --data emoji --width 48 --disc-width 48 --epochs 60 --out runs/emoji64"

Copies generator.safetensors + config.json (the fingerprint is re-checked on load), draws a 64-sample grid,
exports 64 held-out images (one per base emoji, never seen in training) and writes MODEL_CARD.md from the
figures recorded in config.json.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from ganrev.data import export_heldout
from ganrev.io import atomic_write_text, save_image
from ganrev.models import CONFIG_FILE, WEIGHTS_FILE, load_generator
from ganrev.train import STATE_FILE, image_grid

LICENCES = {
    "emoji": "Noto Emoji images from npm `emoji-datasource-google` 16.0.0, Apache-2.0 (see "
             "https://github.com/googlefonts/noto-emoji/blob/main/LICENSE)",
    "fashion-mnist": "Fashion-MNIST (Debian `dataset-fashion-mnist`), MIT",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training output directory")
    parser.add_argument("out", type=Path, help="pretrained/<name>")
    parser.add_argument("--command", required=True, help="the command that trained the run (for the card)")
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--note", default="", help="a paragraph for the card (why training stopped, caveats)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        shutil.copyfile(args.run / name, args.out / name)
    checkpoint = load_generator(args.out)
    meta, cfg = checkpoint.metadata, checkpoint.config
    z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        save_image(image_grid(checkpoint.generator.images(z)), args.out / "samples.png")
    for old in (args.out / "heldout").glob("*.png"):
        old.unlink()
    heldout = export_heldout(meta["dataset"], args.out / "heldout", args.heldout, resolution=cfg.resolution,
                             channels=cfg.channels)
    training, split = meta["training"], meta["split"]
    history = torch.load(args.run / STATE_FILE, map_location="cpu", weights_only=True)["history"]
    card = f"""# {args.out.name}: DCGAN generator, {meta['dataset']}, {cfg.resolution}x{cfg.resolution}, \
{'RGB' if cfg.channels == 3 else 'gray'}

| | |
|---|---|
| architecture | DCGAN (pytorch/examples style), latent {cfg.latent_dim}, width {cfg.width}, \
{sum(p.numel() for p in checkpoint.generator.parameters()):,} parameters |
| fingerprint (SHA-256 of weights) | `{checkpoint.fingerprint}` |
| data | {LICENCES.get(meta['dataset'], meta['dataset'])}; alpha composited on white |
| split | {split['rule']}: {split['train_images']} training images, {split['test_images']} held out |
| epochs trained | {training['epochs']} (of {training['options']['epochs']} planned; see below) |
| wall time | {training['wall_s'] / 60:.1f} min |
| device | {training['device']}, torch {training['torch']} |
| last epoch | loss_D {training['last_epoch']['loss_d']:.3f}, loss_G {training['last_epoch']['loss_g']:.3f}, \
D(x) {training['last_epoch']['d_real']:.3f}, D(G(z)) {training['last_epoch']['d_fake']:.3f} |

Reproduce (same seed; CPU/GPU kernels differ, so weights and fingerprint will not match bit for bit):

```bash
ganrev fetch emoji
{args.command}
python experiments/ship_generator.py {args.run} {args.out} --command "..."
```

`samples.png`: 64 samples from fixed noise (seed 0). `heldout/`: {len(heldout)} held-out images (one per base
emoji, none of their variants were trained on), same licence as the data; used by `ganrev table` and the tests.
"""
    if args.note:
        card += "\n" + args.note + "\n"
    card += "\n## Training curve\n\n| epoch | loss_D | loss_G | D(x) | D(G(z)) |\n|---|---|---|---|---|\n"
    card += "".join(f"| {h['epoch']} | {h['loss_d']:.3f} | {h['loss_g']:.3f} | {h['d_real']:.3f} | {h['d_fake']:.3f} |\n"
                    for h in history)
    atomic_write_text(args.out / "MODEL_CARD.md", card)
    print(f"shipped {args.out} ({checkpoint.fingerprint[:12]}...), {len(heldout)} held-out images")


if __name__ == "__main__":
    main()
