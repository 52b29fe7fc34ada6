"""Train a generator (``ganrev fit-generator``): checkpoints every epoch, resume, samples, validation.

Two objectives share the loop (data, epochs, checkpoints, resume):
- ``gan``: the plain DCGAN game of pytorch/examples (BCE, Adam 2e-4 / beta1 0.5, one-sided label smoothing);
  it draws domain-like images but does not cover its own data, so latent search cannot reproduce an image.
- ``aegan`` (default): G is trained *to reconstruct*, jointly with an encoder E: a reconstruction loss on
  G(E(x)) vs x, a moment-matching penalty that keeps E(x) distributed like the N(0, I) prior the range coder
  assumes, and -- after ``adv_warmup`` reconstruction-only epochs, as HiFiC does -- a hinge adversarial loss
  on G(z), z ~ N(0, I), and on G(E(x)) against a spectral-norm discriminator trained on DiffAugment'ed
  real images vs G(z), so G stays a generator. G and E are averaged (EMA); the checkpoint holds the averages.

Output directory layout:
- ``generator.safetensors`` (+ ``encoder.safetensors``) + ``config.json``: the latest model, loadable by
  :func:`ganrev.models.load_generator`;
- ``best/``: the same for the epoch with the best validation reconstruction SSIM (``aegan`` with a
  validation split: groups carved from the training side, never the test split);
- ``density.safetensors`` (``aegan``, in both, once training ends): the density of E(x) that ``ganrev
  generate`` samples from (:mod:`ganrev.density`; ``ganrev fit-density`` adds it to an interrupted run);
- ``train_state.pt``: all networks, optimisers, epoch, history and RNG state, for ``--resume``
  (read with ``torch.load(weights_only=True)``, which never unpickles code);
- ``samples/epoch_NNNN.png``: an 8x8 grid from fixed noise after each epoch (``aegan``: and
  ``samples/recon_NNNN.png``, validation images above their reconstructions E -> G).

Every file is written atomically at the end of an epoch, so a kill or Ctrl-C loses at most that epoch.
Started under ``torchrun`` with several processes, training is data-parallel (DDP); rank 0 writes files.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ganrev.augment import diff_augment, reconstruction_augment
from ganrev.data import (
    EmptySplitError,
    ImageSet,
    canonical_source,
    carve_validation,
    export_heldout,
    open_dataset,
    split_rule,
)
from ganrev.density import fit_checkpoint_density
from ganrev.errors import GanrevError
from ganrev.evaluate.card import describe_generator, fit_command
from ganrev.evaluate.runs import HELDOUT_DIR
from ganrev.invert import LOSSES, per_image_loss
from ganrev.io import save_image
from ganrev.metrics import ssim
from ganrev.models import CONFIG_FILE, attach_density, load_generator, save_generator
from ganrev.nets.dcgan import Discriminator, Encoder, Generator, GeneratorConfig, init_weights
from ganrev.pretrained import DEFAULT_GENERATOR, load_named_generator, read_config, resolve_generator_path
from ganrev.progress import progress_bar
from ganrev.training.common import (
    BEST_DIR,
    TimeBudget,
    autocast_for,
    choose_device,
    epoch_line,
    epoch_record,
    epoch_seed,
    image_grid,
    read_train_state,
    resolve_precision,
    resumed_options,
    save_latest_and_best,
    saved_progress,
    stack_images,
    training_device_name,
    write_train_state,
)

OBJECTIVES = ("aegan", "gan")
RECON_LOSSES = LOSSES


# The recipe of emoji64-google-twitter, the previous default, trained from scratch (docs/results.md, Generalisation;
# docs/training.md; the shipped emoji64 is that generator fine-tuned on a third vendor): the aegan defaults. A
# latent of 160 at 4 bits beat 100 at 6 and 128 at 5 at equal bytes on validation groups (+0.027 / +0.009 SSIM);
# width 48 memorised more than 32 and did worse; adversarial weight 0 with latent noise 0.2 and Adam (2e-3,
# beta2 0.99) with a cool-down over the last 20 of 150 epochs gave its figures.
AEGAN_DEFAULTS = {"latent_dim": 160, "width": 32, "disc_width": 32, "lr": 2e-3, "beta2": 0.99}
# The plain DCGAN game keeps pytorch/examples' settings (the seed's emoji64-gan).
GAN_DEFAULTS = {"latent_dim": 100, "width": 64, "disc_width": 64, "lr": 2e-4, "beta2": 0.999}
# Half of each batch decoded from its codes' first k coordinates: the shipped emoji64's fine-tuning (60 epochs from
# runs/gen-3v) kept validation SSIM at the default rate within +-0.002 per vendor and made files of its first 48-96
# coordinates good at 0.06-0.12 bpp (0.779 SSIM within 51 bytes on validation, against 0.691 for whole latents):
# one generator for every rate (docs/results.md, Any rate from one generator).
DEFAULT_NESTED_DROPOUT = 0.5
DEFAULT_STEPS = 14_000
"""A run's length when ``epochs`` is not given: as many epochs as make this many optimiser steps,
emoji64-google-twitter's length (150 epochs of 5,960 images in batches of 64: 13,950 steps; 62 min of bf16 on a
2-core AMD EPYC with AVX-512 BF16). With a time budget the run plans fewer epochs to fit it (:func:`plan_epochs`)."""
COOLDOWN_SHARE = 2 / 15
"""The share of a run's epochs that cool down when ``cooldown`` is not given: emoji64-google-twitter's 20 of 150."""


@dataclass
class TrainOptions:
    """Everything that defines a training run (recorded in the checkpoint's config.json). Fields left None take
    their objective's default (:data:`AEGAN_DEFAULTS`, :data:`GAN_DEFAULTS`) on construction; ``epochs`` and
    ``cooldown`` are settled once the data's size (and a time budget) are known, by :func:`fit_generator`."""

    data: str = "emoji"
    resolution: int = 64
    channels: int = 3
    latent_dim: int | None = None
    width: int | None = None
    disc_width: int | None = None
    epochs: int | None = None  # None: DEFAULT_STEPS worth of epochs (fewer to fit a time budget)
    batch_size: int = 64
    lr: float | None = None  # Adam step for G (and E); for gan also D
    beta1: float = 0.5
    beta2: float | None = None  # Adam's second-moment decay for G, E and D (0.99 follows a changing loss faster)
    seed: int = 0
    hflip: bool = True  # random horizontal flips: cheap augmentation that helps small sets like emoji
    augment: bool = False  # aegan: zoom/rotate/shift and channel-order changes of the training images
    real_label: float = 0.9  # gan: one-sided label smoothing (Salimans et al. 2016) steadies D on small sets
    max_steps_per_epoch: int | None = None  # for smoke tests
    objective: str = "aegan"
    # (1 - SSIM) + L1: in full-length runs (72 epochs) 0.011 more SSIM on validation emoji after the CLI's default
    # search than MS-SSIM + L1, the short loss study's pick (README, Which loss), which keeps a slight lead in
    # MS-SSIM and LPIPS. The engine chooses files by SSIM.
    recon_loss: str = "ssim+l1"
    adv_weight: float = 0.0  # aegan: weight of the adversarial term against the reconstruction loss
    adv_warmup: int = 10  # aegan: reconstruction-only epochs before the adversarial term starts
    prior_weight: float = 0.1  # aegan: weight of the moment-matching penalty on E(x)
    latent_noise: float = 0.2  # aegan: std of Gaussian noise added to E(x) before G in training (0: none)
    # aegan: the share of each batch whose codes keep only their first k coordinates (k uniform in
    # [NESTED_MIN_LATENTS, latent_dim)), the rest set to the prior's mean 0, as files that code fewer coordinates
    # decode (nested dropout, Rippel et al. 2014): the leading coordinates learn to carry the most (0: off).
    # None: DEFAULT_NESTED_DROPOUT for aegan, 0 for gan (whose G has no codes to drop).
    nested_dropout: float | None = None
    encoder_width: int | None = None  # aegan: None = width
    disc_lr: float | None = None  # aegan: None = 2e-4
    disc_steps: int = 1  # aegan: discriminator updates per generator update (SN-GAN uses 5)
    ema: float = 0.995  # aegan: decay of the weight average of G and E (0: no averaging)
    cooldown: int | None = None  # the last N epochs' steps fall linearly towards zero (None: COOLDOWN_SHARE of them)
    validation: bool = True  # aegan: carve a validation split from the training side to pick the best epoch
    # aegan: a generator checkpoint (path or name) whose G and E start this run instead of random weights, with the
    # same latent size and widths; "auto": the shipped default generator where this run's shape is its shape, else
    # random weights (None). Measured on 2,305 logos (a folder of another kind), 20 minutes on one CPU thread: 200
    # held-out logos at 0.17 bpp got SSIM 0.911 started from emoji64, 0.787 from random weights (docs/training.md).
    init_from: str | None = "auto"

    def __post_init__(self) -> None:
        defaults = GAN_DEFAULTS if self.objective == "gan" else AEGAN_DEFAULTS
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.nested_dropout is None:
            self.nested_dropout = 0.0 if self.objective == "gan" else DEFAULT_NESTED_DROPOUT
        checks = {
            "objective": self.objective in OBJECTIVES,
            "recon_loss": self.recon_loss in RECON_LOSSES,
            "epochs": self.epochs is None or self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr is None or (math.isfinite(self.lr) and self.lr > 0),
            "disc_lr": self.disc_lr is None or (math.isfinite(self.disc_lr) and self.disc_lr > 0),
            "beta1": math.isfinite(self.beta1) and 0 <= self.beta1 < 1,
            "beta2": math.isfinite(self.beta2) and 0 <= self.beta2 < 1,
            "real_label": math.isfinite(self.real_label) and 0 < self.real_label <= 1,
            "adv_weight": math.isfinite(self.adv_weight) and self.adv_weight >= 0,
            "adv_warmup": self.adv_warmup >= 0, "disc_steps": self.disc_steps >= 1,
            "prior_weight": math.isfinite(self.prior_weight) and self.prior_weight >= 0,
            "latent_noise": math.isfinite(self.latent_noise) and self.latent_noise >= 0,
            "nested_dropout": math.isfinite(self.nested_dropout) and 0 <= self.nested_dropout <= 1,
            "ema": math.isfinite(self.ema) and 0 <= self.ema < 1,
            "cooldown": self.cooldown is None or 0 <= self.cooldown <= (self.epochs or self.cooldown),
            "width": self.width >= 1 and self.disc_width >= 1 and (self.encoder_width or 1) >= 1,
            "latent_dim": self.latent_dim >= 1,
            "max_steps_per_epoch": self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if self.init_from not in (None, "auto") and self.objective != "aegan":
            bad.insert(0, "init_from")
        if bad:
            name = bad[0]
            allowed = {"objective": ", ".join(OBJECTIVES), "recon_loss": ", ".join(RECON_LOSSES)}.get(
                name, "see `ganrev fit-generator --help` for the valid range")
            raise GanrevError(f"invalid --{name.replace('_', '-')} {getattr(self, name)!r}: {allowed}")

    @property
    def generator_lr(self) -> float:
        assert self.lr is not None  # set on construction
        return self.lr

    @property
    def discriminator_lr(self) -> float:
        """aegan's D step (gan uses :attr:`generator_lr` for both, as pytorch/examples does)."""
        return self.disc_lr if self.disc_lr is not None else 2e-4

    @property
    def adam_betas(self) -> tuple[float, float]:
        assert self.beta2 is not None  # set on construction
        return self.beta1, self.beta2

    @property
    def cooldown_epochs(self) -> int:
        """The epochs that cool down: ``cooldown``, or :data:`COOLDOWN_SHARE` of ``epochs`` when not given."""
        assert self.epochs is not None, "epochs are settled by fit_generator"
        return self.cooldown if self.cooldown is not None else round(self.epochs * COOLDOWN_SHARE)

    def step_scale(self, epoch: int) -> float:
        """The factor on every step size in ``epoch`` (0-based): 1, then over the last N = ``cooldown_epochs``
        epochs N/(N+1), ..., 1/(N+1). Decided by the epoch alone, so a resumed run (which may change ``epochs`` and
        ``cooldown``) steps as an uninterrupted one with those settings would."""
        assert self.epochs is not None, "epochs are settled by fit_generator"
        cooldown = self.cooldown_epochs
        first = self.epochs - cooldown
        return 1.0 if epoch < first else (self.epochs - epoch) / (cooldown + 1)


def starting_checkpoint(options: TrainOptions) -> str | None:
    """The checkpoint a new run starts from: ``options.init_from``, with ``auto`` resolved to the shipped default
    generator when this run's architecture is exactly its architecture (aegan, resolution, channels, latent size,
    generator and encoder widths), else None (random weights)."""
    if options.init_from != "auto":
        return options.init_from
    if options.objective != "aegan":
        return None
    try:
        config = read_config(resolve_generator_path(DEFAULT_GENERATOR) / CONFIG_FILE)
    except GanrevError:
        return None  # no default generator installed: random weights
    shipped = (config.get("resolution"), config.get("channels"), config.get("latent_dim"), config.get("width"),
               (config.get("encoder") or {}).get("width"))
    mine = (options.resolution, options.channels, options.latent_dim, options.width,
            options.encoder_width or options.width)
    return DEFAULT_GENERATOR if shipped == mine else None


def default_epochs(steps_per_epoch: int) -> int:
    """Epochs of ``steps_per_epoch`` steps that make about :data:`DEFAULT_STEPS` steps."""
    return max(1, round(DEFAULT_STEPS / max(1, steps_per_epoch)))


def plan_epochs(options: TrainOptions, requested: int, done: int, seconds_per_epoch: float,
                seconds_left: float) -> int:
    """The epochs a run with a time budget plans in all, after ``done`` epochs that took ``seconds_per_epoch``
    each, with ``seconds_left`` of the budget: the ``requested`` length where it fits, else as many epochs as fit
    (at least one more). Each epoch re-plans, so a first slow epoch's estimate is corrected, up or down, until the
    cool-down of the current plan (``options.epochs``) has begun; from then on the plan stands, so the steps only
    ever fall."""
    assert options.epochs is not None
    if done >= options.epochs - options.cooldown_epochs:
        return options.epochs
    fits = done + max(1, int(seconds_left // max(seconds_per_epoch, 1e-9)))
    return min(requested, fits)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun with >1 process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


class GanObjective:
    """The DCGAN game of pytorch/examples: BCE-with-logits, one-sided label smoothing, one D and one G step."""

    def __init__(self, options: TrainOptions, device: torch.device) -> None:
        self.options, self.device = options, device
        cfg = GeneratorConfig(options.latent_dim, options.channels, options.resolution, options.width)
        self.netG = Generator(cfg).to(device)
        self.netD = Discriminator(GeneratorConfig(options.latent_dim, options.channels, options.resolution,
                                                  options.disc_width)).to(device)
        self.netG.apply(init_weights)
        self.netD.apply(init_weights)
        betas = options.adam_betas
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=options.generator_lr, betas=betas)
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=options.generator_lr, betas=betas)

    def wrap_ddp(self) -> None:
        self.netG = nn.parallel.DistributedDataParallel(self.netG)  # type: ignore[assignment]
        self.netD = nn.parallel.DistributedDataParallel(self.netD)  # type: ignore[assignment]

    def set_step_scale(self, scale: float) -> None:
        _set_lr(self.optG, self.options.generator_lr * scale)
        _set_lr(self.optD, self.options.generator_lr * scale)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": _plain(self.netG).state_dict(), "discriminator": _plain(self.netD).state_dict(),
                "opt_generator": self.optG.state_dict(), "opt_discriminator": self.optD.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _plain(self.netG).load_state_dict(state["generator"])
        _plain(self.netD).load_state_dict(state["discriminator"])
        self.optG.load_state_dict(state["opt_generator"])
        self.optD.load_state_dict(state["opt_discriminator"])

    def shipped(self) -> tuple[Generator, Encoder | None]:
        return _plain(self.netG), None

    def train(self) -> None:
        self.netG.train()
        self.netD.train()

    def step(self, real: torch.Tensor, epoch: int, autocast: Any) -> dict[str, float]:
        """One D and one G update on a batch of real images in [-1, 1]; returns the batch's figures."""
        options, netG, netD = self.options, self.netG, self.netD
        noise = torch.randn(real.shape[0], options.latent_dim, device=self.device)
        with autocast:
            fake = netG(noise)
            logits_real = netD(real)
            logits_fake = netD(fake.detach())
            loss_d = (F.binary_cross_entropy_with_logits(logits_real, torch.full_like(logits_real, options.real_label))
                      + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
        self.optD.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optD.step()
        with autocast:
            logits_gen = netD(fake)
            loss_g = F.binary_cross_entropy_with_logits(logits_gen, torch.ones_like(logits_gen))
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                "d_real": torch.sigmoid(logits_real.float()).mean().item(),
                "d_fake": torch.sigmoid(logits_fake.float()).mean().item()}


class AeganObjective:
    """Reconstruction-trained DCGAN generator + encoder (see the module docstring).

    Per step: E and G descend ``recon(G(E(x)), x) + prior_weight * moments(E(x))
    + adv_weight * hinge_G(D(aug(G(z))), D(aug(G(E(x)))))``; D (spectral norm, hinge loss) descends
    ``hinge_D`` on augmented real vs augmented G(z). G runs once on ``[E(x); z]`` so its batch-norm
    statistics mix both, as they will at decode time (E(x) ~ z by the prior penalty).
    """

    def __init__(self, options: TrainOptions, device: torch.device) -> None:
        self.options, self.device = options, device
        cfg = GeneratorConfig(options.latent_dim, options.channels, options.resolution, options.width)
        enc_cfg = GeneratorConfig(options.latent_dim, options.channels, options.resolution,
                                  options.encoder_width or options.width)
        disc_cfg = GeneratorConfig(options.latent_dim, options.channels, options.resolution, options.disc_width)
        self.netG, self.netE = Generator(cfg).to(device), Encoder(enc_cfg).to(device)
        self.netD = Discriminator(disc_cfg, spectral=True).to(device)
        self.netG.apply(init_weights)
        self.netE.apply(init_weights)
        self.emaG, self.emaE = copy.deepcopy(self.netG).eval(), copy.deepcopy(self.netE).eval()
        self.emaG.requires_grad_(False)
        self.emaE.requires_grad_(False)
        betas = options.adam_betas
        self.optG = torch.optim.Adam(list(self.netG.parameters()) + list(self.netE.parameters()),
                                     lr=options.generator_lr, betas=betas)
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=options.discriminator_lr, betas=betas)
        self.recon = per_image_loss(options.recon_loss)
        self.ema_steps = 0

    def start_from(self, checkpoint: str) -> None:
        """Start G and E (and their averages) from a trained checkpoint's weights: ``--init-from``."""
        _copy_trained(checkpoint, self.netG, self.netE)
        self.emaG.load_state_dict(self.netG.state_dict())
        self.emaE.load_state_dict(self.netE.state_dict())

    def wrap_ddp(self) -> None:
        self.netG = nn.parallel.DistributedDataParallel(self.netG)  # type: ignore[assignment]
        self.netE = nn.parallel.DistributedDataParallel(self.netE)  # type: ignore[assignment]
        self.netD = nn.parallel.DistributedDataParallel(self.netD)  # type: ignore[assignment]

    def set_step_scale(self, scale: float) -> None:
        _set_lr(self.optG, self.options.generator_lr * scale)
        _set_lr(self.optD, self.options.discriminator_lr * scale)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": _plain(self.netG).state_dict(), "encoder": _plain(self.netE).state_dict(),
                "discriminator": _plain(self.netD).state_dict(), "ema_generator": self.emaG.state_dict(),
                "ema_encoder": self.emaE.state_dict(), "opt_generator": self.optG.state_dict(),
                "opt_discriminator": self.optD.state_dict(), "ema_steps": self.ema_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _plain(self.netG).load_state_dict(state["generator"])
        _plain(self.netE).load_state_dict(state["encoder"])
        _plain(self.netD).load_state_dict(state["discriminator"])
        self.emaG.load_state_dict(state["ema_generator"])
        self.emaE.load_state_dict(state["ema_encoder"])
        self.optG.load_state_dict(state["opt_generator"])
        self.optD.load_state_dict(state["opt_discriminator"])
        self.ema_steps = int(state.get("ema_steps", 10**6))  # states saved before the warm-up was recorded

    def shipped(self) -> tuple[Generator, Encoder | None]:
        return self.emaG, self.emaE

    def train(self) -> None:
        self.netG.train()
        self.netE.train()
        self.netD.train()

    def step(self, real: torch.Tensor, epoch: int, autocast: Any) -> dict[str, float]:
        options = self.options
        if options.augment:  # a reconstruction target like any other, so D's real images are augmented too
            real = reconstruction_augment(real)
        adversarial = options.adv_weight > 0 and epoch >= options.adv_warmup
        n = real.shape[0]
        with autocast:
            code = self.netE((real + 1) * 0.5)
            noise = torch.randn(n if adversarial else 0, options.latent_dim, device=self.device)
            # Noise on E(x) makes G reconstruct from a neighbourhood of each code, not the point alone: smoother
            # between training codes, where unseen images land, and less sensitive to quantization.
            jitter = torch.randn_like(code) * options.latent_noise if options.latent_noise > 0 else 0
            noisy = code + jitter
            if options.nested_dropout > 0:
                noisy = noisy * nested_mask(n, options.latent_dim, options.nested_dropout, code.device)
            generated = self.netG(torch.cat([noisy, noise.to(code.dtype)]))
            recon = (generated[:n].float() + 1) * 0.5
        loss_recon = self.recon(recon, (real + 1) * 0.5).mean()
        loss_prior = moment_penalty(code.float())
        figures = {"recon": loss_recon.item(), "prior": loss_prior.item(),
                   "latent_std": code.float().std(dim=0).mean().item()}
        loss_g = loss_recon + options.prior_weight * loss_prior
        if adversarial:
            for _ in range(options.disc_steps):
                # D steps on detached fakes (freshly augmented each time), then G's hinge term.
                with autocast:
                    logits_real = self.netD(diff_augment(real))
                    # Only G(z) is D's fake: reconstructions are nearly the real images, and with them in D's fake
                    # batch D barely learns (measured: 100 D steps against a frozen G separated real from G(z)
                    # by 0.13 in mean logit with reconstructions among the fakes, by 0.6 without them).
                    logits_fake = self.netD(diff_augment(generated[n:].detach()))
                    loss_d = F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
                self.optD.zero_grad(set_to_none=True)
                loss_d.backward()
                self.optD.step()
            self.netD.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
            with autocast:
                loss_adv = -self.netD(diff_augment(generated)).float().mean()
            self.netD.requires_grad_(True)
            loss_g = loss_g + options.adv_weight * loss_adv
            figures |= {"loss_d": loss_d.item(), "adv": loss_adv.item(),
                        "d_real": logits_real.float().mean().item(), "d_fake": logits_fake.float().mean().item()}
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        self._update_ema()
        return figures

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Warm-up (as in TensorFlow's ExponentialMovingAverage with num_updates): early on the average
        # follows the weights closely instead of remembering the random initialisation for ~1/(1-decay) steps.
        self.ema_steps += 1
        decay = min(self.options.ema, (1 + self.ema_steps) / (10 + self.ema_steps))
        for ema, net in ((self.emaG, _plain(self.netG)), (self.emaE, _plain(self.netE))):
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - decay)
            for b_ema, b in zip(ema.buffers(), net.buffers()):  # batch-norm statistics: copied, not averaged
                b_ema.copy_(b)


def _copy_trained(checkpoint: str, generator: Generator, encoder: Encoder) -> None:
    """Copy a trained checkpoint's generator and encoder weights (batch-norm statistics included) into fresh
    nets of the same shape. The discriminator and the optimiser start fresh."""
    trained = load_named_generator(checkpoint, torch.device("cpu"))
    if trained.encoder is None:
        raise GanrevError(f"--init-from {checkpoint}: it has no encoder (only aegan generators can start a run)")
    for mine, theirs, what in ((generator, trained.generator, "generator"), (encoder, trained.encoder, "encoder")):
        ours = mine.state_dict()
        given = theirs.state_dict()
        if ours.keys() != given.keys() or any(ours[k].shape != given[k].shape for k in ours):
            raise GanrevError(f"--init-from {checkpoint}: its {what} does not match this run's shape "
                              "(give the same --latent-dim, --width and encoder width)")
        mine.load_state_dict(given)


NESTED_MIN_LATENTS = 16  # the fewest leading coordinates nested dropout keeps


def nested_mask(n: int, latent_dim: int, share: float, device: torch.device) -> torch.Tensor:
    """``[n, latent_dim]`` 0/1 masks: for a random ``share`` of the rows, ones on the first k coordinates only (k
    uniform in [NESTED_MIN_LATENTS, latent_dim)); all ones elsewhere."""
    low = min(NESTED_MIN_LATENTS, latent_dim)
    keep = torch.randint(low, latent_dim + 1, (n, 1), device=device) if latent_dim > low else \
        torch.full((n, 1), latent_dim, device=device)
    keep = torch.where(torch.rand(n, 1, device=device) < share, keep, latent_dim)
    return (torch.arange(latent_dim, device=device) < keep).float()


def moment_penalty(code: torch.Tensor) -> torch.Tensor:
    """How far a batch of latents is from N(0, I) in its first two moments: squared per-coordinate mean,
    squared (variance - 1), and the mean squared correlation between coordinates. Keeps E(x) where the range
    coder's Gaussian model and the generator's sampling prior put their mass.

    Correlations rather than covariances: with fewer samples than coordinates the sample covariance cannot
    be I, and penalising its off-diagonal entries would shrink the latents (they scale with the variance);
    correlations are scale-free, so their sampling floor (~1/batch) pulls only towards independence.
    Needs no sampling (unlike MMD) and, unlike a VAE's KL term, leaves E deterministic: E(x) is the point
    the search starts from.
    """
    if code.shape[0] < 2:
        return code.new_zeros(())
    mean, var = code.mean(dim=0), code.var(dim=0)
    centred = (code - mean) / (var.sqrt() + 1e-6)
    corr = centred.T @ centred / (code.shape[0] - 1)
    off_diagonal = corr - torch.diag_embed(corr.diagonal())
    d = code.shape[1]
    return mean.square().mean() + (var - 1).square().mean() + off_diagonal.square().sum() / max(d * (d - 1), 1)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's step: also after loading a saved state, which holds the step it was saved with (a
    resume may change the D step or the cool-down)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def _plain(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


@torch.no_grad()
def validation_ssim(generator: Generator, encoder: Encoder, images: torch.Tensor, device: torch.device,
                    chunk: int = 256) -> torch.Tensor:
    """Per-image SSIM of G(E(x)) against x, the encoder-only reconstruction (no search)."""
    generator.eval()
    encoder.eval()
    scores = []
    for part in images.split(chunk):
        part = part.to(device)
        scores.append(ssim(generator.images(encoder(part)).float().clamp(0, 1), part).cpu())
    return torch.cat(scores)


HELDOUT_COUNT = 64  # test-split images a run writes to OUT/heldout/, one per split group

RESUME_CHANGES = ("epochs", "adv_weight", "adv_warmup", "disc_lr", "disc_steps", "cooldown")
"""Options a resumed run may change: the schedule. Architecture, data, seed and the rest are the saved run's."""


def fit_generator(options: TrainOptions, out_dir: str | os.PathLike[str], *, resume: bool = False,
                  device: str = "auto", workers: int = 0, progress: bool = True,
                  resume_changes: tuple[str, ...] = ("epochs",), max_minutes: float | None = None,
                  precision: str = "auto", describe: bool = True) -> dict[str, Any]:
    """Train (or resume) a generator on ``options.data`` with ``options.objective``; returns a summary.

    Resuming keeps the saved run's options except the fields named in ``resume_changes`` (a subset of
    :data:`RESUME_CHANGES`), which are taken from ``options``: e.g. start the adversarial term of a run
    trained for reconstruction only (``adv_weight``, ``adv_warmup``), as HiFiC does.

    ``max_minutes``: a time budget for this call's epochs. Training stops after the first epoch that ends past
    it (saved like every epoch; the run ends as a finished one does, density included) and ``--resume`` can
    go on from there. The summary's ``epochs`` is the last epoch trained, ``out_of_time`` whether the budget
    stopped it before ``options.epochs``.

    A run's length: ``options.epochs``, or when None :data:`DEFAULT_STEPS` worth of epochs. With
    ``max_minutes`` the run plans its epochs to fit the budget after each epoch (:func:`plan_epochs`), so the
    cool-down ends inside it.

    An aegan run ends by describing itself (``describe``, :func:`ganrev.evaluate.card.describe_generator`): its
    default bits chosen on validation images, config.json's ``report`` and ``OUT/MODEL_CARD.md``; the summary's
    ``report`` holds the :class:`~ganrev.evaluate.card.GeneratorReport`.

    ``precision``: ``fp32``, ``bf16`` (autocast; weights, optimiser states and losses stay fp32) or ``auto``
    (:func:`~ganrev.training.common.resolve_precision`); a resumed run may use another. CPU threads are the
    caller's (``torch.set_num_threads``; the CLI's ``--threads``).
    """
    unknown = set(resume_changes) - set(RESUME_CHANGES)
    if unknown:
        raise GanrevError(f"a resumed run cannot change {', '.join(sorted(unknown))}: only {', '.join(RESUME_CHANGES)}")
    budget = TimeBudget(max_minutes)
    out = Path(out_dir)
    rank, world = _distributed()
    dev = choose_device(device)
    precision = resolve_precision(precision, dev)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)

    state: dict[str, Any] | None = None
    if resume:
        state = read_train_state(out)
        # A resumed run keeps its architecture, data and seed; only RESUME_CHANGES (the schedule) may change.
        # Runs saved before the aegan objective existed were gan runs with a fixed learning rate; runs saved before
        # nested dropout existed trained without it.
        options = resumed_options(options, {"objective": "gan", "nested_dropout": 0.0} | state["options"],
                                  resume_changes)

    torch.manual_seed(options.seed + rank)
    options = replace(options, data=canonical_source(options.data))
    dataset = open_dataset(options.data, "train", resolution=options.resolution, channels=options.channels)
    train_size = len(dataset)
    try:
        test_size = len(open_dataset(options.data, "test", resolution=options.resolution, channels=options.channels))
    except EmptySplitError:  # a small folder may hold no held-out image: recorded as 0, training goes on
        test_size = 0
    validation: ImageSet | None = None
    if options.objective == "aegan" and options.validation:
        dataset, validation = carve_validation(dataset, options.data)
    batch_size = options.batch_size
    if len(dataset) < batch_size * world:
        batch_size = max(1, len(dataset) // world)
        warnings.warn(f"{len(dataset)} training images are fewer than one batch of {options.batch_size}: "
                      f"training with batches of {batch_size}")
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=options.seed) if world > 1 else None
    shuffle_rng = torch.Generator()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=True, num_workers=workers, pin_memory=dev.type == "cuda", generator=shuffle_rng)
    val_images = stack_images(validation) if validation is not None else None
    if options.epochs is None:
        steps_per_epoch = min(len(loader), options.max_steps_per_epoch or len(loader))
        options = replace(options, epochs=default_epochs(steps_per_epoch))
    assert options.epochs is not None
    if options.cooldown is not None and options.cooldown > options.epochs:
        raise GanrevError(f"invalid --cooldown {options.cooldown}: more than the run's {options.epochs} epochs")

    objective = AeganObjective(options, dev) if options.objective == "aegan" else GanObjective(options, dev)
    fixed_noise = torch.randn(64, options.latent_dim, generator=torch.Generator().manual_seed(options.seed))
    history, start_epoch, wall_before = saved_progress(state)
    if state is None:
        options = replace(options, init_from=starting_checkpoint(options))  # recorded as resolved
        if options.init_from is not None:
            assert isinstance(objective, AeganObjective)  # TrainOptions refuses init_from for gan
            objective.start_from(options.init_from)
    if state is not None:
        objective.load_state_dict(state)
        torch.set_rng_state(state["rng_cpu"])
    if world > 1:
        objective.wrap_ddp()

    autocast = autocast_for(precision, dev)
    sizes = {"train_images": train_size, "test_images": test_size,
             "fit_images": len(dataset), "validation_images": len(val_images) if val_images is not None else 0}
    started = time.perf_counter()
    budget.start()
    out_of_time = False
    requested = options  # the length (and cool-down) asked for; a time budget may plan fewer epochs
    epoch = start_epoch
    while epoch < options.epochs:
        # Each epoch's order depends on (seed, epoch) alone, so a resumed run sees what an uninterrupted one would.
        shuffle_rng.manual_seed(epoch_seed(options.seed, epoch))
        if sampler is not None:
            sampler.set_epoch(epoch)
        objective.train()
        objective.set_step_scale(options.step_scale(epoch))
        sums: dict[str, float] = {}
        steps = 0
        epoch_started = time.perf_counter()
        bar = progress_bar(loader, f"epoch {epoch + 1}/{options.epochs}", progress and rank == 0)
        for real in bar:
            real = real.to(dev, non_blocking=True) * 2 - 1
            if options.hflip:
                flip = torch.rand(real.shape[0], device=dev) < 0.5
                real = torch.where(flip.view(-1, 1, 1, 1), real.flip(-1), real)
            figures = objective.step(real, epoch, autocast)
            for key, value in figures.items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
            bar.set_postfix({key: f"{value:.3f}" for key, value in figures.items() if key in ("loss_d", "loss_g", "recon")})
            if options.max_steps_per_epoch and steps >= options.max_steps_per_epoch:
                break
        record = epoch_record(epoch + 1, sums, steps)
        images_per_s = steps * batch_size * world / max(time.perf_counter() - epoch_started, 1e-9)
        generator, encoder = objective.shipped()
        if val_images is not None and encoder is not None:
            record["val_ssim"] = float(validation_ssim(generator, encoder, val_images, dev).mean())
        history.append(record)
        wall = wall_before + time.perf_counter() - started
        if rank == 0:
            _save_epoch(out, objective, options, sizes=sizes, epoch=epoch + 1, history=history, wall_s=wall,
                        device=dev, precision=precision, fixed_noise=fixed_noise, val_images=val_images)
            if progress:
                details = f"{images_per_s:.0f} images/s, {precision}, {wall:.0f} s"
                tqdm.write(epoch_line(record, options.epochs, details))
        epoch += 1
        if epoch < options.epochs and budget.spent(dev, world):
            out_of_time = True
            if rank == 0 and progress:
                tqdm.write(f"--max-minutes {max_minutes:g} spent after epoch {epoch}: stopping "
                           f"(--resume goes on to epoch {options.epochs})")
            break
        if budget.minutes is not None:
            # The schedule knows its end: the epochs that fit the budget, so the cool-down lands inside it.
            elapsed = budget.elapsed(dev, world)
            assert requested.epochs is not None
            planned = plan_epochs(options, requested.epochs, epoch, elapsed / (epoch - start_epoch),
                                  budget.minutes * 60 - elapsed)
            if planned != options.epochs:
                cooldown = None if requested.cooldown is None else min(requested.cooldown, planned)
                options = replace(options, epochs=planned, cooldown=cooldown)
                if rank == 0 and progress:
                    tqdm.write(f"--max-minutes {max_minutes:g}: {planned} epochs fit (of {requested.epochs}), the "
                               f"last {options.cooldown_epochs} cooling down")
    report = None
    if rank == 0 and options.objective == "aegan":
        for directory in (out, out / BEST_DIR):
            if (directory / "config.json").is_file():
                _fit_density(directory, dev, options.seed, progress)
        if test_size and not (out / HELDOUT_DIR).exists():
            # The run's held-out images, as shipped generators have them: `ganrev table -g OUT` measures on them.
            export_heldout(options.data, out / HELDOUT_DIR, HELDOUT_COUNT, resolution=options.resolution,
                           channels=options.channels)
        if describe and history:
            if progress:
                tqdm.write(f"{out}: measuring it on its validation images (default bits, model card)")
            report = describe_generator(out, command=fit_command(options, out))
    if world > 1:
        dist.barrier()
    last = history[-1]["epoch"] if history else options.epochs
    return {"epochs": int(last), "planned_epochs": options.epochs, "out_of_time": out_of_time, "history": history,
            "out": str(out), "report": report}


