"""Train a DCGAN generator (``ganrev fit-generator``): Adam 2e-4 / beta1 0.5, checkpoints every epoch, resume.

Output directory layout:
- ``generator.safetensors`` + ``config.json``: the latest generator, loadable by :func:`ganrev.models.load_generator`;
- ``train_state.pt``: discriminator, both optimisers, epoch, history and RNG state, for ``--resume``
  (read with ``torch.load(weights_only=True)``, which never unpickles code);
- ``samples/epoch_NNNN.png``: an 8x8 grid from fixed noise after each epoch.

Every file is written atomically at the end of an epoch, so a kill or Ctrl-C loses at most that epoch.
Started under ``torchrun`` with several processes, training is data-parallel (DDP); rank 0 writes files.
"""

from __future__ import annotations

import io as _io
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ganrev.data import EmptySplitError, open_dataset, split_rule
from ganrev.errors import GanrevError
from ganrev.io import atomic_write_bytes, save_image
from ganrev.models import Discriminator, Generator, GeneratorConfig, init_weights, save_generator

STATE_FILE = "train_state.pt"


@dataclass
class TrainOptions:
    """Everything that defines a training run (recorded in the checkpoint's config.json)."""

    data: str = "emoji"
    resolution: int = 64
    channels: int = 3
    latent_dim: int = 100
    width: int = 64
    disc_width: int = 64
    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    hflip: bool = True  # random horizontal flips: cheap augmentation that helps small sets like emoji
    real_label: float = 0.9  # one-sided label smoothing (Salimans et al. 2016) steadies D on small sets
    max_steps_per_epoch: int | None = None  # for smoke tests


