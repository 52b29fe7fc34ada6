"""A second, iterative encoder: does a refiner R(x, G(z)) -> dz, trained against the frozen G and E, lift effort 0?

    python experiments/encoder_refiner.py [-g pretrained/emoji64] [--vendors google,twitter,fluent,emojione,noto-v1]
                                          [--epochs 6] [--passes 2] [--out experiments/results/encoder_refiner.json]

Effort 0 (`compress --effort 0`) is G(E(x)), one pass of the encoder, and on validation groups it reaches SSIM
0.72-0.75 where six steps of the search reach 0.81. ReStyle (Alaluf et al., ICCV 2021) closes much of such a gap
for StyleGAN encoders with a second network that looks at the image and the current reconstruction and
predicts a correction of the code, applied a few times: still no gradient search. Here R has the encoder's
architecture with six input channels (x and G(z)) and a zero last layer (it starts as "no change"); each pass
is trained from the previous pass's output (detached, as ReStyle does) with fit-generator's loss,
``recon(G(z + noise), x) + prior_weight * moments(z)``. R learns from the errors E makes, and on the groups
G and E were trained on E makes few, so each start is E(x) plus a random share of ``--start-noise`` Gaussian
noise, and the fit images may include styles G never trained on (``--vendors``; G and E do not change).

After each epoch: the SSIM of G(z) after 0, 1, ... ``--passes`` passes on the validation groups of ``--judge``'s
vendors (no test image is touched); beside it, once, the SSIM after as many steps of the search from E(x) (a pass
costs about what a step does: one forward pass of G and one of an encoder-sized network, against G's forward pass
and gradient). Then, with the best epoch's R, the default search (and shorter ones)
started from E(x) and from the refined code: whether a better start shortens the search (``--search``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from encoder_refit import vendor_sets  # noqa: E402
from ganrev.invert import default_search, invert, per_image_loss  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.metrics import ssim  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig, init_weights  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ganrev.training.generator import moment_penalty  # noqa: E402
from vendor_figures import shown  # noqa: E402

SEARCHES = ((200, 20), (100, 10), (60, 10), (40, 8), (25, 5))  # (iterations, patience): the default, then shorter


class RefinedEncoder(nn.Module):
    """E(x), then ``passes`` corrections z += R(x, G(z)): a start for :func:`ganrev.invert.invert`."""

    def __init__(self, generator: Generator, encoder: Encoder, refiner: Encoder, passes: int) -> None:
        super().__init__()
        self.generator, self.encoder, self.refiner, self.passes = generator, encoder, refiner, passes

    def step(self, images: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return code + self.refiner(torch.cat([images, self.generator.images(code).float()], 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        code = self.encoder(images)
        for _ in range(self.passes):
            code = self.step(images, code)
        return code


def new_refiner(config: GeneratorConfig, width: int) -> Encoder:
    """The encoder's architecture reading six channels (x and G(z)), its last layer zero: it starts as no change."""
    refiner = Encoder(GeneratorConfig(config.latent_dim, config.channels, config.resolution, width))
    refiner.apply(init_weights)
    first = refiner.main[0]
    refiner.main[0] = nn.Conv2d(2 * config.channels, first.out_channels, first.kernel_size, first.stride,
                                first.padding, bias=first.bias is not None)
    nn.init.normal_(refiner.main[0].weight, 0.0, 0.02)
    nn.init.zeros_([m for m in refiner.main if isinstance(m, nn.Conv2d)][-1].weight)
    return refiner


@torch.no_grad()
def pass_scores(model: RefinedEncoder, images: torch.Tensor) -> list[float]:
    """Mean SSIM of G(z) after 0, 1, ... passes."""
    model.eval()
    totals = [0.0] * (model.passes + 1)
    for part in images.split(256):
        code = model.encoder(part)
        for k in range(model.passes + 1):
            if k:
                code = model.step(part, code)
            totals[k] += float(ssim(model.generator.images(code).clamp(0, 1), part).sum())
    return [total / len(images) for total in totals]