def _fit_density(directory: Path, device: torch.device, seed: int, progress: bool) -> None:
    """Add the density of E(x) that ``ganrev generate`` samples from (:mod:`ganrev.density`) to a finished
    checkpoint. Once, at the end: choosing it takes about a minute on emoji, and every epoch's save removes it."""
    checkpoint = load_generator(directory, device)
    assert checkpoint.encoder is not None
    fit = fit_checkpoint_density(checkpoint.encoder, checkpoint.metadata, device, seed=seed)
    attach_density(directory, fit)
    if progress:
        tqdm.write(f"{directory}: latent density for `ganrev generate`: {fit.components} Gaussians, "
                   f"shrinkage {fit.shrinkage}")


def _save_epoch(out: Path, objective: GanObjective | AeganObjective, options: TrainOptions, *,
                sizes: dict[str, int], epoch: int, history: list[dict[str, float]], wall_s: float,
                device: torch.device, precision: str, fixed_noise: torch.Tensor, val_images: torch.Tensor | None) -> None:
    generator, encoder = objective.shipped()
    generator.eval()
    with torch.no_grad():
        samples = generator.images(fixed_noise.to(device)).float().cpu()
        save_image(image_grid(samples), out / "samples" / f"epoch_{epoch:04d}.png")
        if encoder is not None and val_images is not None:
            count = min(32, len(val_images))
            shown = val_images[:count - count % 8 or count]  # whole rows of 8 (image, reconstruction) pairs
            encoder.eval()
            recon = generator.images(encoder(shown.to(device))).float().clamp(0, 1).cpu()
            pairs = torch.stack([torch.cat([shown[k:k + 8], recon[k:k + 8]]) for k in range(0, len(shown), 8)])
            save_image(image_grid(pairs.flatten(0, 1)), out / "samples" / f"recon_{epoch:04d}.png")
    device_name = training_device_name(device)
    metadata = {
        "dataset": options.data,
        "split": {"rule": split_rule(options.data), "train_images": sizes["train_images"],
                  "test_images": sizes["test_images"]},
        "training": {"objective": options.objective, "epochs": epoch, "wall_s": round(wall_s, 1),
                     "device": device_name, "precision": precision, "torch": torch.__version__,
                     "options": asdict(options),
                     "fit_images": sizes["fit_images"], "validation_images": sizes["validation_images"],
                     "last_epoch": history[-1]},
    }

    def save(directory: Path, meta: dict[str, Any]) -> None:
        save_generator(generator, directory, meta, encoder=encoder)

    save_latest_and_best(out, metadata, history, save, figure="val_ssim")
    # With torch's CPU random state: --resume restores it, so a resumed CPU run draws what a straight one would.
    write_train_state(out, options, epoch, history, wall_s, rng_cpu=torch.get_rng_state(), **objective.state_dict())
