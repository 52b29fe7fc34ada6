"""Training throughput of fit-generator's step, fp32 vs bf16 autocast, at 1 thread and every core, side by side.

    python experiments/bench_train.py [--steps 20] [--width 32] [--batch-size 64] [--out experiments/results/bench_train.json]

Times :class:`ganrev.training.generator.AeganObjective`'s step (encoder, generator on [E(x); z] with the
reconstruction, prior and adversarial terms, D's step, the EMA) on random images in [-1, 1] -- the work per
step does not depend on the pixels -- after 3 warm-up steps, in one process, each configuration in turn. Prints
a table and writes JSON with the CPU model, its bf16 flags and torch's version.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ganrev.io import atomic_write_text
from ganrev.training.common import autocast_for, available_cores, cpu_flags, cpu_model
from ganrev.training.generator import AeganObjective, TrainOptions


def time_steps(precision: str, threads: int, args: argparse.Namespace) -> float:
    """Seconds per training step for one configuration (fresh networks, same seed)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # the step the published figures timed (latent 100, adversarial term on), whatever fit-generator's defaults are
    options = TrainOptions(width=args.width, disc_width=args.width, adv_weight=0.05, adv_warmup=0,
                           batch_size=args.batch_size, latent_dim=100, latent_noise=0.0)
    device = torch.device("cpu")
    objective = AeganObjective(options, device)
    objective.train()
    autocast = autocast_for(precision, device)
    real = torch.rand(args.batch_size, 3, 64, 64) * 2 - 1
    for _ in range(3):
        objective.step(real, epoch=1, autocast=autocast)
    started = time.perf_counter()
    for _ in range(args.steps):
        objective.step(real, epoch=1, autocast=autocast)
    return (time.perf_counter() - started) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench_train.json"))
    args = parser.parse_args()
    cores = available_cores()
    rows = []
    for threads in sorted({1, cores}):
        for precision in ("fp32", "bf16"):
            seconds = time_steps(precision, threads, args)
            rows.append({"precision": precision, "threads": threads, "s_per_step": round(seconds, 4),
                         "images_per_s": round(args.batch_size / seconds, 1)})
            print(f"{precision:5} {threads:2} threads: {seconds:.4f} s/step, {args.batch_size / seconds:7.1f} images/s",
                  flush=True)
    base = next(r for r in rows if r["precision"] == "fp32" and r["threads"] == 1)["s_per_step"]
    for row in rows:
        row["speedup_vs_fp32_1_thread"] = round(base / row["s_per_step"], 2)
    flags = sorted(cpu_flags() & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f"})
    result = {"cpu": cpu_model(), "bf16_flags": flags, "machine": platform.machine(), "torch": torch.__version__,
              "width": args.width, "batch_size": args.batch_size, "steps": args.steps,
              "step": "aegan: E, G on [E(x); z], recon + prior + adversarial terms, one D step, EMA", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"{result['cpu']} ({', '.join(flags) or 'no bf16 flags'}): written {args.out}")


if __name__ == "__main__":
    main()