def search_steps(generator: Generator, encoder: Encoder, images: torch.Tensor, steps: int) -> list[float]:
    """Mean SSIM of G(z) after 0, 1, ... ``steps`` steps of the default search from E(x) (its step size, no early
    stop): what the refiner's passes are set beside."""
    scores = []
    for count in range(steps + 1):
        # a search of k + 1 iterations evaluates its start and then k updated points
        search = default_search(True, init="encoder", iters=count + 1 if count else 0, patience=count + 1)
        result = invert(generator, images, search, encoder=encoder)
        with torch.no_grad():
            scores.append(float(ssim(generator.images(result.z).clamp(0, 1), images).mean()))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--vendors", default="google,twitter,fluent,emojione,noto-v1", help="whose fit images train R")
    parser.add_argument("--judge", default="google,twitter,fluent", help="whose validation groups choose the epoch")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--start-noise", type=float, default=0.5, help="largest std of the noise added to E(x)")
    parser.add_argument("--latent-noise", type=float, default=0.2)
    parser.add_argument("--prior-weight", type=float, default=0.1)
    parser.add_argument("--search-count", type=int, default=64, help="validation images per judge for --search")
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "encoder_refiner.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    checkpoint = load_generator(args.generator)
    generator = checkpoint.generator.eval().requires_grad_(False)
    encoder = checkpoint.encoder
    assert encoder is not None, "the generator has no encoder to refine"
    encoder.eval().requires_grad_(False)
    refiner = new_refiner(checkpoint.config, args.width)
    model = RefinedEncoder(generator, encoder, refiner, args.passes)
    judges = [v for v in args.judge.split(",") if v]
    fit, validation = vendor_sets(args.vendors, args.judge)
    validation = {v: validation[v] for v in judges}  # scored: the judges' groups only
    recon = per_image_loss("ssim+l1")
    optimizer = torch.optim.Adam(refiner.parameters(), lr=args.lr, betas=(0.5, 0.99))
    batch = 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * (len(fit) // batch),
                                                   pct_start=0.05)
    history = [{"epoch": 0, "passes": {v: pass_scores(model, images) for v, images in validation.items()},
                "search_steps": {v: search_steps(generator, encoder, images, args.passes)
                                 for v, images in validation.items()}}]
    print(json.dumps(history[-1]), flush=True)
    best, best_score, started = copy.deepcopy(refiner.state_dict()), -1.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        refiner.train()
        order = torch.randperm(len(fit))
        total = 0.0
        for index in order[: len(order) // batch * batch].split(batch):
            real = fit[index].float() / 255
            real = torch.where(torch.rand(len(real), 1, 1, 1) < 0.5, real.flip(-1), real)
            with torch.no_grad():
                code = encoder(real)
                code = code + torch.rand(len(code), 1) * args.start_noise * torch.randn_like(code)
            loss = real.new_zeros(())
            for _ in range(args.passes):
                code = model.step(real, code)
                loss = loss + recon(generator.images(code + torch.randn_like(code) * args.latent_noise), real).mean() \
                    + args.prior_weight * moment_penalty(code)
                code = code.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        figures = {v: pass_scores(model, images) for v, images in validation.items()}
        mean = sum(figures[v][-1] for v in judges) / len(judges)
        history.append({"epoch": epoch, "loss": total / (len(fit) // batch), "passes": figures, "mean": mean,
                        "wall_s": round(time.perf_counter() - started, 1)})
        print(json.dumps(history[-1]), flush=True)
        if mean > best_score:
            best, best_score = copy.deepcopy(refiner.state_dict()), mean
    refiner.load_state_dict(best)
    searches = []
    if args.search:  # does the better start shorten the search? SSIM of G(z*) before rounding
        images = torch.cat([validation[v][: args.search_count] for v in judges])
        for iters, patience in SEARCHES:
            for start, net in (("E(x)", encoder), ("refined", model.eval())):
                result = invert(generator, images, default_search(True, init="encoder", iters=iters, patience=patience),
                                encoder=net)
                with torch.no_grad():
                    score = float(ssim(generator.images(result.z).clamp(0, 1), images).mean())
                searches.append({"iters": iters, "patience": patience, "start": start, "ssim": score,
                                 "iterations_per_image": result.image_iterations / len(images),
                                 "seconds": round(result.seconds, 1)})
                print(json.dumps(searches[-1]), flush=True)
    record = {"command": "python experiments/encoder_refiner.py " + " ".join(argv or sys.argv[1:]),
              "from": shown(args.generator), "device": f"CPU ({cpu_model()}, {args.threads} threads)",
              "history": history, "best_mean": best_score, "searches": searches}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"best mean validation SSIM after {args.passes} passes {best_score:.4f}; figures in {shown(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
