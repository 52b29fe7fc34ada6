"""Package a trained run as a shipped generator: weights + config, sample grid, held-out set, model card.

    python experiments/ship_generator.py runs/emoji64 pretrained/emoji64 \
        --command "ganrev fit-generator --data emoji --width 32 --disc-width 32 --epochs 60 --out runs/emoji64"
    python experiments/ship_generator.py runs/emoji64/best pretrained/emoji64 --state runs/emoji64 ...

Copies generator.safetensors (+ encoder.safetensors) + config.json (fingerprints re-checked on load), draws
a 64-sample grid, exports 64 held-out images (one per base emoji, never seen in training) and writes
MODEL_CARD.md from the figures recorded in config.json and the training history; for a checkpoint with an
encoder, also the measured reconstruction SSIM and bytes per file on seen and unseen emoji and the latent
sigma (see :func:`reconstruction_figures`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from ganrev.codecs.gan import GanCodec
from ganrev.data import (
    carve_validation,
    emoji_vendors,
    export_heldout,
    heldout_vendor,
    is_emoji_source,
    one_per_group,
    open_dataset,
    saved_source,
)
from ganrev.density import draw_latents
from ganrev.evaluate.card import CANDIDATE_BITS, CARD_FILE, describe_generator
from ganrev.invert import default_search
from ganrev.io import atomic_write_text, load_image, save_image
from ganrev.metrics import ssim
from ganrev.models import (
    CONFIG_FILE,
    DENSITY_FILE,
    ENCODER_FILE,
    WEIGHTS_FILE,
    GeneratorCheckpoint,
    load_generator,
)
from ganrev.training.common import STATE_FILE, image_grid

LICENCES = {"fashion-mnist": "Fashion-MNIST (Debian `dataset-fashion-mnist`), MIT"}
VENDOR_LICENCES = {  # emoji vendors: what each set is, where it comes from, its licence and attribution
    "google": "Noto Emoji images from npm `emoji-datasource-google` 16.0.0, Apache-2.0 (see "
              "https://github.com/googlefonts/noto-emoji/blob/main/LICENSE)",
    "twitter": "Twemoji images from npm `emoji-datasource-twitter` 16.0.0, CC-BY-4.0, copyright Twitter, Inc and "
               "other contributors (https://github.com/twitter/twemoji)",
    "openmoji": "OpenMoji images rendered from npm `openmoji` 17.0.0, CC-BY-SA-4.0 (https://openmoji.org)",
    "fluent": "Microsoft Fluent Emoji (flat) rendered from npm `@iconify-json/fluent-emoji-flat` 1.2.6, MIT, "
              "copyright Microsoft Corporation (https://github.com/microsoft/fluentui-emoji)",
    "emojione": "EmojiOne 2 images rendered from npm `@iconify-json/emojione` 1.2.3, CC-BY-4.0, emoji artwork "
                "provided by EmojiOne (https://github.com/EmojiTwo/emojitwo)",
    "noto-v1": "Noto Emoji's earlier style rendered from npm `@iconify-json/noto-v1` 1.2.5, Apache-2.0, copyright "
               "Google Inc (https://github.com/googlefonts/noto-emoji)",
}
PREPARE = {"emoji": "ganrev fetch emoji", "fashion-mnist": "apt-get install dataset-fashion-mnist"}
WEIGHT_TERMS = {  # what a vendor's licence means for weights trained on its images
    "twitter": "The weights are trained on CC-BY-4.0 images: whoever shares them passes on the attribution above.",
    "emojione": "The weights are trained on CC-BY-4.0 images: whoever shares them passes on the attribution above.",
    "openmoji": "The weights are trained on CC-BY-SA-4.0 images: as an adaptation they would have to be shared "
                "under the same licence.",
    "fluent": "The weights are trained on MIT-licensed images: whoever shares them keeps Microsoft's copyright and "
              "permission notice (MIT) with them.",
}
HELDOUT = {  # what heldout/ holds, per data set (export_heldout: one image per split group)
    "emoji": "one per base emoji, none of their variants were trained on",
    "fashion-mnist": "from the official test split, resized to the model's resolution",
}
PREPROCESSING = {"emoji": "; alpha composited on white", "fashion-mnist": "; 28x28 resized to 32x32 (ganrev.io.center_crop_resize)"}


def family(dataset: str) -> str:
    """The key of the tables above: every emoji source is ``emoji``."""
    return "emoji" if is_emoji_source(dataset) else dataset


def data_licence(dataset: str) -> str:
    """What the data is and its licence; for emoji, each vendor trained on."""
    if is_emoji_source(dataset):
        vendors = emoji_vendors(saved_source(dataset), fetched_only=False)
        return "; ".join(VENDOR_LICENCES[vendor] for vendor in vendors)
    return LICENCES.get(dataset, dataset)


def steps_trained(training: dict) -> str:
    """Optimiser steps of the epochs trained, from the images fitted per epoch and the batch size."""
    if "fit_images" not in training:
        return "not recorded"
    batch = training["options"]["batch_size"]
    return f"{training['epochs'] * (training['fit_images'] // batch):,} of {batch} images"  # drop_last


def heldout_source(dataset: str) -> str:
    """Where heldout/ comes from: for emoji, the first vendor trained on (Google's for a Google-trained
    generator), so every emoji generator's table runs on the same images."""
    if not is_emoji_source(dataset):
        return dataset
    return f"emoji:{heldout_vendor(dataset)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training output directory")
    parser.add_argument("out", type=Path, help="pretrained/<name>")
    parser.add_argument("--command", required=True, help="the command that trained the run (for the card)")
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--bits", type=int, default=None, help="compress's default bits per latent coordinate for "
                        "this generator, recorded in its config.json [chosen on validation images, as every "
                        "fit-generator run's end chooses them: ganrev.evaluate.card]")
    parser.add_argument("--note", default="", help="a paragraph for the card (why training stopped, caveats)")
    parser.add_argument("--state", type=Path, default=None, help="run directory holding train_state.pt "
                        "(default: RUN; give it when RUN is RUN/best)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for name in (ENCODER_FILE, DENSITY_FILE):
        (args.out / name).unlink(missing_ok=True)
    names = (WEIGHTS_FILE, CONFIG_FILE) + tuple(name for name in (ENCODER_FILE, DENSITY_FILE)
                                                if (args.run / name).is_file())
    for name in names:
        shutil.copyfile(args.run / name, args.out / name)
    # What every run ends with (ganrev.evaluate.card): the default bits chosen on validation images unless --bits
    # names them, and the figures beside the best classical file within the same bytes, the card's first part.
    describe_generator(args.out, command=args.command,
                       bits_tried=(args.bits,) if args.bits is not None else CANDIDATE_BITS)
    measured_card = (args.out / CARD_FILE).read_text()
    checkpoint = load_generator(args.out)
    meta, cfg = checkpoint.metadata, checkpoint.config
    bits = checkpoint.compress_bits
    z = draw_latents(64, cfg.latent_dim, 0, checkpoint.density)  # what `ganrev generate` draws by default
    with torch.no_grad():
        save_image(image_grid(checkpoint.generator.images(z)), args.out / "samples.png")
    for old in (args.out / "heldout").glob("*.png"):
        old.unlink()
    heldout = export_heldout(heldout_source(meta["dataset"]), args.out / "heldout", args.heldout,
                             resolution=cfg.resolution, channels=cfg.channels)
    training, split = meta["training"], meta["split"]
    history = torch.load((args.state or args.run) / STATE_FILE, map_location="cpu", weights_only=True)["history"]
    history = history[:training["epochs"]]  # a best/ checkpoint is older than the run's last epoch
    drawn_from = "from the fitted density of E(x), see Sampling" if checkpoint.density else "z ~ N(0, I)"
    card = f"""# {args.out.name}: DCGAN generator, {meta['dataset']}, {cfg.resolution}x{cfg.resolution}, \
{'RGB' if cfg.channels == 3 else 'gray'}

| | |
|---|---|
| architecture | DCGAN (pytorch/examples style), latent {cfg.latent_dim}, width {cfg.width}, \
{sum(p.numel() for p in checkpoint.generator.parameters()):,} parameters |
| fingerprint (SHA-256 of weights) | `{checkpoint.fingerprint}` |
| data | `{meta['dataset']}`: {data_licence(meta['dataset'])}{PREPROCESSING.get(family(meta['dataset']), '')} |
| split | {split['rule']}: {split['train_images']} training images, {split['test_images']} held out |
| objective | {training.get('objective', 'gan')} |
| epochs trained | {training['epochs']} (of {training['options']['epochs']} planned; see below) |
| wall time | {training['wall_s'] / 60:.1f} min |
| device | {training['device']}, {training.get('precision', 'fp32')}, torch {training['torch']} |
| steps | {steps_trained(training)} |
| compress's default | {bits} bits per latent coordinate (`compress_bits` in config.json) |

Reproduce (same seed; CPU/GPU kernels differ, so weights and fingerprint will not match bit for bit):

```bash
{PREPARE.get(family(meta['dataset']), '# prepare the data')}
{args.command}
python experiments/ship_generator.py {args.run} {args.out} --bits {bits} --command "..."
```

`samples.png`: 64 samples from fixed noise (seed 0), as `ganrev generate` draws them ({drawn_from}).
`heldout/`: {len(heldout)} held-out images ({HELDOUT.get(family(meta['dataset']), 'never trained on')}), same licence as the data; used by `ganrev table` and the tests.
"""
    card += "\n## " + measured_card.split("\n## ", 1)[1]  # its sections after the table: figures and bits
    if checkpoint.encoder is not None:
        card += reconstruction_card(checkpoint, args.out / "heldout", len(heldout), bits)
        if is_emoji_source(meta["dataset"]):
            card += vendor_card(checkpoint, len(heldout), bits)
    if is_emoji_source(meta["dataset"]):
        card += "".join(f"\n{WEIGHT_TERMS[vendor]}\n" for vendor in trained_vendors(meta) if vendor in WEIGHT_TERMS)
    if checkpoint.density is not None:
        card += density_card(meta["density"])
    if args.note:
        card += "\n" + args.note + "\n"
    keys = [key for key in history[-1] if key != "epoch"]
    card += ("\n## Training curve\n\n| epoch | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1) + "\n")
    card += "".join("| " + " | ".join([str(h["epoch"])] + [f"{h[k]:.4f}" if k in h else "" for k in keys]) + " |\n"
                    for h in history)
    atomic_write_text(args.out / "MODEL_CARD.md", card)
    print(f"shipped {args.out} ({checkpoint.fingerprint[:12]}...), {len(heldout)} held-out images")


def vendor_images(vendor: str, which: str, count: int) -> torch.Tensor:
    """``count`` images of one vendor from one set, one per base emoji."""
    source = f"emoji:{vendor}"
    if which == "test":
        dataset = open_dataset(source, "test")
    else:
        fit, validation = carve_validation(open_dataset(source, "train"), source)
        dataset = fit if which == "seen" else validation
    assert dataset is not None
    return torch.stack([dataset[i] for i in one_per_group(dataset, source, count)])


def trained_vendors(metadata: dict) -> list[str]:
    """The vendors a checkpoint was trained on (``emoji`` in old checkpoints meant Google alone)."""
    return emoji_vendors(saved_source(metadata["dataset"]), fetched_only=False)


def reconstruction_figures(checkpoint: GeneratorCheckpoint, images: torch.Tensor, bits: int) -> dict[str, float]:
    """Encoder-only SSIM, default-compress SSIM (``bits`` per latent coordinate) and bytes per file, and the
    spread of E(x)."""
    assert checkpoint.encoder is not None
    with torch.no_grad():
        codes = checkpoint.encoder(images)
        alone = ssim(checkpoint.generator.images(codes).clamp(0, 1), images)
    codec = GanCodec(checkpoint, bits=bits, search=default_search(True))
    results = codec.compress(list(images))
    return {"encoder_ssim": float(alone.mean()), "ssim": float(sum(r.ssim_refined for r in results) / len(results)),
            "bytes": sum(len(r.data) for r in results) / len(results),
            "latent_mean": float(codes.mean()), "latent_std": float(codes.std())}


def reconstruction_card(checkpoint: GeneratorCheckpoint, heldout: Path, count: int, bits: int) -> str:
    """The card's section on how well the generator + encoder reproduce seen and unseen images."""
    cfg = checkpoint.config
    unseen = torch.stack([load_image(p) for p in sorted(heldout.glob("*.png"))])
    train = open_dataset(checkpoint.metadata["dataset"], "train", resolution=cfg.resolution, channels=cfg.channels)
    fit, _ = carve_validation(train, checkpoint.metadata["dataset"])
    step = max(1, len(fit) // count)
    seen = torch.stack([fit[i] for i in range(0, step * count, step)][:count])
    rows = {"seen (training images)": reconstruction_figures(checkpoint, seen, bits),
            "unseen (heldout/)": reconstruction_figures(checkpoint, unseen, bits)}
    search = default_search(True)
    text = ("\n## Reconstruction\n\nMeasured by this script at shipping time ({} images each, {} bits per latent "
            "coordinate, the CLI's default search: encoder start, <= {} iterations at lr {}):\n\n"
            "| images | SSIM, encoder alone | SSIM, default compress | bytes per file | E(x) mean | E(x) std |\n"
            "|---|---:|---:|---:|---:|---:|\n").format(count, bits, search.iters, search.lr)
    for name, f in rows.items():
        text += (f"| {name} | {f['encoder_ssim']:.4f} | {f['ssim']:.4f} | {f['bytes']:.1f} | {f['latent_mean']:+.3f} "
                 f"| {f['latent_std']:.3f} |\n")
    text += ("\nThe range coder models each latent coordinate as N(0, sigma) with sigma chosen per file; E(x)'s "
             "spread above is what the moment-matching penalty holds near the N(0, 1) prior.\n")
    return text


def vendor_card(checkpoint: GeneratorCheckpoint, count: int, bits: int) -> str:
    """The card's section on every fetched emoji vendor: seen (groups trained on) and unseen (test groups)
    images, one per base emoji; a vendor the generator never saw is an unseen style on both."""
    trained = trained_vendors(checkpoint.metadata)
    text = ("\n## Per vendor\n\nThe same measurement per emoji vendor ({} images per set, one per base emoji, the "
            "same emoji for every vendor; seen: groups trained on, unseen: test groups):\n\n"
            "| vendor | set | SSIM, encoder alone | SSIM, default compress | bytes per file | bpp |\n"
            "|---|---|---:|---:|---:|---:|\n").format(count)
    for vendor in emoji_vendors("emoji"):
        style = "" if vendor in trained else " (style never trained on)"
        for which, split in (("seen", "seen"), ("unseen", "test")):
            f = reconstruction_figures(checkpoint, vendor_images(vendor, split, count), bits)
            pixels = checkpoint.config.resolution ** 2
            text += (f"| {vendor}{style} | {which} | {f['encoder_ssim']:.4f} | {f['ssim']:.4f} | {f['bytes']:.1f} | "
                     f"{f['bytes'] * 8 / pixels:.3f} |\n")
    return text


def density_card(record: dict) -> str:
    """The card's section on the density of E(x) that `ganrev generate` samples from."""
    return (f"\n## Sampling\n\n`ganrev generate` draws latents from a {record['components']}-component Gaussian "
            f"mixture (shrinkage {record['shrinkage']}) fitted to the encoder's codes of {record['fit_codes']} "
            f"training images, chosen by the likelihood of {record['validation_codes']} validation codes: "
            f"{record['validation_log_likelihood']:.1f} per code vs {record['normal_log_likelihood']:.1f} under "
            "N(0, I) (`ganrev generate --prior normal` draws from N(0, I); see README, Sampling).\n")


if __name__ == "__main__":
    main()