def choose_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise the named device."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanrevError("--device cuda requested but no CUDA GPU is available")
    return device


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` images in [0, 1] into one ``[C, H', W']`` grid on a white background."""
    n, c, h, w = images.shape
    nrow = max(1, min(nrow, n))  # fewer images than a row: no blank tiles
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for k in range(n):
        r, col = divmod(k, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images[k]
    return grid


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun with >1 process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def fit_generator(options: TrainOptions, out_dir: str | os.PathLike[str], *, resume: bool = False,
                  device: str = "auto", workers: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a DCGAN on ``options.data``; returns the final training summary."""
    out = Path(out_dir)
    rank, world = _distributed()
    dev = choose_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)

    state: dict[str, Any] | None = None
    if resume:
        state_path = out / STATE_FILE
        if not state_path.is_file():
            raise GanrevError(f"--resume: no {STATE_FILE} in {out}")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        # A resumed run keeps its architecture, data and seed; only the epoch budget can grow.
        options = TrainOptions(**(state["options"] | {"epochs": options.epochs}))

    torch.manual_seed(options.seed + rank)
    dataset = open_dataset(options.data, "train", resolution=options.resolution, channels=options.channels)
    try:
        test_size = len(open_dataset(options.data, "test", resolution=options.resolution, channels=options.channels))
    except EmptySplitError:  # a small folder may hold no held-out image: recorded as 0, training goes on
        test_size = 0
    if len(dataset) < options.batch_size:
        raise GanrevError(f"{len(dataset)} training images is fewer than one batch ({options.batch_size})")
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=options.seed) if world > 1 else None
    shuffle_rng = torch.Generator()
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=True, num_workers=workers, pin_memory=dev.type == "cuda", generator=shuffle_rng)

    config = GeneratorConfig(options.latent_dim, options.channels, options.resolution, options.width)
    netG, netD = Generator(config).to(dev), Discriminator(
        GeneratorConfig(options.latent_dim, options.channels, options.resolution, options.disc_width)).to(dev)
    netG.apply(init_weights)
    netD.apply(init_weights)
    optG = torch.optim.Adam(netG.parameters(), lr=options.lr, betas=(options.beta1, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=options.lr, betas=(options.beta1, 0.999))
    fixed_noise = torch.randn(64, options.latent_dim, generator=torch.Generator().manual_seed(options.seed))
    history: list[dict[str, float]] = []
    start_epoch, wall_before = 0, 0.0
    if state is not None:
        netG.load_state_dict(state["generator"])
        netD.load_state_dict(state["discriminator"])
        optG.load_state_dict(state["opt_generator"])
        optD.load_state_dict(state["opt_discriminator"])
        history, start_epoch, wall_before = list(state["history"]), int(state["epoch"]), float(state["wall_s"])
        torch.set_rng_state(state["rng_cpu"])
    if world > 1:
        netG = torch.nn.parallel.DistributedDataParallel(netG)
        netD = torch.nn.parallel.DistributedDataParallel(netD)
    plainG: Generator = netG.module if world > 1 else netG  # type: ignore[assignment]

    # bf16 autocast on CUDA: halves activation traffic and needs no loss scaler.
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    started = time.perf_counter()
    for epoch in range(start_epoch, options.epochs):
        # Each epoch's order depends on (seed, epoch) alone, so a resumed run sees what an uninterrupted one would.
        shuffle_rng.manual_seed(options.seed * 100_003 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        netG.train()
        netD.train()
        sums = {"loss_d": 0.0, "loss_g": 0.0, "d_real": 0.0, "d_fake": 0.0}
        steps = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{options.epochs}", disable=not progress or rank != 0,
                   leave=False, dynamic_ncols=True)
        for real in bar:
            real = real.to(dev, non_blocking=True) * 2 - 1
            if options.hflip:
                flip = torch.rand(real.shape[0], device=dev) < 0.5
                real = torch.where(flip.view(-1, 1, 1, 1), real.flip(-1), real)
            noise = torch.randn(real.shape[0], options.latent_dim, device=dev)
            with autocast:
                fake = netG(noise)
                logits_real = netD(real)
                logits_fake = netD(fake.detach())
                loss_d = (F.binary_cross_entropy_with_logits(logits_real, torch.full_like(logits_real, options.real_label))
                          + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
            optD.zero_grad(set_to_none=True)
            loss_d.backward()
            optD.step()
            with autocast:
                logits_gen = netD(fake)
                loss_g = F.binary_cross_entropy_with_logits(logits_gen, torch.ones_like(logits_gen))
            optG.zero_grad(set_to_none=True)
            loss_g.backward()
            optG.step()
            sums["loss_d"] += loss_d.item()
            sums["loss_g"] += loss_g.item()
            sums["d_real"] += torch.sigmoid(logits_real.float()).mean().item()
            sums["d_fake"] += torch.sigmoid(logits_fake.float()).mean().item()
            steps += 1
            bar.set_postfix(loss_d=f"{loss_d.item():.3f}", loss_g=f"{loss_g.item():.3f}")
            if options.max_steps_per_epoch and steps >= options.max_steps_per_epoch:
                break
        if not math.isfinite(sums["loss_d"] + sums["loss_g"]):
            raise GanrevError(f"training diverged in epoch {epoch + 1} (non-finite loss); try a lower --lr")
        record = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()}}
        history.append(record)
        wall = wall_before + time.perf_counter() - started
        if rank == 0:
            _save_epoch(out, plainG, netD.module if world > 1 else netD, optG, optD, options,
                        split_sizes=(len(dataset), test_size),
                        epoch=epoch + 1, history=history, wall_s=wall, device=dev, fixed_noise=fixed_noise)
            if progress:
                tqdm.write(f"epoch {epoch + 1}/{options.epochs}: loss_d {record['loss_d']:.3f} "
                           f"loss_g {record['loss_g']:.3f} D(x) {record['d_real']:.3f} "
                           f"D(G(z)) {record['d_fake']:.3f} [{wall:.0f} s]")
    if world > 1:
        dist.barrier()
    return {"epochs": options.epochs, "history": history, "out": str(out)}


def _save_epoch(out: Path, netG: Generator, netD: Discriminator, optG: torch.optim.Optimizer,
                optD: torch.optim.Optimizer, options: TrainOptions, *, split_sizes: tuple[int, int], epoch: int,
                history: list[dict[str, float]], wall_s: float, device: torch.device,
                fixed_noise: torch.Tensor) -> None:
    netG.eval()
    with torch.no_grad():
        samples = netG.images(fixed_noise.to(device)).float().cpu()
    save_image(image_grid(samples), out / "samples" / f"epoch_{epoch:04d}.png")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    save_generator(netG, out, {
        "dataset": options.data,
        "split": {"rule": split_rule(options.data), "train_images": split_sizes[0],
                  "test_images": split_sizes[1]},
        "training": {"epochs": epoch, "wall_s": round(wall_s, 1), "device": device_name,
                     "torch": torch.__version__, "options": asdict(options), "last_epoch": history[-1]},
    })
    buffer = _io.BytesIO()
    torch.save({
        "options": asdict(options), "epoch": epoch, "history": history, "wall_s": wall_s,
        "generator": netG.state_dict(), "discriminator": netD.state_dict(),
        "opt_generator": optG.state_dict(), "opt_discriminator": optD.state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }, buffer)
    atomic_write_bytes(out / STATE_FILE, buffer.getvalue())
