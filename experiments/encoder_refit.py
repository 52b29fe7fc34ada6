"""Refit the encoder of a frozen generator: does an encoder trained alone generalise better than the one trained with G?

    python experiments/encoder_refit.py [-g pretrained/emoji64] [--vendors google,twitter,fluent] [--epochs 20]
                                        [--width 32] [--init shipped|fresh] [--synthetic 1] [--augment]
                                        [--out runs/encoder-refit] [--results experiments/results/encoder_refit.json]

The shipped encoder E was trained jointly with G (fit-generator's aegan objective) and generalises far worse than
G does: on emoji64's validation groups (never trained on) G(E(x)) reaches SSIM 0.72-0.75 where the search from E(x)
reaches about 0.88, against 0.89-0.92 for G(E(x)) on the groups trained on. Effort 0 (`compress --effort 0`: E
alone) inherits that gap. Here G is frozen in eval mode (the function files decode with), and a new E (``--init
shipped``: from the shipped one; ``fresh``: from scratch, ``--width`` channels) descends the loss fit-generator
gives E, ``recon(G(E(x) + noise), x) + prior_weight * moments(E(x))``, on the fit images of ``--vendors`` (styles G
never trained on may be given: G does not change), flipped at random.

Two ways to give E more than the fit images: ``--synthetic S`` adds S images per real one to each batch, drawn
by G from codes of its density of E(x) (``density.safetensors``; N(0, I) without one). They lie in G's range by
construction, so they are unlimited new shapes whose codes are known: their loss is the same reconstruction
(weighted S) plus ``--code-weight`` times the mean squared distance of E(G(z)) to z. ``--augment`` moves and
recolours the real images as fit-generator's ``--augment`` does (a target may then lie outside G's range).

After each epoch: the SSIM of G(E(x)) per vendor on its validation groups (no test image is touched; epoch 0 is
the shipped encoder, the figure to beat). The epoch with the best mean over ``--judge``'s vendors is written, with
the frozen G, as a checkpoint directory in ``--out`` (G's fingerprint unchanged: files made with the shipped
encoder still decode), the per-epoch figures in ``--results``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from ganrev.augment import reconstruction_augment  # noqa: E402
from ganrev.data import carve_validation, open_dataset  # noqa: E402
from ganrev.invert import per_image_loss  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.models import load_generator, save_generator  # noqa: E402
from ganrev.nets.dcgan import Encoder, GeneratorConfig, init_weights  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ganrev.training.generator import moment_penalty, validation_ssim  # noqa: E402
from vendor_figures import shown  # noqa: E402


def vendor_split(vendor: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, validation) images of one emoji vendor's training side, as uint8 tensors."""
    source = f"emoji:{vendor}"
    fit, validation = carve_validation(open_dataset(source, "train"), source)
    assert validation is not None
    return tuple((torch.stack([part[i] for i in range(len(part))]) * 255).round().to(torch.uint8)
                 for part in (fit, validation))  # type: ignore[return-value]


