"""Train the seeds' learned baselines (``ganrev fit-baseline {arcnn,comcnn}``) on real codec outputs.

- ``arcnn`` (seed 004): AR-CNN + ASPP learns to restore ``JPEG(x)`` to ``x``, at one quality (the seed's
  per-quality model) or, blind, at several. The JPEG files are the very ones :class:`ganrev.codecs.classical.JPEGCodec`
  writes, made once before training.
- ``comcnn`` (seed 003): ComCNN and RecCNN are trained alternately, as the paper does (one is held fixed while
  the other steps): RecCNN on real codec outputs, ``Re(up(JPEG(Cr(x))))`` against ``x``; then ComCNN through
  the fixed RecCNN with the non-differentiable codec bypassed -- a virtual codec whose forward pass is the real
  JPEG round trip and whose gradient is the identity (straight-through), so ComCNN learns under the artefacts it
  will meet. Each batch draws its JPEG quality from ``qualities``, so one pair of nets serves a quality sweep.

Losses: the seed's MSE (``--loss l2``) or a structural one (``ssim+l1``, the default; any of
:data:`ganrev.invert.LOSSES`). Validation groups are carved from the training side (never the test split); the
epoch with the best validation SSIM is kept in ``OUT/best/``. Every epoch writes the latest nets + config.json,
``train_state.pt`` (read back with ``torch.load(weights_only=True)``) and a sample picture, atomically, so a
kill loses at most that epoch and ``--resume`` goes on from the last one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ganrev.codecs.classical import JPEGCodec
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
from ganrev.nets import arcnn, comcnn
from ganrev.nets.checkpoint import save_baseline
from ganrev.nets.hyperprior import latent_channels_for
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
from ganrev.training.hyperprior import HyperpriorTrainOptions, fit_hyperprior

MODELS = ("arcnn", "comcnn")
ALL_MODELS = (*MODELS, "compressai")  # what `fit-baseline MODEL` takes: compressai is ganrev.training.hyperprior
DEFAULT_QUALITIES = {"arcnn": (10,), "comcnn": (5, 10, 20, 30, 50)}


@dataclass
class BaselineTrainOptions:
    """Everything that defines a learned-baseline training run (recorded in its config.json)."""

    model: str = "arcnn"
    data: str = "emoji"
    resolution: int = 64
    channels: int = 3
    # JPEG qualities trained on, one drawn per batch (None: the model's default). An ARCNN with one quality is
    # that quality's model (the seed's); with several, a blind model for a quality sweep. ComCNN/RecCNN: the
    # qualities its compact image is stored at.
    qualities: tuple[int, ...] | None = None
    loss: str = "ssim+l1"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    hflip: bool = True
    max_steps_per_epoch: int | None = None  # for smoke tests
    validation: bool = True

    def __post_init__(self) -> None:
        if self.qualities is None:
            self.qualities = DEFAULT_QUALITIES.get(self.model, (10,))
        self.qualities = tuple(int(q) for q in self.qualities)
        checks = {
            "model": self.model in MODELS,
            "loss": self.loss in LOSSES,
            "qualities": bool(self.qualities) and all(1 <= q <= 100 for q in self.qualities),
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
            "lr": math.isfinite(self.lr) and self.lr > 0,
            "channels": self.channels in (1, 3), "resolution": self.resolution >= 8,
            "max_steps_per_epoch": self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            allowed = {"model": ", ".join(MODELS), "loss": ", ".join(LOSSES),
                       "qualities": "1-100 each"}.get(bad[0], "see `ganrev fit-baseline --help`")
            # as the user typed it: MODEL is an argument, --quality takes the qualities
            name = {"model": "model", "qualities": "--quality"}.get(bad[0], f"--{bad[0].replace('_', '-')}")
            raise GanrevError(f"invalid {name} {getattr(self, bad[0])!r}: {allowed}")


def jpeg_round_trip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image of ``[N, C, H, W]`` through a real JPEG file at ``quality`` (:class:`JPEGCodec`, 4:2:0)."""
    codec = JPEGCodec(quality)
    return torch.stack([codec.decode(codec.encode(image)) for image in images.detach().cpu()]).to(images.device)


