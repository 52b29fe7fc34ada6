"""Train CompressAI's learned codecs (``ganrev fit-baseline compressai``) on the generator's data.

As CompressAI's ``examples/train.py`` does: the loss is ``λ·D + R``, R the estimated bits per pixel of every
latent (the likelihoods under the entropy models) and D the distortion -- ``mse`` is ``255²·MSE`` (so
CompressAI's published λ values mean the same here), any of :data:`ganrev.invert.LOSSES` (``ssim+l1``,
``ms-ssim``, ...) its per-image loss in [0, 1]. One Adam optimiser steps the networks, a second (the auxiliary
loss) the entropy bottleneck's quantiles; gradients are clipped at norm 1.

Validation groups are carved from the training side as for ``fit-generator``. Every epoch updates the entropy
models' CDF tables (``model.update``) and measures the real files of :class:`HyperpriorCodec` on up to
:data:`VALIDATION_FILES` validation images (bpp with every byte, SSIM of the decode); the epoch with the lowest
validation loss λ·D + R is kept in ``OUT/best/``. The latest nets + config.json, ``train_state.pt`` and a
sample picture are written atomically every epoch, so ``--resume`` goes on from the last one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ganrev.codecs.base import bits_per_pixel
from ganrev.data import (
    canonical_source,
    carve_validation,
    open_dataset,
    split_rule,
)
from ganrev.errors import GanrevError
from ganrev.invert import LOSSES, per_image_loss
from ganrev.io import save_image
from ganrev.metrics import ssim
from ganrev.models import weights_fingerprint
from ganrev.nets.checkpoint import save_baseline
from ganrev.nets.hyperprior import ARCHITECTURE, DEFAULT_LATENT_CHANNELS, MODELS, HyperpriorConfig, build_model
from ganrev.progress import progress_bar
from ganrev.training.common import (
    TimeBudget,
    choose_device,
    epoch_batches,
    epoch_line,
    epoch_record,
    epoch_seed,
    image_grid,
    read_train_state,
    resumed_options,
    save_latest_and_best,
    saved_progress,
    stack_images,
    training_device_name,
    write_train_state,
)

DISTORTIONS = ("mse", *LOSSES)
VALIDATION_FILES = 64  # validation images coded to real files each epoch (all of them would cost a minute)
CLIP_MAX_NORM = 1.0  # CompressAI's examples/train.py default
CLIP_SCOPE = "main"  # train_state.pt's mark of a run whose clip saw the main loss's gradient alone (see the loop)


@dataclass
class HyperpriorTrainOptions:
    """Everything that defines a CompressAI training run (recorded in its config.json)."""

    model: str = "mean"
    lmbda: float = 0.01
    loss: str = "mse"
    hidden_channels: int = 64
    latent_channels: int = DEFAULT_LATENT_CHANNELS
    data: str = "emoji"
    resolution: int = 64
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    aux_lr: float = 1e-3
    seed: int = 0
    hflip: bool = True
    max_steps_per_epoch: int | None = None  # for smoke tests
    validation: bool = True

    def __post_init__(self) -> None:
        checks = {
            "model": self.model in MODELS, "loss": self.loss in DISTORTIONS,
            "lmbda": math.isfinite(self.lmbda) and self.lmbda > 0,
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
            "lr": math.isfinite(self.lr) and self.lr > 0, "aux_lr": math.isfinite(self.aux_lr) and self.aux_lr > 0,
            "resolution": self.resolution >= 16,
            "max_steps_per_epoch": self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            allowed = {"model": ", ".join(MODELS), "loss": ", ".join(DISTORTIONS)}.get(bad[0], "see --help")
            raise GanrevError(f"invalid --{bad[0].replace('_', '-')} {getattr(self, bad[0])!r}: {allowed}")
        HyperpriorConfig(model=self.model, n=self.hidden_channels, m=self.latent_channels)  # checked now, not later

    @property
    def net_config(self) -> HyperpriorConfig:
        return HyperpriorConfig(model=self.model, n=self.hidden_channels, m=self.latent_channels)


def rate_bpp(likelihoods: dict[str, torch.Tensor], pixels: int) -> torch.Tensor:
    """Estimated bits per pixel of a batch: -log2 of every latent's likelihood, over the batch's pixels."""
    return sum(-torch.log2(values).sum() for values in likelihoods.values()) / pixels


class RateDistortionLoss:
    """``λ·D + R`` of a batch, with its parts (CompressAI's ``RateDistortionLoss``, ganrev's distortions too)."""

    def __init__(self, lmbda: float, distortion: str) -> None:
        self.lmbda = lmbda
        self.distortion = per_image_loss("l2") if distortion == "mse" else per_image_loss(distortion)
        self.scale = 255.0**2 if distortion == "mse" else 1.0

    def __call__(self, output: dict[str, Any], target: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, height, width = target.shape
        bpp = rate_bpp(output["likelihoods"], n * height * width)
        # not clamped: a clamp would stop the gradient wherever the untrained decoder overshoots [0, 1]
        distortion = self.scale * self.distortion(output["x_hat"], target).mean()
        return {"loss": self.lmbda * distortion + bpp, "bpp": bpp, "distortion": distortion}


def _optimizers(model: torch.nn.Module, options: HyperpriorTrainOptions) -> dict[str, torch.optim.Optimizer]:
    """CompressAI's split: the entropy bottleneck's quantiles step with the auxiliary loss only."""
    aux = [p for name, p in model.named_parameters() if name.endswith(".quantiles")]
    main = [p for name, p in model.named_parameters() if not name.endswith(".quantiles")]
    return {"main": torch.optim.Adam(main, lr=options.lr), "aux": torch.optim.Adam(aux, lr=options.aux_lr)}


def train_step(model: Any, optimizers: dict[str, torch.optim.Optimizer], criterion: RateDistortionLoss,
               real: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One step on a batch: the rate-distortion loss moves the main parameters (gradient clipped to
    :data:`CLIP_MAX_NORM`), then the auxiliary loss the entropy bottleneck's quantiles. Returns the loss's parts
    and the auxiliary loss."""
    parts = criterion(model(real), real)
    # Both optimisers' gradients go first, as in CompressAI's examples/train.py: the clip must see the main loss's
    # gradient alone. Left over from the last auxiliary step, the quantiles' gradient (norm ~100 once the aux loss
    # is large) made every clip scale the main gradient by ~1/100; Adam hid that while it lasted, but a resumed
    # run's first step, with no leftover, then moved every weight by ~3 lr and the loss jumped back to epoch 1's.
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_MAX_NORM)
    optimizers["main"].step()
    aux = model.aux_loss()
    aux.backward()
    optimizers["aux"].step()
    return parts, aux


