"""Do `ganrev generate`'s samples look like emoji? Generators x latent sources, measured against real emoji.

    python experiments/generate_density.py     # ~5 min on 2 CPU cores; needs `ganrev fetch emoji`

Rows (1,000 samples each, drawn as `ganrev generate --seed 0 -n 1000` draws them):
- `emoji64-gan`, z ~ N(0, I): the seed's purely adversarial generator;
- `emoji64`, z ~ N(0, I) (`generate --prior normal`): the reconstruction-trained generator from its prior;
- `emoji64`, one full-covariance Gaussian fitted to E(x) (the mixture's smallest candidate: how much the
  covariance alone buys);
- `emoji64`, the checkpoint's fitted density (`generate`'s default; `ganrev fit-density`);
- real held-out emoji (the test groups, 441 images) in place of samples: the floor for both columns.

Columns, all against the training images the generators were fitted on (the training side minus the
validation groups):
- KID x 1000 (Binkowski et al. 2018, unbiased MMD^2 with the cubic polynomial kernel) on AlexNet features
  instead of Inception's (no Inception weights offline): the LPIPS network's trunk (pretrained/lpips), each
  of its five layers averaged over space and scaled to unit length, concatenated. Lower is closer to the
  distribution of real emoji.
- nearest-image SSIM: per sample, the highest SSIM to any training image (candidates: the 20 nearest by
  16x16 thumbnail distance), averaged. Far above the held-out row's figure means copies of training images;
  far below means nothing like any real emoji.

Writes experiments/results/generate_density.{json,md} and generate_density.png (the first 64 samples of each
generated row, left to right in the table's order).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ganrev.data import carve_validation, open_dataset  # noqa: E402
from ganrev.density import draw_latents, encode_images, fit_gaussian_mixture  # noqa: E402
from ganrev.io import save_image  # noqa: E402
from ganrev.metrics import _load_lpips, _resolve_weights_path, ssim  # noqa: E402  (the LPIPS trunk's features)
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import image_grid  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
DATA = ("emoji (npm emoji-datasource-google 16.0.0): the training side minus its validation groups; "
        "the held-out row: the test groups")


@torch.no_grad()
def alexnet_features(images: torch.Tensor) -> torch.Tensor:
    """[N, 1152]: the LPIPS AlexNet trunk's five layers, each averaged over space and scaled to unit length."""
    network = _load_lpips(*_resolve_weights_path(None), torch.device("cpu"))
    if isinstance(network, str):
        raise SystemExit(f"no LPIPS network: {network}")
    rows = []
    for part in images.split(200):
        layers = network.net(network.scaling_layer(part.float() * 2 - 1))
        rows.append(torch.cat([F.normalize(layer.mean(dim=(2, 3)), dim=1) for layer in layers], dim=1))
    return torch.cat(rows) / len(layers) ** 0.5


def kid(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between feature sets with the kernel (x.y + 1)^3 (KID's, for unit-length features)."""
    x, y = x.double(), y.double()
    kxx, kyy, kxy = (x @ x.T + 1) ** 3, (y @ y.T + 1) ** 3, (x @ y.T + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
                 - 2 * kxy.mean())


@torch.no_grad()
def nearest_ssim(samples: torch.Tensor, train: torch.Tensor, candidates: int = 20) -> torch.Tensor:
    """Per sample, the highest SSIM to a training image among its ``candidates`` nearest thumbnails."""
    thumbs = F.adaptive_avg_pool2d(train, 16).flatten(1)
    best = []
    for part in samples.split(100):
        near = torch.cdist(F.adaptive_avg_pool2d(part, 16).flatten(1), thumbs).topk(candidates, largest=False).indices
        scores = ssim(part.repeat_interleave(candidates, dim=0), train[near.flatten()]).view(len(part), candidates)
        best.append(scores.max(dim=1).values)
    return torch.cat(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    gan, aegan = load_generator(ROOT / "pretrained" / "emoji64-gan"), load_generator(ROOT / "pretrained" / "emoji64")
    if aegan.density is None or aegan.encoder is None:
        raise SystemExit("pretrained/emoji64 has no fitted density: run `ganrev fit-density -g emoji64`")
    fit, _ = carve_validation(open_dataset("emoji:google", "train"), "emoji")
    train = torch.stack([fit[i] for i in range(len(fit))])
    test = open_dataset("emoji:google", "test")
    heldout = torch.stack([test[i] for i in range(len(test))])
    record = aegan.metadata["density"]
    single = fit_gaussian_mixture(encode_images(aegan.encoder, fit, torch.device("cpu")), 1, 0.1)

    def draw(checkpoint, source):
        z = draw_latents(args.samples, checkpoint.config.latent_dim, 0, source)  # as `ganrev generate --seed 0`
        return checkpoint.generator.images(z).float().clamp(0, 1)

    rows = [
        ("emoji64-gan (pure GAN), z ~ N(0, I)", draw(gan, None)),
        ("emoji64, z ~ N(0, I) (`--prior normal`)", draw(aegan, None)),
        ("emoji64, one Gaussian fitted to E(x) (shrinkage 0.1)", draw(aegan, single)),
        (f"emoji64, fitted density ({record['components']} Gaussians, shrinkage {record['shrinkage']}; "
         "`generate`'s default)", draw(aegan, aegan.density)),
        ("real held-out emoji (test groups), not samples", heldout),
    ]
    train_features = alexnet_features(train)
    results = []
    for name, images in rows:
        near = nearest_ssim(images, train)
        distance = 1000 * kid(alexnet_features(images), train_features)
        results.append({"row": name, "images": len(images), "kid_x1000": distance, "nearest_ssim": float(near.mean()),
                        "nearest_ssim_above_0.9": float((near > 0.9).float().mean())})
        print(f"{name}: KID x1000 {distance:.2f}, nearest-image SSIM {float(near.mean()):.4f}", flush=True)
    grids = [image_grid(images[:64]) for _, images in rows[:-1]]
    gap = torch.zeros(3, grids[0].shape[1], 12)
    figure = torch.cat([part for grid in grids for part in (grid, gap)][:-1], dim=2)
    save_image(figure, args.out / "generate_density.png")

    metadata = {"device": f"CPU ({platform.machine()})", "torch": torch.__version__,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "samples": args.samples,
                "data": DATA, "train_images": len(train),
                "generators": {"emoji64": aegan.fingerprint, "emoji64-gan": gan.fingerprint},
                "density": {k: v for k, v in record.items() if k != "candidates"},
                "command": "python experiments/generate_density.py"}
    payload = {"metadata": metadata, "rows": results}
    (args.out / "generate_density.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["| samples | KID x1000 | nearest-image SSIM | share > 0.9 |", "|---|---:|---:|---:|"]
    lines += [f"| {r['row']} | {r['kid_x1000']:.2f} | {r['nearest_ssim']:.4f} | {r['nearest_ssim_above_0.9']:.3f} |"
              for r in results]
    lines += ["", f"{args.samples} samples per generated row against the {len(train)} training images the generators "
              "were fitted on (the validation groups excluded); KID on the LPIPS AlexNet trunk's features (see the "
              "script); nearest-image SSIM among the 20 nearest training thumbnails. "
              f"Device: {metadata['device']}, torch {metadata['torch']}. Made by `{metadata['command']}`; "
              "generate_density.png shows the first 64 samples of each generated row, in this order."]
    (args.out / "generate_density.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