class _Nets:
    """The networks, optimisers and one training step of a model, behind one interface for the loop."""

    def __init__(self, options: BaselineTrainOptions, device: torch.device) -> None:
        self.options, self.device = options, device
        self.loss = per_image_loss(options.loss)
        if options.model == "arcnn":
            self.config: Any = arcnn.ArcnnConfig(channels=options.channels)
            self.architecture = arcnn.ARCHITECTURE
            self.nets: dict[str, nn.Module] = {"arcnn": arcnn.ArcnnAspp(self.config)}
        else:
            self.config = comcnn.ComCnnConfig(channels=options.channels)
            self.architecture = comcnn.ARCHITECTURE
            self.nets = {"comcnn": comcnn.ComCNN(self.config), "reccnn": comcnn.RecCNN(self.config)}
        for net in self.nets.values():
            net.to(device)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), lr=options.lr) for name, net in self.nets.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
            self.optimizers[name].load_state_dict(state["optimizers"][name])

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)

    def _step(self, name: str, loss: torch.Tensor) -> None:
        self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[name].step()

    def step(self, real: torch.Tensor, coded: torch.Tensor | None, quality: int) -> dict[str, float]:
        """One update from originals ``real`` (and, for arcnn, their JPEG decodes ``coded``)."""
        if self.options.model == "arcnn":
            loss = self.loss(self.nets["arcnn"](coded), real).mean()
            self._step("arcnn", loss)
            return {"loss": loss.item()}
        com, rec = self.nets["comcnn"], self.nets["reccnn"]
        height, width = real.shape[-2:]
        # RecCNN on real codec outputs, ComCNN held fixed.
        with torch.no_grad():
            decoded = jpeg_round_trip(com(real), quality)
        rec_loss = self.loss(rec(comcnn.upscale(decoded, height, width)), real).mean()
        self._step("reccnn", rec_loss)
        # ComCNN through the fixed RecCNN; the codec's forward is real, its gradient the identity.
        rec.requires_grad_(False)
        compact = com(real)
        virtual = compact + (jpeg_round_trip(compact, quality) - compact).detach()
        com_loss = self.loss(rec(comcnn.upscale(virtual, height, width)), real).mean()
        self._step("comcnn", com_loss)
        rec.requires_grad_(True)
        return {"loss": rec_loss.item(), "com_loss": com_loss.item()}

    @torch.no_grad()
    def restore(self, images: torch.Tensor, quality: int, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """(plain codec output, the model's output) for ``images`` at ``quality``, in eval mode, clamped."""
        self.train(False)
        plain, restored = [], []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch].to(self.device)
            if self.options.model == "arcnn":
                coded = jpeg_round_trip(chunk, quality)
                out = self.nets["arcnn"](coded)
            else:
                height, width = chunk.shape[-2:]
                small = torch.nn.functional.avg_pool2d(chunk, 2, ceil_mode=True)
                coded = comcnn.upscale(jpeg_round_trip(small, quality), height, width)
                compact = jpeg_round_trip(self.nets["comcnn"](chunk), quality)
                out = self.nets["reccnn"](comcnn.upscale(compact, height, width))
            plain.append(coded.clamp(0, 1).cpu())
            restored.append(out.clamp(0, 1).cpu())
        self.train(True)
        return torch.cat(plain), torch.cat(restored)