@torch.no_grad()
def validate(model: Any, images: torch.Tensor, criterion: RateDistortionLoss, device: torch.device,
             batch: int = 64) -> dict[str, float]:
    """Estimated loss, bpp and distortion on ``images`` (eval mode: latents rounded, not noised)."""
    model.eval()
    sums = {"loss": 0.0, "bpp": 0.0, "distortion": 0.0}
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch].to(device)
        parts = criterion(model(chunk), chunk)
        for key in sums:
            sums[key] += float(parts[key]) * len(chunk)
    model.train()
    return {f"val_{key}": value / len(images) for key, value in sums.items()}


def measure_files(model: Any, config: HyperpriorConfig, images: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """Real files of ``model`` (CDF tables updated) for ``images``: mean bpp (every byte) and SSIM; the decodes."""
    from ganrev.codecs.hyperprior import (
        HyperpriorCodec,  # the codecs import the nets, never the training
    )

    model.eval()
    codec = HyperpriorCodec(model, config, weights_fingerprint(model.state_dict()))
    files = [codec.encode(image) for image in images]
    decoded = torch.stack([codec.decode(data) for data in files])
    model.train()
    bpp = sum(bits_per_pixel(len(data), images.shape[-1], images.shape[-2]) for data in files) / len(files)
    return {"val_file_bpp": bpp, "val_file_ssim": float(ssim(decoded, images).mean())}, decoded


def fit_hyperprior(options: HyperpriorTrainOptions, out_dir: str | os.PathLike[str], *, resume: bool = False,
                   device: str = "auto", progress: bool = True, max_minutes: float | None = None) -> dict[str, Any]:
    """Train (or resume) a CompressAI model; returns ``{"epochs", "out_of_time", "history", "out"}``.

    A resumed run keeps its saved options except ``epochs`` (the new total); ``max_minutes`` is a time budget
    for this call's epochs, as for ``fit_baseline``.
    """
    budget = TimeBudget(max_minutes)
    out = Path(out_dir)
    dev = choose_device(device)
    state: dict[str, Any] | None = None
    if resume:
        state = read_train_state(out)
        if state["options"].get("model") not in MODELS or "lmbda" not in state["options"]:
            raise GanrevError(f"--resume: {out} holds a {state['options'].get('model')!r} run, not a CompressAI one")
        if state.get("clip") != CLIP_SCOPE:
            raise GanrevError(f"--resume: {out} was trained before ganrev's CompressAI runs clipped the main "
                              "gradient alone; its optimiser state does not fit these steps (the loss would jump "
                              "back to its first epochs' level): start a new run")
        options = resumed_options(options, state["options"], changes=("epochs",))

    torch.manual_seed(options.seed)
    options = replace(options, data=canonical_source(options.data))
    dataset = open_dataset(options.data, "train", resolution=options.resolution, channels=3)
    fit, validation = carve_validation(dataset, options.data) if options.validation else (dataset, None)
    images = stack_images(fit)
    val_images = stack_images(validation) if validation is not None else images[:VALIDATION_FILES]
    batch_size = min(options.batch_size, len(images))

    model: Any = build_model(options.net_config).to(dev)
    optimizers = _optimizers(model, options)
    criterion = RateDistortionLoss(options.lmbda, options.loss)
    history, start_epoch, wall_before = saved_progress(state)
    if state is not None:
        model.load_state_dict(state["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
    rng = torch.Generator()
    started = time.perf_counter()
    budget.start()
    out_of_time = False
    for epoch in range(start_epoch, options.epochs):
        # Order, flips and the entropy models' training noise (drawn from torch's global generator) depend on
        # (seed, epoch) alone: a resumed run matches a straight one.
        rng.manual_seed(epoch_seed(options.seed, epoch))
        torch.manual_seed(epoch_seed(options.seed, epoch))
        batches = epoch_batches(len(images), batch_size, options.max_steps_per_epoch, rng)
        sums = {"loss": 0.0, "bpp": 0.0, "distortion": 0.0, "aux": 0.0}
        model.train()
        bar = progress_bar(batches, f"epoch {epoch + 1}/{options.epochs}", progress)
        for index in bar:
            real = images[index]
            if options.hflip:
                flip = (torch.rand(len(real), generator=rng) < 0.5).view(-1, 1, 1, 1)
                real = torch.where(flip, real.flip(-1), real)
            parts, aux = train_step(model, optimizers, criterion, real.to(dev))
            for key in ("loss", "bpp", "distortion"):
                sums[key] += parts[key].item()
            sums["aux"] += aux.item()
            bar.set_postfix(loss=f"{parts['loss'].item():.4f}", bpp=f"{parts['bpp'].item():.3f}")
        record = epoch_record(epoch + 1, sums, len(batches), watched=("loss",))
        record |= validate(model, val_images, criterion, dev)
        model.update(force=True)  # the CDF tables the files are coded with: before anything is written
        figures, decoded = measure_files(model, options.net_config, val_images[:VALIDATION_FILES])
        record |= figures
        history.append(record)
        wall = wall_before + time.perf_counter() - started
        _save_epoch(out, model, optimizers, options, history, wall, dev, train_images=len(dataset),
                    fit_images=len(images), validation_images=len(val_images))
        save_image(image_grid(torch.cat([val_images[:8], decoded[:8]])), out / "samples" / f"epoch_{epoch + 1:04d}.png")
        if progress:
            tqdm.write(epoch_line(record, options.epochs, f"{wall:.0f} s"))
        if epoch + 1 < options.epochs and budget.spent(dev):
            out_of_time = True
            break
    last = history[-1]["epoch"] if history else options.epochs
    return {"epochs": int(last), "out_of_time": out_of_time, "history": history, "out": str(out)}


def _save_epoch(out: Path, model: Any, optimizers: dict[str, torch.optim.Optimizer], options: HyperpriorTrainOptions,
                history: list[dict[str, float]], wall_s: float, device: torch.device, *, train_images: int,
                fit_images: int, validation_images: int) -> None:
    epoch = int(history[-1]["epoch"])
    metadata = {
        "codec": {"name": MODELS[options.model], "lmbda": options.lmbda, "loss": options.loss},
        "dataset": options.data,
        "split": {"rule": split_rule(options.data), "train_images": train_images},
        "training": {"epochs": epoch, "wall_s": round(wall_s, 1), "device": training_device_name(device),
                     "precision": "fp32", "torch": torch.__version__, "options": asdict(options),
                     "fit_images": fit_images, "validation_images": validation_images, "last_epoch": history[-1]},
    }
    net_config = asdict(options.net_config)

    def save(directory: Path, meta: dict[str, Any]) -> None:
        save_baseline(directory, ARCHITECTURE, net_config, {"model": model}, meta)

    save_latest_and_best(out, metadata, history, save, figure="val_loss", lower_is_better=True)
    write_train_state(out, options, epoch, history, wall_s, model=model.state_dict(),
                      optimizers={k: v.state_dict() for k, v in optimizers.items()}, clip=CLIP_SCOPE)
