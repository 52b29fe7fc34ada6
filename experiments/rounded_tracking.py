"""Which point should the search keep: the best one, or the one whose *rounding* is best?

    python experiments/rounded_tracking.py [-g pretrained/emoji64] [--bits 2,3,4] [--count 64]
                                           [--out experiments/results/rounded_tracking.json]

A file stores the latent rounded to a grid of 2**bits points over [-3, 3], but the search (ganrev.invert) keeps,
per image, the iterate with the lowest loss *before* rounding; after an encoder start GanCodec does not refine the
rounded point either (REFINE_ITERS: at 4 bits and above it gained about +0.001). This study runs the default
search's arithmetic (Adam, the cosine step from 0.3, early stopping after 20 iterations without gain; the folded
generator in bf16 on a CPU with BF16_CPU_FLAGS) twice on the same images: keeping the best point by the loss, as
invert does, and keeping it by the loss of its rounding at ``--bits`` (one more forward pass of G per iteration,
no gradient; early stopping then also watches the rounded loss); and, third, the first search followed by the
quantizer-in-the-loop refinement GanCodec gives a pool or random start (``refine_quantized``: 50 steps of Adam
through the rounding at half a grid step, the best rounded point kept). Validation groups only (``--count`` per style of
Google, Twemoji and Fluent), SSIM of G(z) before and after rounding, iterations and wall time, one thread.

The loop is a copy of ``ganrev.invert._search_rows`` with the rounded tracking added: a prototype, to decide
whether the engine's search should get it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from encoder_refit import vendor_split  # noqa: E402
from ganrev.bitstream.quantize import Quantizer, refine_quantized  # noqa: E402
from ganrev.codecs.gan import REFINE_ITERS  # noqa: E402
from ganrev.invert import ENCODER_SEARCH, SEARCH_DTYPES, per_image_loss, resolve_search_precision  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.metrics import ssim  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from vendor_figures import shown  # noqa: E402

STYLES = ("google", "twitter", "fluent")


def search(net: torch.nn.Module, start: torch.Tensor, targets: torch.Tensor, grid: Quantizer | None,
           iters: int, patience: int, lr: float) -> tuple[torch.Tensor, float]:
    """Best z per row (by the loss of z, or of its rounding on ``grid``) and iterations per row."""
    loss_fn = per_image_loss("ssim+l1")
    z = start.clone()
    rows = len(z)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    best_z, best_loss = z.clone(), torch.full((rows,), math.inf)
    stall = torch.zeros(rows, dtype=torch.long)
    active, done = torch.arange(rows), 0
    for step in range(iters):
        z_active = z[active].requires_grad_(True)
        loss = loss_fn(net.images(z_active), targets[active])
        (grad,) = torch.autograd.grad(loss.sum(), z_active)
        loss = loss.detach()
        if grid is not None:
            with torch.no_grad():
                loss = loss_fn(net.images(grid.dequantize(grid.quantize(z_active.detach()))), targets[active])
        improved = loss < best_loss[active] - 1e-4
        better = loss < best_loss[active]
        best_loss[active] = torch.where(better, loss, best_loss[active])
        best_z[active] = torch.where(better[:, None], z_active.detach(), best_z[active])
        stall[active] = torch.where(improved, 0, stall[active] + 1)
        done += len(active)
        t = step + 1
        rate = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / iters)))
        m[active] = 0.9 * m[active] + 0.1 * grad
        v[active] = 0.999 * v[active] + 0.001 * grad.square()
        update = (m[active] / (1 - 0.9**t)) / ((v[active] / (1 - 0.999**t)).sqrt() + 1e-8)
        z[active] = (z_active.detach() - rate * update).clamp(-3.0, 3.0)
        active = active[stall[active] < patience]
        if len(active) == 0:
            break
    return best_z, done / rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--bits", default="2,3,4")
    parser.add_argument("--count", type=int, default=64, help="validation emoji per style")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "rounded_tracking.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_generator(args.generator)
    generator = checkpoint.generator.eval().requires_grad_(False)
    assert checkpoint.encoder is not None, "the study starts from the encoder, as compress does"
    encoder = checkpoint.encoder.eval()
    precision = resolve_search_precision("auto", torch.device("cpu"))
    net = generator.folded(SEARCH_DTYPES[precision])
    images = torch.cat([vendor_split(style)[1][: args.count] for style in STYLES]).float() / 255
    with torch.no_grad():
        start = encoder(images)
    loss_fn = per_image_loss("ssim+l1")
    rows = []
    for bits in (int(b) for b in args.bits.split(",")):
        grid = Quantizer(bits, 3.0)
        for keep in ("loss", "rounded loss", "loss, then refinement"):
            began = time.perf_counter()
            z, iterations = search(net, start, images, grid if keep == "rounded loss" else None,
                                   ENCODER_SEARCH["iters"], ENCODER_SEARCH["patience"], ENCODER_SEARCH["lr"])
            symbols = grid.quantize(z)
            if keep == "loss, then refinement":  # as GanCodec refines: the fp32 generator, the search's loss
                (symbols,) = refine_quantized(z, [(grid, z.shape[1])],
                                              lambda latents: loss_fn(generator.images(latents), images),
                                              REFINE_ITERS["pool"], grid.step / 2)
            seconds = time.perf_counter() - began
            with torch.no_grad():
                before = float(ssim(generator.images(z).clamp(0, 1), images).mean())
                after = float(ssim(generator.images(grid.dequantize(symbols)).clamp(0, 1), images).mean())
            payload = sum(len(grid.best_sigma(row)[1]) for row in symbols.numpy()) / len(symbols)
            rows.append({"bits": bits, "keeps": keep, "ssim_before_rounding": round(before, 4),
                         "ssim_rounded": round(after, 4), "iterations_per_image": round(iterations, 1),
                         "seconds": round(seconds, 1), "payload_bytes": round(payload, 1)})
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| bits | keeps the point of best | SSIM before rounding | SSIM rounded (the file) | iterations per image "
             "| seconds | latent payload, bytes per image |", "|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['bits']} | {r['keeps']} | {r['ssim_before_rounding']:.4f} | {r['ssim_rounded']:.4f} | "
              f"{r['iterations_per_image']} | {r['seconds']} | {r['payload_bytes']} |" for r in rows]
    command = "python experiments/rounded_tracking.py " + " ".join(argv or sys.argv[1:])
    record = {"command": command.strip(), "generator": shown(args.generator), "images": f"{args.count} validation "
              f"emoji per style of {', '.join(STYLES)}", "device": f"CPU ({cpu_model()}, 1 thread, {precision})",
              "rows": rows}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + f"\n\n{record['images']}, default search from "
                      f"E(x) on `{record['generator']}`; {record['device']}; made by `{record['command']}`.\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