def vendor_sets(vendors: str, judges: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """From comma-separated vendor lists: the fit images of ``vendors`` (uint8, one tensor) and the validation images
    of every vendor named in either list (float in [0, 1], by vendor), each vendor read once."""
    fit_vendors = [v for v in vendors.split(",") if v]
    named = dict.fromkeys(fit_vendors + [v for v in judges.split(",") if v])
    splits = {vendor: vendor_split(vendor) for vendor in named}
    return torch.cat([splits[v][0] for v in fit_vendors]), {v: split[1].float() / 255 for v, split in splits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--vendors", default="google,twitter,fluent", help="whose fit images train E")
    parser.add_argument("--judge", default="google,twitter,fluent",
                        help="whose validation groups choose the epoch (their mean SSIM of G(E(x)))")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=None, help="fresh encoder's channels [the shipped encoder's]")
    parser.add_argument("--init", choices=("shipped", "fresh"), default="shipped")
    parser.add_argument("--latent-noise", type=float, default=0.2)
    parser.add_argument("--prior-weight", type=float, default=0.1)
    parser.add_argument("--synthetic", type=float, default=0.0, help="images drawn by G per real image in a batch")
    parser.add_argument("--code-weight", type=float, default=1.0, help="weight of |E(G(z)) - z|^2 for drawn images")
    parser.add_argument("--augment", action="store_true", help="move and recolour the real images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "encoder-refit")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results" / "encoder_refit.json",
                        help="where the per-epoch validation figures go")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    checkpoint = load_generator(args.generator)
    generator = checkpoint.generator.eval().requires_grad_(False)
    shipped = checkpoint.encoder
    assert shipped is not None, "the generator has no encoder to compare with"
    if args.init == "shipped":
        encoder = copy.deepcopy(shipped).train().requires_grad_(True)
    else:
        config = checkpoint.config
        width = args.width or shipped.config.width
        encoder = Encoder(GeneratorConfig(config.latent_dim, config.channels, config.resolution, width))
        encoder.apply(init_weights)
    judges = [v for v in args.judge.split(",") if v]
    fit, validation = vendor_sets(args.vendors, args.judge)
    recon = per_image_loss("ssim+l1")
    draws = torch.Generator().manual_seed(1)

    def drawn_codes(count: int) -> torch.Tensor:
        if checkpoint.density is not None:
            return checkpoint.density.sample(count, draws)
        return torch.randn(count, checkpoint.config.latent_dim, generator=draws)

    optimizer = torch.optim.Adam(encoder.parameters(), lr=args.lr, betas=(0.5, 0.99))
    steps = args.epochs * (len(fit) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.05)

    def scores(net: Encoder) -> dict[str, float]:
        return {v: float(validation_ssim(generator, net, images, torch.device("cpu")).mean())
                for v, images in validation.items()}

    history = [{"epoch": 0, "encoder": "shipped", "validation": scores(shipped)}]  # the figure to beat
    print(json.dumps(history[-1]), flush=True)
    best, best_score, started = copy.deepcopy(encoder), -1.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        encoder.train()
        order = torch.randperm(len(fit))
        total = 0.0
        for index in order[: len(order) // args.batch_size * args.batch_size].split(args.batch_size):
            real = fit[index].float() / 255
            flip = torch.rand(len(real), 1, 1, 1) < 0.5
            real = torch.where(flip, real.flip(-1), real)
            if args.augment:
                real = reconstruction_augment(real)
            synthetic = round(len(real) * args.synthetic)
            if synthetic:
                known = drawn_codes(synthetic)
                with torch.no_grad():
                    targets = torch.cat([real, generator.images(known).float().clamp(0, 1)])
            else:
                targets = real
            code = encoder(targets)
            drawn = generator.images(code + torch.randn_like(code) * args.latent_noise)
            errors = recon(drawn, targets)
            real_code = code[: len(real)]
            loss = errors[: len(real)].mean() + args.prior_weight * moment_penalty(real_code)
            if synthetic:
                loss = loss + args.synthetic * errors[len(real):].mean() \
                    + args.code_weight * (code[len(real):] - known).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        figures = scores(encoder)
        mean = sum(figures[v] for v in judges) / len(judges)
        history.append({"epoch": epoch, "loss": total / (len(order) // args.batch_size), "validation": figures,
                        "mean": mean, "wall_s": round(time.perf_counter() - started, 1)})
        print(json.dumps(history[-1]), flush=True)
        if mean > best_score:
            best, best_score = copy.deepcopy(encoder), mean
    best.eval()
    # save_generator writes the architecture, fingerprints and encoder entry itself; the rest is the checkpoint's
    meta = {key: value for key, value in copy.deepcopy(checkpoint.metadata).items()
            if key not in ("format", "format_version", "architecture", "fingerprint", "encoder", "density", "report")}
    meta["encoder_refit"] = {"command": "python experiments/encoder_refit.py " + " ".join(argv or sys.argv[1:]),
                             "from": shown(args.generator), "device": f"CPU ({cpu_model()}, {args.threads} threads)",
                             "history": history}
    save_generator(generator, args.out, meta, encoder=best)
    atomic_write_text(args.results, json.dumps(meta["encoder_refit"] | {"best_mean": best_score}, indent=2) + "\n")
    print(f"best mean validation SSIM of G(E(x)) {best_score:.4f}; written to {shown(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
