"""The batched latent-search core: find z with G(z) close to each target image, by gradient descent.

All images x restarts are optimised together as rows of one latent tensor, with a row-wise Adam written
out here (rather than torch.optim.Adam) so that rows which have stopped improving can leave the batch:
each iteration runs the generator only on the still-active rows. The generator is frozen (eval mode, no
parameter gradients). Latents are clamped to ``[-clip, clip]`` after every step: this keeps z in the
region the generator saw in training (|z_i| <= 3 holds for 99.7% of N(0, 1) draws) and is exactly the
range the quantizer in :mod:`ganrev.bitstream.quantize` covers, so quantization never has to clip.

Restart r of every image starts from the same point (drawn from ``seed``), so an image's result does not
depend on which other images share its batch: batched and one-at-a-time runs agree up to float rounding
(which an L1 term can amplify in z, not in the loss, once an image is matched almost exactly: there its
gradient's sign is decided by rounding).
Starting points (``init``): ``encoder`` starts restart 1 at E(x), the encoder trained with the generator
(``fit-generator --objective aegan``), and further restarts at E(x) plus N(0, 0.2^2) offsets: the best start,
when there is an encoder. ``pool`` takes the ``restarts`` best of ``pool`` prior samples for each image (by
16x16 mean-squared error), a cheap way to start near the answer; ``random`` (or ``pool`` <= ``restarts``)
draws the starts from the prior.

A file stores z rounded to its grid (:class:`ganrev.bitstream.quantize.Quantizer`), and the best point before
rounding need not round best: ``rounded_bits`` makes the search also keep, for each of those precisions, the iterate
whose rounding scores best (:attr:`InversionResult.rounded`), at one forward pass of G more per iteration and
precision (no gradient, all precisions in one batch); early stopping then watches those rounded losses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from ganrev.bitstream.quantize import Quantizer
from ganrev.errors import GanrevError
from ganrev.metrics import ms_ssim, ssim, ssim_target_maps
from ganrev.nets.dcgan import Encoder, FoldedGenerator, Generator
from ganrev.progress import progress_bar
from ganrev.training.common import BF16_CPU_FLAGS, cpu_flags

LossName = Literal["ssim", "ms-ssim", "l1", "l2", "bce", "ms-ssim+l1", "ms-ssim+l2", "ssim+l1", "mix"]
LOSSES: tuple[str, ...] = ("ssim", "ms-ssim", "l1", "l2", "bce", "ms-ssim+l1", "ms-ssim+l2", "ssim+l1", "mix")
LOSS_ALIASES = {"mix": "ms-ssim+l1"}  # the name the first releases used for Zhao et al.'s mixture
MIX_ALPHA = 0.84  # Zhao et al., "Loss Functions for Image Restoration with Neural Networks"
_BCE_EPS = 1e-6


def _l1(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out - target).abs().flatten(1).mean(1)


def _l2(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out - target).square().flatten(1).mean(1)


def _bce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise binary cross-entropy (pixels as Bernoulli probabilities, as the seeds' autoencoders use it)
    minus the target's own entropy, so that it is 0 at a perfect match like every other loss here; the
    subtracted term does not depend on ``out``, so gradients are those of plain BCE."""
    p, t = out.clamp(_BCE_EPS, 1 - _BCE_EPS), target.clamp(_BCE_EPS, 1 - _BCE_EPS)
    cross = -(target * p.log() + (1 - target) * (1 - p).log())
    entropy = -(target * t.log() + (1 - target) * (1 - t).log())
    return (cross - entropy).flatten(1).mean(1)