def fit_baseline(options: BaselineTrainOptions, out_dir: str | os.PathLike[str], *, resume: bool = False,
                 device: str = "auto", progress: bool = True, max_minutes: float | None = None) -> dict[str, Any]:
    """Train (or resume) ``options.model``; returns ``{"epochs", "out_of_time", "history", "out"}``.

    A resumed run keeps its saved options except ``epochs`` (the new total). ``max_minutes``: a time budget
    for this call's epochs (:class:`~ganrev.training.common.TimeBudget`); ``epochs`` in the summary is the
    last epoch trained, ``out_of_time`` whether the budget stopped the run before ``options.epochs``.
    """
    budget = TimeBudget(max_minutes)
    out = Path(out_dir)
    dev = choose_device(device)
    state: dict[str, Any] | None = None
    if resume:
        state = read_train_state(out)
        if state["options"].get("model") != options.model:
            raise GanrevError(f"--resume: {out} holds a {state['options'].get('model')!r} run, not {options.model!r}")
        options = resumed_options(options, state["options"], changes=("epochs",))

    torch.manual_seed(options.seed)
    options = replace(options, data=canonical_source(options.data))
    dataset = open_dataset(options.data, "train", resolution=options.resolution, channels=options.channels)
    fit, validation = carve_validation(dataset, options.data) if options.validation else (dataset, None)
    images = stack_images(fit)
    val_images = stack_images(validation) if validation is not None else None
    # ARCNN's inputs are fixed: each training image's JPEG decode at each quality, made once (kept as uint8).
    coded_images = {q: (jpeg_round_trip(images, q) * 255).round().to(torch.uint8) for q in options.qualities} \
        if options.model == "arcnn" else {}
    batch_size = min(options.batch_size, len(images))
    val_quality = options.qualities[len(options.qualities) // 2]

    nets = _Nets(options, dev)
    history, start_epoch, wall_before = saved_progress(state)
    if state is not None:
        nets.load_state_dict(state)
    rng = torch.Generator()
    started = time.perf_counter()
    budget.start()
    out_of_time = False
    for epoch in range(start_epoch, options.epochs):
        # The epoch's order, flips and qualities depend on (seed, epoch) alone: a resumed run matches a straight one.
        rng.manual_seed(epoch_seed(options.seed, epoch))
        batches = epoch_batches(len(images), batch_size, options.max_steps_per_epoch, rng)
        sums: dict[str, float] = {}
        nets.train(True)
        bar = progress_bar(batches, f"epoch {epoch + 1}/{options.epochs}", progress)
        for index in bar:
            real = images[index]
            quality = options.qualities[int(torch.randint(len(options.qualities), (1,), generator=rng))]
            coded = coded_images[quality][index].float() / 255 if coded_images else None
            if options.hflip:
                flip = (torch.rand(len(index), generator=rng) < 0.5).view(-1, 1, 1, 1)
                real = torch.where(flip, real.flip(-1), real)
                # 64-pixel-wide images flip onto the same 8x8 block grid, so a flipped JPEG decode is a faithful input.
                coded = torch.where(flip, coded.flip(-1), coded) if coded is not None else None
            figures = nets.step(real.to(dev), coded.to(dev) if coded is not None else None, quality)
            for key, value in figures.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({key: f"{value:.4f}" for key, value in figures.items()})
        record = epoch_record(epoch + 1, sums, len(batches))
        samples = None
        if val_images is not None:
            plain, restored = nets.restore(val_images, val_quality)
            record["val_ssim"] = float(ssim(restored, val_images).mean())
            record["val_ssim_plain"] = float(ssim(plain, val_images).mean())
            samples = torch.cat([val_images[:8], plain[:8], restored[:8]])  # originals, plain codec, restored
        history.append(record)
        wall = wall_before + time.perf_counter() - started
        _save_epoch(out, nets, options, history, wall, dev, val_images, val_quality, samples,
                    train_images=len(dataset), fit_images=len(images))
        if progress:
            tqdm.write(epoch_line(record, options.epochs, f"{wall:.0f} s"))
        if epoch + 1 < options.epochs and budget.spent(dev):
            out_of_time = True
            break
    last = history[-1]["epoch"] if history else options.epochs
    return {"epochs": int(last), "out_of_time": out_of_time, "history": history, "out": str(out)}


def _save_epoch(out: Path, nets: _Nets, options: BaselineTrainOptions, history: list[dict[str, float]],
                wall_s: float, device: torch.device, val_images: torch.Tensor | None, val_quality: int,
                samples: torch.Tensor | None, *, train_images: int, fit_images: int) -> None:
    epoch = int(history[-1]["epoch"])
    if samples is not None:
        save_image(image_grid(samples), out / "samples" / f"epoch_{epoch:04d}.png")
    device_name = training_device_name(device)
    codec = {"name": "jpeg", "qualities": list(options.qualities), "subsampling": "4:2:0",
             "scale": 1 if options.model == "arcnn" else 2}
    metadata = {
        "codec": codec, "dataset": options.data,
        "split": {"rule": split_rule(options.data), "train_images": train_images},
        "training": {"epochs": epoch, "wall_s": round(wall_s, 1), "device": device_name, "torch": torch.__version__,
                     "options": asdict(options), "fit_images": fit_images,
                     "validation_images": len(val_images) if val_images is not None else 0,
                     "validation_quality": val_quality, "last_epoch": history[-1]},
    }
    net_config = asdict(nets.config)

    def save(directory: Path, meta: dict[str, Any]) -> None:
        save_baseline(directory, nets.architecture, net_config, nets.nets, meta)

    save_latest_and_best(out, metadata, history, save, figure="val_ssim")
    write_train_state(out, options, epoch, history, wall_s, **nets.state_dict())


def options_for(model: str, *, quality: str | None = None, lr: float | None = None, lmbda: float | None = None,
                compressai_model: str = "mean", hidden_channels: int = 64, latent_channels: int | None = None,
                channels: int = 3, **common: Any) -> BaselineTrainOptions | HyperpriorTrainOptions:
    """``fit-baseline MODEL``'s options, checked: the options one kind of model takes are refused for the other.

    ``quality``: arcnn/comcnn's JPEG qualities as typed ("10" or "5,10,20"); ``common``: data, resolution, loss,
    epochs, batch_size, seed, hflip, validation, max_steps_per_epoch.
    """
    if model not in ALL_MODELS:
        raise GanrevError(f"invalid model {model!r}: {', '.join(ALL_MODELS)}")
    if model == "compressai":
        if quality is not None:
            raise GanrevError("--quality is for arcnn and comcnn: a CompressAI model's rate is set by --lmbda")
        if channels != 3:
            raise GanrevError(f"invalid --channels {channels}: CompressAI's models code RGB images")
        return HyperpriorTrainOptions(model=compressai_model, lmbda=0.01 if lmbda is None else lmbda,
                                      hidden_channels=hidden_channels,
                                      latent_channels=latent_channels_for(compressai_model, latent_channels,
                                                                          hidden_channels),
                                      lr=1e-4 if lr is None else lr, **common)
    if lmbda is not None:
        raise GanrevError(f"--lmbda is for compressai models: {model} is trained at a JPEG --quality")
    try:
        qualities = tuple(int(q) for q in quality.split(",")) if quality is not None else None
    except ValueError:
        raise GanrevError(f"invalid --quality {quality!r}: an integer 1-100, or several comma-separated") from None
    return BaselineTrainOptions(model=model, qualities=qualities, channels=channels, lr=1e-3 if lr is None else lr,
                                **common)


def train_baseline(options: BaselineTrainOptions | HyperpriorTrainOptions, out_dir: str | os.PathLike[str],
                   **kwargs: Any) -> dict[str, Any]:
    """:func:`fit_baseline` or :func:`ganrev.training.hyperprior.fit_hyperprior`, by the options' kind."""
    if isinstance(options, HyperpriorTrainOptions):
        return fit_hyperprior(options, out_dir, **kwargs)
    return fit_baseline(options, out_dir, **kwargs)
