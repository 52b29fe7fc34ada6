"""Throughput of the batched latent-search core vs a one-image-at-a-time loop, measured side by side.

For each batch size B: the same B images are inverted (a) in one batched call and (b) one image per call,
with the same generator, loss, iterations and restarts, early stopping off (so both do exactly
B * iters generator passes). Reports image-iterations per second and the speed-up, and writes
experiments/results/bench_invert_<device>.json.

Against the machine: the generator's floating-point work in one image-iteration (its forward pass and the gradient
to z, counted by torch.utils.flop_counter: multiply-adds count 2) turns each throughput into GFLOP/s, set beside the
peak this process reaches on the same threads in a large matrix product in the search's precision (torch.mm of
2048x2048 matrices, the best of several): the fraction of that peak the search spends on the generator. The search
runs the generator folded (``Generator.folded``) in ``--precision`` fp32 or bf16 (AMX or AVX-512 BF16 on CPU). The
loss is left out of the count: its Gaussian filters run as banded matrix products (ganrev.metrics), whose
multiplications by the bands' zeros a counter would take for work, and its useful work is a few per cent of the
generator's; so the fraction is a floor.

Where an iteration's time goes: at each batch size the same rows also run ``--iters`` times (a) the folded
generator's forward pass and gradient to z alone, (b) the same with the search loss as the search computes it
(``target_loss``: the targets' own SSIM maps once per search) and (c) with those maps filtered at every call, as
before. The batched search's time per iteration minus (b) is the rest (Adam, early-stopping bookkeeping, gathering
and scattering the active rows, and the call's set-up, folding the generator, spread over ``--iters``). The shares
are in each row (``split_ms``, per iteration of all rows).

    python experiments/bench_invert.py                      # CPU here; CUDA when present
    python experiments/bench_invert.py --batch-sizes 1 8 64 --iters 50 --device cpu
    python experiments/bench_invert.py --precision bf16 --out experiments/results/bench_invert_cpu-bf16.json
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import ganrev
from ganrev.invert import SEARCH_DTYPES, SearchOptions, invert, per_image_loss, target_loss
from ganrev.io import atomic_write_text, list_images, load_image
from ganrev.evaluate import display_path
from ganrev.models import load_generator
from ganrev.training.common import choose_device, cpu_model

ROOT = Path(__file__).resolve().parent.parent


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_model()} x{torch.get_num_threads()} threads"


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def generator_flops_per_image_iteration(generator: torch.nn.Module, rows: int, device: torch.device) -> float:
    """Floating-point operations of the generator in one search iteration of one image: G forward and the gradient
    to z (counted on ``rows`` latents and divided by them)."""
    z = torch.zeros(rows, generator.config.latent_dim, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        generator.images(z).sum().backward()
    return counter.get_total_flops() / rows


def forward_backward_ms(net: torch.nn.Module, images: torch.Tensor, loss: str | None, iters: int,
                        fixed_targets: bool = True) -> float:
    """Milliseconds per iteration of ``net``'s forward pass and gradient to z for ``len(images)`` rows, through the
    per-image ``loss`` against ``images`` (None: the generator alone, its outputs summed), as the search computes
    it (``target_loss``: the targets' own SSIM maps once) or, ``fixed_targets`` False, from scratch at every call
    (``per_image_loss``): the best of three runs of ``iters`` iterations, since on a shared CPU one run's figure
    moves by 10 % or more."""
    if loss is None:
        loss_fn = None
    elif fixed_targets:
        loss_fn = target_loss(loss, images)
    else:
        per_image = per_image_loss(loss)
        loss_fn = lambda out: per_image(out, images)  # noqa: E731
    z = torch.randn(len(images), net.config.latent_dim, device=images.device)

    def one() -> None:
        latent = z.clone().requires_grad_(True)
        out = net.images(latent)
        torch.autograd.grad((loss_fn(out) if loss_fn else out).sum(), latent)

    one()  # warm-up
    return min(timed(lambda: [one() for _ in range(iters)]) for _ in range(3)) / iters * 1000


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of a ``size`` x ``size`` matrix product in ``dtype`` on this device and thread count."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default=str(ROOT / "pretrained" / "emoji64"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--loss", default="ssim")
    parser.add_argument("--precision", default="fp32", choices=sorted(SEARCH_DTYPES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="JSON file [default: experiments/results/bench_invert_<device>.json]")
    args = parser.parse_args()

    device = choose_device(args.device)
    checkpoint = load_generator(args.generator, device)
    pool = [load_image(p) for p in list_images(Path(args.generator) / "heldout")]
    options = SearchOptions(iters=args.iters, restarts=1, loss=args.loss, pool=0, patience=10**9,
                            batch_size=max(args.batch_sizes), precision=args.precision)
    invert(checkpoint.generator, torch.stack(pool[:2]).to(device),  # warm-up, in the precision measured
           SearchOptions(iters=3, restarts=1, pool=0, precision=args.precision))
    flops = generator_flops_per_image_iteration(checkpoint.generator.eval().requires_grad_(False), 8, device)
    search_net = checkpoint.generator.folded(SEARCH_DTYPES[args.precision])
    peak = matmul_peak_gflops(device, SEARCH_DTYPES[args.precision])
    print(f"{flops / 1e9:.3f} generator GFLOP per image-iteration; {args.precision} matmul peak {peak:.1f} GFLOP/s",
          flush=True)
    rows = []
    for batch in args.batch_sizes:
        images = torch.stack([pool[k % len(pool)] for k in range(batch)])
        batched_s = timed(lambda: invert(checkpoint.generator, images, options, device=device))
        loop_s = timed(lambda: [invert(checkpoint.generator, images[k:k + 1], options, device=device)
                                for k in range(batch)])
        work = batch * args.iters
        generator_ms = forward_backward_ms(search_net, images.to(device), None, args.iters)
        with_loss_ms = forward_backward_ms(search_net, images.to(device), args.loss, args.iters)
        uncached_ms = forward_backward_ms(search_net, images.to(device), args.loss, args.iters, fixed_targets=False)
        iteration_ms = batched_s / args.iters * 1000
        row = {"batch": batch, "image_iterations": work, "batched_s": round(batched_s, 3), "loop_s": round(loop_s, 3),
               "batched_it_per_s": round(work / batched_s, 1), "loop_it_per_s": round(work / loop_s, 1),
               "speedup": round(loop_s / batched_s, 2),
               "batched_gflops": round(work / batched_s * flops / 1e9, 1),
               "peak_fraction": round(work / batched_s * flops / 1e9 / peak, 3),
               "split_ms": {"generator": round(generator_ms, 2), "loss": round(with_loss_ms - generator_ms, 2),
                            "rest": round(iteration_ms - with_loss_ms, 2),
                            "loss_without_the_targets_maps_once": round(uncached_ms - generator_ms, 2)}}
        rows.append(row)
        print(f"batch {batch:4d}: batched {row['batched_it_per_s']:9.1f} img-it/s ({row['batched_gflops']} GFLOP/s, "
              f"{row['peak_fraction']:.0%} of the matmul peak)   loop {row['loop_it_per_s']:9.1f} img-it/s   "
              f"speed-up {row['speedup']:.2f}x", flush=True)
        print(f"            per iteration of {batch} rows: generator {generator_ms:.2f} ms, loss "
              f"{with_loss_ms - generator_ms:.2f} ms ({uncached_ms - generator_ms:.2f} ms filtering the targets at "
              f"every call), the rest {iteration_ms - with_loss_ms:.2f} ms", flush=True)
    result = {
        "benchmark": "bench_invert", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device), "torch": torch.__version__, "ganrev": ganrev.__version__,
        "generator": display_path(args.generator), "fingerprint": checkpoint.fingerprint, "loss": args.loss,
        "iters": args.iters, "restarts": 1, "early_stopping": False, "precision": args.precision,
        "generator_gflop_per_image_iteration": round(flops / 1e9, 4), "matmul_peak_gflops": round(peak, 1), "rows": rows,
        "command": "python experiments/bench_invert.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else display_path(v) if k == 'generator' else v}"
            for k, v in vars(args).items() if v is not None and k != "out"),
    }
    out = Path(args.out) if args.out else ROOT / "experiments" / "results" / f"bench_invert_{device.type}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