def per_image_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss ``(output, target) -> [N]`` for images in [0, 1]; lower is better, 0 at a perfect match.

    The mixtures weigh (1 - MS-SSIM) or (1 - SSIM) by 0.84 and the pixel term by 0.16, as Zhao et al. do;
    ``ssim+l1`` uses single-scale SSIM because a 64x64 image gets only 3 MS-SSIM scales.
    """
    structural, pixel = _loss_parts(name)
    if pixel is None:
        return lambda out, target: 1.0 - structural(out, target)
    if structural is None:
        return pixel
    return lambda out, target: (MIX_ALPHA * (1.0 - structural(out, target))
                                + (1.0 - MIX_ALPHA) * pixel(out, target))


def _loss_parts(name: str) -> tuple[Callable[..., torch.Tensor] | None, Callable[..., torch.Tensor] | None]:
    """(structural similarity, pixel loss) of a loss name, either None where the loss has no such part."""
    name = LOSS_ALIASES.get(name, name)
    structural = {"ssim": ssim, "ms-ssim": ms_ssim}
    pixel = {"l1": _l1, "l2": _l2, "bce": _bce}
    if name in structural:
        return structural[name], None
    if name in pixel:
        return None, pixel[name]
    first, _, second = name.partition("+")
    if first in structural and second in pixel and name in LOSSES:
        return structural[first], pixel[second]
    raise GanrevError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")


def target_loss(name: str, targets: torch.Tensor) -> Callable[..., torch.Tensor]:
    """:func:`per_image_loss` against fixed ``targets``: ``loss(out, rows)`` scores ``out`` against
    ``targets[rows]``, ``loss(out)`` against all of them. With SSIM in the loss the targets' own filtered maps (two
    of SSIM's five) are computed here once rather than at every call: the search, the quantizer-in-the-loop
    refinement and the modulation fit call it at every step, and at 64 rows SSIM takes about two thirds of the bf16 generator's time in the search
    (experiments/bench_invert.py). The values are the same."""
    structural, pixel = _loss_parts(name)
    if structural is not ssim:
        loss_fn = per_image_loss(name)
        return lambda out, rows=None: loss_fn(out, targets if rows is None else targets[rows])
    maps = ssim_target_maps(targets)

    def loss(out: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        target, target_maps = (targets, maps) if rows is None else (targets[rows], maps[rows])
        dissimilarity = 1.0 - ssim(out, target, target_maps=target_maps)
        if pixel is None:
            return dissimilarity
        return MIX_ALPHA * dissimilarity + (1.0 - MIX_ALPHA) * pixel(out, target)

    return loss


@dataclass
class InversionResult:
    """Best latent per image and what the search did to find it."""

    z: torch.Tensor  # [N, latent_dim] best latent per image (CPU)
    loss: torch.Tensor  # [N] its loss
    restart_loss: torch.Tensor  # [N, R] best loss reached by each restart
    iterations: torch.Tensor  # [N, R] iterations each restart ran before it stopped
    seconds: float
    # For each of SearchOptions.rounded_bits: the iterate [N, latent_dim] whose rounding to that grid scored best (the
    # unrounded point, so that refinement can start from it); empty without rounded_bits or after no search.
    rounded: dict[int, torch.Tensor] = field(default_factory=dict)
    rounded_loss: dict[int, torch.Tensor] = field(default_factory=dict)  # [N] the loss of each one's rounding

    def latents_for(self, bits: int) -> torch.Tensor:
        """The latents to round to a grid of ``bits``: the iterates tracked for that grid, else the best ones."""
        return self.rounded.get(bits, self.z)

    @property
    def image_iterations(self) -> int:
        """Generator forward+backward passes done, the unit of the throughput benchmark."""
        return int(self.iterations.sum())


INITS: tuple[str, ...] = ("encoder", "pool", "random")
SEARCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # --precision: the generator's arithmetic
SEARCH_PRECISIONS = ("auto", *SEARCH_DTYPES)
# auto searches in bf16 (the generator folded, Generator.folded) on the CPUs where training's autocast does,
# training.common.BF16_CPU_FLAGS. On a Xeon with AMX-BF16 the search took 0.66-0.80x fp32's time at every effort for
# the same SSIM (192 validation emoji at the default: 0.8792 against 0.8791; experiments/effort.py on held-out ones:
# -0.001 to +0.003 per level). On an AMD EPYC with AVX-512 BF16 and no AMX, one thread: 0.85x at the default, 0.71x at
# effort 2, 0.88x at effort 1, SSIM 0.8791 against 0.8786 at the default (192 validation emoji,
# experiments/results/effort-validation-avx512bf16); two threads: 0.93x at the default (48 held-out emoji,
# experiments/results/effort). Unlike training, CUDA stays fp32: the search there is unmeasured.
ENCODER_NOISE = 0.2  # std of the offsets of restarts 2, 3, ... around E(x)
# The search after an encoder start (the pool start keeps the dataclass defaults): E(x) is already close, so
# a short search with a large step gets the gain, and a row stops once it stalls for 20 iterations (on average
# after ~90). Chosen on validation emoji in experiments/ablation_init.py (see README): 0.7911 SSIM at 6 bits
# in 0.56 s per image vs 0.7878 in 0.83 s for the earlier 100 iterations at lr 0.05 with 50 refinement steps.
ENCODER_SEARCH = {"iters": 200, "restarts": 1, "lr": 0.3, "patience": 20}
# ``--effort``: the speed/quality trade-off in one dial, as cwebp's -m, avifenc's --speed or zstd's levels. Each level
# changes the start's default search (ENCODER_SEARCH for an encoder start, the SearchOptions defaults for a pool or
# random start, both "prior" starts) by its overrides; options given explicitly change it further. 0 is no search at
# all: the encoder alone, or the best pool sample (GanCodec then skips refinement too: milliseconds). DEFAULT_EFFORT
# overrides nothing: the search before efforts existed. Levels between search fewer iterations with less patience, each
# 1.6 to 4 times the time of the one below on experiments/effort.py's run (1: six steps, whose cosine schedule has
# decayed by the last; on 64 validation Google emoji they lift E(x)'s SSIM by more than half of what 25 do, in a third
# of the time: 0.798 -> 0.843, against 0.877); higher ones search longer, then (6) from 4 times the starts (around E(x):
# ENCODER_NOISE offsets). A prior start's level scales iterations, patience and restarts as the encoder start's does.
# Chosen, not tuned: experiments/effort.py measures every level's SSIM, bytes and encoding time on the shipped
# generator's held-out images.
EFFORTS: dict[int, dict[str, dict[str, int]]] = {
    0: {"encoder": {"iters": 0}, "prior": {"iters": 0}},
    1: {"encoder": {"iters": 6, "patience": 6}, "prior": {"iters": 30, "patience": 30}},
    2: {"encoder": {"iters": 25, "patience": 5}, "prior": {"iters": 125, "patience": 25}},
    3: {"encoder": {"iters": 100, "patience": 10}, "prior": {"iters": 500, "patience": 50}},
    4: {"encoder": {}, "prior": {}},
    5: {"encoder": {"iters": 400, "patience": 40}, "prior": {"iters": 2000, "patience": 200}},
    6: {"encoder": {"iters": 400, "patience": 40, "restarts": 4},
        "prior": {"iters": 2000, "patience": 200, "restarts": 16}},
}
DEFAULT_EFFORT = 4
# The search loss with the best held-out SSIM (and better PSNR and LPIPS than plain SSIM) in the loss study,
# experiments/loss_study.py: 0.7832 vs 0.7818 for ``ssim`` on the shipped emoji64, same iterations.
DEFAULT_SEARCH_LOSS = "ssim+l1"


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of :func:`invert` (see there); checked on construction, so a bad value fails before any search."""

    iters: int = 1000  # 0: no search, keep the best starting point (with an encoder: the encoder alone)
    restarts: int = 4
    loss: str = DEFAULT_SEARCH_LOSS
    lr: float = 0.05
    seed: int = 0
    clip: float = 3.0
    patience: int = 100
    min_delta: float = 1e-4
    pool: int = 256
    batch_size: int | None = None  # rows per chunk; None: 64 on CPU (the throughput peak in bench_invert), 4096 on CUDA
    init: str = "pool"  # encoder: start at E(x) (needs a checkpoint with an encoder); pool; random
    # Search only the latent's first k coordinates, the others held at the prior's mean 0: the latent of a file
    # that codes k leading coordinates (a generator trained with nested dropout); None: all of them.
    leading: int | None = None
    # The generator's arithmetic in the search (the loss stays fp32; files always decode in fp32): auto (bf16 on a CPU
    # with BF16_CPU_FLAGS, else fp32), fp32 or bf16. See :func:`resolve_search_precision`.
    precision: str = "auto"
    # Latent precisions whose rounding the search tracks (module docstring); each a file's bits, 2 to 16.
    rounded_bits: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounded_bits", tuple(sorted(set(self.rounded_bits))))
        problems = {
            "iters": self.iters >= 0, "restarts": self.restarts >= 1, "patience": self.patience >= 1,
            "pool": self.pool >= 0, "batch-size": self.batch_size is None or self.batch_size >= 1,
            "lr": math.isfinite(self.lr) and self.lr > 0, "clip": math.isfinite(self.clip) and self.clip > 0,
            "min-delta": math.isfinite(self.min_delta) and self.min_delta >= 0,
            "loss": self.loss in LOSSES, "init": self.init in INITS,
            "leading": self.leading is None or self.leading >= 1, "precision": self.precision in SEARCH_PRECISIONS,
            "rounded-bits": all(2 <= bits <= 16 for bits in self.rounded_bits),
        }
        for name, ok in problems.items():
            if not ok:
                value = getattr(self, name.replace("-", "_"))
                rule = {"loss": f"one of {', '.join(LOSSES)}", "init": f"one of {', '.join(INITS)}",
                        "precision": f"one of {', '.join(SEARCH_PRECISIONS)}",
                        "pool": ">= 0", "iters": ">= 0", "min-delta": "finite and >= 0", "lr": "finite and > 0",
                        "clip": "finite and > 0", "rounded-bits": "bits from 2 to 16"}.get(name, ">= 1")
                raise GanrevError(f"invalid --{name} {value!r}: must be {rule}")


