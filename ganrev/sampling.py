"""A checkpoint's latent density in use: ``ganrev generate`` draws samples through it, ``ganrev fit-density``
fits one and adds it to a checkpoint (:mod:`ganrev.density` holds the mixture itself)."""

from __future__ import annotations

import os

import torch

from ganrev.density import DensityFit, draw_latents, fit_checkpoint_density
from ganrev.errors import GanrevError
from ganrev.models import GeneratorCheckpoint, attach_density

PRIORS = ("auto", "fitted", "normal")
"""Where ``generate``'s latents come from: the checkpoint's fitted density, N(0, I), or the density when the
checkpoint has one."""


def check_prior(prior: str, checkpoint: GeneratorCheckpoint) -> bool:
    """Whether ``prior`` draws from the checkpoint's density (refuses an unknown prior, or 'fitted' without one)."""
    if prior not in PRIORS:
        raise GanrevError(f"invalid --prior {prior!r}: must be one of {', '.join(PRIORS)}")
    if prior == "fitted" and checkpoint.density is None:
        raise GanrevError(f"--prior fitted: {checkpoint.path} has no latent density (add one with "
                          "`ganrev fit-density`)")
    return checkpoint.density is not None and prior != "normal"


@torch.no_grad()
def sample_images(checkpoint: GeneratorCheckpoint, n: int, seed: int, prior: str = "auto") -> torch.Tensor:
    """``n`` images ``[n, C, H, W]`` in [0, 1] (CPU) decoded from latents drawn by ``prior``, seeded."""
    density = checkpoint.density if check_prior(prior, checkpoint) else None
    z = draw_latents(n, checkpoint.config.latent_dim, seed, density)
    return checkpoint.generator.images(z.to(next(checkpoint.generator.parameters()).device)).float().cpu()


def add_density(checkpoint: GeneratorCheckpoint, device: torch.device, *, seed: int = 0,
                replace: bool = False) -> DensityFit:
    """Fit a density to E(x) of the checkpoint's training data and write it into the checkpoint's folder.

    Everything that would make the write fail is checked before the minute of fitting: no encoder, a density
    already there (unless ``replace``), a folder that cannot be written.
    """
    if checkpoint.encoder is None:
        raise GanrevError(f"{checkpoint.path} has no encoder: a latent density models the codes E(x) of one "
                          "(train with `fit-generator --objective aegan`)")
    if checkpoint.density is not None and not replace:
        raise GanrevError(f"{checkpoint.path} already has a latent density: use --force to refit it")
    if not os.access(checkpoint.path, os.W_OK):
        raise GanrevError(f"cannot write into {checkpoint.path}: fit-density adds density.safetensors there (copy "
                          "the checkpoint to a writable folder first)")
    fit = fit_checkpoint_density(checkpoint.encoder, checkpoint.metadata, device, seed=seed)
    try:
        attach_density(checkpoint.path, fit)
    except OSError as exc:
        raise GanrevError(f"cannot write the latent density into {checkpoint.path}: {exc.strerror or exc}") from exc
    return fit