def resolve_search_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``precision`` (a :data:`SEARCH_PRECISIONS` name) with ``auto`` resolved for ``device``."""
    if precision == "auto":
        return "bf16" if device.type == "cpu" and cpu_flags() & BF16_CPU_FLAGS else "fp32"
    return precision


def check_effort(effort: int) -> None:
    """Refuse an effort level that :data:`EFFORTS` does not define, as the CLI reports a bad option."""
    if effort not in EFFORTS:
        raise GanrevError(f"invalid --effort {effort!r}: must be a level from {min(EFFORTS)} to {max(EFFORTS)}")


def default_search(has_encoder: bool, *, init: str | None = None, effort: int | None = None,
                   **given: object) -> SearchOptions:
    """SearchOptions with the defaults that fit the start at an ``effort`` level (:data:`EFFORTS`): ``init``
    defaults to ``encoder`` when the checkpoint has one (else ``pool``), an encoder start searches
    ``ENCODER_SEARCH`` and a pool or random start the SearchOptions defaults, each changed by the effort's
    overrides, then by the options ``given``. Arguments that are None take the default (``effort``:
    ``DEFAULT_EFFORT``)."""
    effort = DEFAULT_EFFORT if effort is None else effort
    check_effort(effort)
    init = init or ("encoder" if has_encoder else "pool")
    if init == "encoder" and not has_encoder:
        raise GanrevError("--init encoder: this generator checkpoint has no encoder (use --init pool)")
    base: dict[str, object] = dict(ENCODER_SEARCH) if init == "encoder" else {}
    base |= EFFORTS[effort]["encoder" if init == "encoder" else "prior"]
    return SearchOptions(init=init, **(base | {key: value for key, value in given.items() if value is not None}))


def chunk_rows(options: SearchOptions, device: torch.device) -> int:
    """Latent rows optimised together: ``options.batch_size``, or a default for the device."""
    return options.batch_size or (4096 if device.type == "cuda" else 64)


def starting_points(generator: Generator, targets: torch.Tensor, options: SearchOptions,
                    device: torch.device, encoder: Encoder | None = None) -> torch.Tensor:
    """Initial latents ``[N * R, d]`` (image-major rows) as described in the module docstring."""
    latent_dim = generator.config.latent_dim
    rng = torch.Generator().manual_seed(options.seed)
    keep = leading_mask(latent_dim, options.leading)
    if options.init == "encoder":
        if encoder is None:
            raise GanrevError("--init encoder needs a generator checkpoint with an encoder")
        with torch.no_grad():
            codes = torch.cat([encoder(chunk.to(device)).float().cpu() for chunk in targets.split(chunk_rows(options, device))])
        offsets = torch.randn(options.restarts, latent_dim, generator=rng) * ENCODER_NOISE
        offsets[0] = 0.0  # the first restart is E(x) itself
        return (codes[:, None, :] + offsets[None]).flatten(0, 1).clamp_(-options.clip, options.clip) * keep
    if options.init == "random" or options.pool <= options.restarts:
        starts = torch.randn(options.restarts, latent_dim, generator=rng).clamp_(-options.clip, options.clip)
        return starts.repeat(len(targets), 1) * keep
    pool = torch.randn(options.pool, latent_dim, generator=rng).clamp_(-options.clip, options.clip) * keep
    with torch.no_grad():
        thumbs = torch.cat([F.adaptive_avg_pool2d(generator.images(chunk.to(device)), 16).flatten(1).cpu()
                            for chunk in pool.split(chunk_rows(options, device))])
        target_thumbs = F.adaptive_avg_pool2d(targets, 16).flatten(1).cpu()
        distance = torch.cdist(target_thumbs.double(), thumbs.double())
    best = distance.topk(options.restarts, dim=1, largest=False).indices  # [N, R]
    return pool[best.flatten()]


def leading_mask(latent_dim: int, leading: int | None) -> torch.Tensor:
    """``[latent_dim]``: 1 on the first ``leading`` coordinates (all of them for None), 0 after them."""
    if leading is not None and leading > latent_dim:
        raise GanrevError(f"this generator's latent has {latent_dim} coordinates, fewer than the {leading} "
                          "leading ones asked for")
    return (torch.arange(latent_dim) < (latent_dim if leading is None else leading)).float()


def invert(generator: Generator, images: torch.Tensor, options: SearchOptions = SearchOptions(), *,
           device: str | torch.device | None = None, progress: bool = False,
           encoder: Encoder | None = None) -> InversionResult:
    """Search the latent space of ``generator`` for each of ``images`` (``[N, C, R, R]`` in [0, 1]).

    Rows (image, restart) run in chunks of ``options.batch_size``; a row stops early once its loss has
    not improved by ``min_delta`` for ``patience`` iterations. The step size follows a cosine decay from
    ``lr`` to ``lr / 10``. With ``options.leading`` only the leading coordinates move (their gradient alone is
    followed); the others stay 0. With ``options.rounded_bits`` it also keeps, per precision, the iterate whose
    rounding scores best, and a row stops once none of those rounded losses has improved. The search runs
    ``generator.folded()`` (batch norms folded into the convolutions, in ``options.precision``): the same function,
    faster. Deterministic for a fixed seed on a given
    device.
    """
    cfg = generator.config
    if images.ndim != 4 or images.shape[1:] != (cfg.channels, cfg.resolution, cfg.resolution):
        raise GanrevError(f"images must be [N, {cfg.channels}, {cfg.resolution}, {cfg.resolution}] for this "
                          f"generator, got {list(images.shape)}")
    dev = torch.device(device) if device is not None else next(generator.parameters()).device
    generator = generator.to(dev).eval().requires_grad_(False)
    started = time.perf_counter()
    n, r = len(images), options.restarts
    if encoder is not None:
        encoder = encoder.to(dev).eval().requires_grad_(False)
    keep = leading_mask(cfg.latent_dim, options.leading).to(dev)
    z0 = starting_points(generator, images, options, dev, encoder)
    search_net = generator.folded(SEARCH_DTYPES[resolve_search_precision(options.precision, dev)])
    grids = [Quantizer(bits, options.clip) for bits in options.rounded_bits] if options.iters else []
    # Row (image, restart) results: the best point, then the point tracked for each grid.
    best_z = torch.empty(1 + len(grids), *z0.shape)
    best_loss = torch.empty(1 + len(grids), n * r)
    iterations = torch.empty(n * r, dtype=torch.long)
    chunk = chunk_rows(options, dev)
    for first in range(0, n * r, chunk):
        rows = slice(first, min(first + chunk, n * r))
        image_index = torch.arange(rows.start, rows.stop) // r
        loss_at = target_loss(options.loss, images[image_index].to(dev))
        z, loss, its = _search_rows(search_net, z0[rows].to(dev), loss_at, options, keep, grids, progress,
                                    desc=f"search rows {rows.start + 1}-{rows.stop}/{n * r}")
        best_z[:, rows], best_loss[:, rows], iterations[rows] = z.cpu(), loss.cpu(), its.cpu()
    every = torch.arange(n)
    restart_loss = best_loss.view(-1, n, r)
    picks = restart_loss.argmin(dim=2)  # [1 + grids, N]: each image's best restart, by each kind of loss
    points = best_z.view(-1, n, r, z0.shape[1])
    chosen = [(points[kind, every, pick], restart_loss[kind, every, pick]) for kind, pick in enumerate(picks)]
    return InversionResult(chosen[0][0], chosen[0][1], restart_loss[0], iterations.view(n, r),
                           time.perf_counter() - started,
                           {grid.bits: z for grid, (z, _) in zip(grids, chosen[1:])},
                           {grid.bits: loss for grid, (_, loss) in zip(grids, chosen[1:])})


def _search_rows(generator: FoldedGenerator, z: torch.Tensor,
                 loss_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], options: SearchOptions,
                 keep: torch.Tensor, grids: list[Quantizer], progress: bool,
                 desc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-wise Adam with early stopping and active-set compaction, moving only the coordinates ``keep`` marks;
    ``loss_at(images, rows)`` scores images against row ``rows``' targets (:func:`target_loss`). Returns z
    ``[1 + len(grids), rows, d]`` and loss ``[1 + len(grids), rows]`` (the best point, then for each of ``grids``
    the point whose rounding scored best, with its rounding's loss) and iterations ``[rows]``; a row stops once
    the losses it tracks for ``grids`` (without grids: its loss) stall."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    rows = len(z)
    if options.iters == 0:  # no search: the starting points as they are (e.g. the encoder alone)
        with torch.no_grad():
            return (z.clone()[None], loss_at(generator.images(z), torch.arange(rows, device=z.device))[None],
                    torch.zeros(rows, dtype=torch.long, device=z.device))
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    # kind 0: the best point by its loss; kind 1 + g: by the loss of its rounding to grids[g]
    best_z = z[None].repeat(1 + len(grids), 1, 1)
    best_loss = torch.full((1 + len(grids), rows), math.inf, device=z.device)
    stall = torch.zeros(rows, dtype=torch.long, device=z.device)
    iterations = torch.zeros(rows, dtype=torch.long, device=z.device)
    active = torch.arange(rows, device=z.device)
    watched = slice(1, None) if grids else slice(0, 1)  # the losses whose stalling stops a row
    bar = progress_bar(range(options.iters), desc, progress)
    for step in bar:
        z_active = z[active].requires_grad_(True)
        loss = loss_at(generator.images(z_active), active)
        (grad,) = torch.autograd.grad(loss.sum(), z_active)
        grad = grad * keep  # a zero gradient leaves Adam's moments, and so the coordinate, at 0
        point = z_active.detach()
        losses = loss.detach()[None]
        if grids:  # the rounded points' losses, every grid in one batch: [grids, active]
            with torch.no_grad():
                rounded = torch.cat([grid.dequantize(grid.quantize(point)) * keep for grid in grids])
                rounded_loss = loss_at(generator.images(rounded), active.repeat(len(grids)))
            losses = torch.cat([losses, rounded_loss.view(len(grids), -1)])
        improved = (losses[watched] < best_loss[watched, active] - options.min_delta).any(0)
        better = losses < best_loss[:, active]
        best_loss[:, active] = torch.where(better, losses, best_loss[:, active])
        best_z[:, active] = torch.where(better[..., None], point, best_z[:, active])
        stall[active] = torch.where(improved, 0, stall[active] + 1)
        iterations[active] += 1
        # Adam; every active row has taken the same number of steps, so bias corrections are shared.
        t = step + 1
        lr = options.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / options.iters)))
        m[active] = beta1 * m[active] + (1 - beta1) * grad
        v[active] = beta2 * v[active] + (1 - beta2) * grad.square()
        update = (m[active] / (1 - beta1**t)) / ((v[active] / (1 - beta2**t)).sqrt() + eps)
        z[active] = (z_active.detach() - lr * update).clamp(-options.clip, options.clip)
        active = active[stall[active] < options.patience]
        if progress:
            bar.set_postfix(active=len(active), best=f"{best_loss[0].mean().item():.4f}")
        if len(active) == 0:
            break
    return best_z, best_loss, iterations
