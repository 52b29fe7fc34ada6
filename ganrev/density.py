"""A density of the encoder's codes E(x), fitted after training, that ``ganrev generate`` samples from.

Why: a reconstruction-trained generator (``fit-generator --objective aegan``) decodes E(x) well, but the codes
of the training images do not fill the N(0, I) prior: on the shipped emoji64 they have a per-coordinate std of
0.83 and covariance eigenvalues from 0.13 to 2.8, and G draws colour blobs from most of N(0, I)'s mass, where
it was never trained (its adversarial term did not fix that within CPU budgets; see README). As Ghosh et al.
do for deterministic autoencoders ("From Variational to Deterministic Autoencoders", ICLR 2020: ex-post
density estimation), ``generate`` draws from a Gaussian mixture fitted to the training codes instead.

The mixture's size and the variance added to each covariance's diagonal (shrinkage: with ~3,000 codes in 100
dimensions a component's sample covariance is nearly singular, and a mixture that hugs its training codes
only redraws training images) are chosen by the mean log-likelihood of validation codes, from the groups
carved from the training side, as the epochs are. The range coder still models N(0, I): the density changes
what ``generate`` draws, never the file format or the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ganrev.data import carve_validation, open_dataset
from ganrev.errors import GanrevError

COMPONENT_CHOICES = (1, 2, 5, 10, 20, 50)
SHRINKAGE_CHOICES = (0.03, 0.1, 0.3)
# Codes a mixture is fitted to and validated on, at most: a random subset beyond that (Fashion-MNIST's 54,000
# training codes would take an hour of EM on CPU; 10,000 pin down a 50-component mixture in 100 dimensions).
MAX_FIT_CODES, MAX_VALIDATION_CODES = 10_000, 5_000
# Without validation codes (a folder too small to carve groups from) nothing can choose: one full-covariance
# Gaussian is the choice that cannot memorise single images.
UNVALIDATED_CHOICE = (1, 0.1)
_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianMixture:
    """A mixture of full-covariance Gaussians: ``weights [K]``, ``means [K, D]`` and the covariances' lower
    Cholesky factors ``scale_tril [K, D, D]``."""

    weights: torch.Tensor
    means: torch.Tensor
    scale_tril: torch.Tensor

    @property
    def components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of each row of ``z [N, D]`` (float64)."""
        return torch.logsumexp(_component_log_probs(z.double(), self.means.double(), self.scale_tril.double())
                               + self.weights.double().log()[:, None], dim=0)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws ``[n, D]`` (float32); the same ``generator`` state gives the same draws."""
        component = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        draws = self.means.double()[component] + (self.scale_tril.double()[component] @ noise[:, :, None])[..., 0]
        return draws.float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights.float().contiguous(), "means": self.means.float().contiguous(),
                "scale_tril": self.scale_tril.float().contiguous()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], latent_dim: int) -> "GaussianMixture":
        """The mixture in ``state``; a one-line GanrevError when its tensors are missing or inconsistent."""
        try:
            weights, means, tril = state["weights"].double(), state["means"].double(), state["scale_tril"].double()
        except KeyError as exc:
            raise GanrevError(f"latent density has no {exc.args[0]!r} tensor") from None
        k = len(weights)
        if weights.ndim != 1 or k == 0 or means.shape != (k, latent_dim) or tril.shape != (k, latent_dim, latent_dim):
            raise GanrevError(f"latent density tensors have shapes {list(weights.shape)}, {list(means.shape)}, "
                              f"{list(tril.shape)}; expected [K], [K, {latent_dim}], [K, {latent_dim}, {latent_dim}]")
        diagonal = tril.diagonal(dim1=1, dim2=2)
        if (not all(torch.isfinite(t).all() for t in (weights, means, tril)) or (weights <= 0).any()
                or abs(float(weights.sum()) - 1) > 1e-4 or (diagonal <= 0).any()):
            raise GanrevError("latent density is invalid: weights must be positive and sum to 1, covariance "
                              "factors must have a positive diagonal, and every value must be finite")
        return cls(weights / weights.sum(), means, tril.tril())


def _component_log_probs(x: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """``[K, N]`` log N(x_n; mean_k, L_k L_k^T), all components at once."""
    diff = (x[None] - means[:, None]).transpose(1, 2)  # [K, D, N]
    solved = torch.linalg.solve_triangular(scale_tril, diff, upper=False)
    mahalanobis = solved.square().sum(dim=1)
    log_det = 2 * scale_tril.diagonal(dim1=1, dim2=2).log().sum(dim=1)
    return -0.5 * (mahalanobis + x.shape[1] * _LOG_2PI + log_det[:, None])


def fit_gaussian_mixture(codes: torch.Tensor, components: int, shrinkage: float, *, iters: int = 100,
                         tol: float = 1e-5, seed: int = 0) -> GaussianMixture:
    """Expectation-maximisation for a ``components``-Gaussian mixture on the rows of ``codes [N, D]``.

    Every covariance gets ``shrinkage`` added to its diagonal in each M-step, which keeps it invertible however
    few codes a component holds. Starts from ``components`` distinct codes as means (drawn with ``seed``) and
    the pooled covariance; stops when the mean log-likelihood gains less than ``tol`` in an iteration.
    """
    if codes.ndim != 2 or len(codes) < 2:
        raise GanrevError(f"a latent density needs at least 2 codes [N, D], got {list(codes.shape)}")
    if components < 1 or not (math.isfinite(shrinkage) and shrinkage > 0):
        raise GanrevError(f"invalid mixture: {components} components, shrinkage {shrinkage} (need >= 1 and > 0)")
    x = codes.double()
    n, d = x.shape
    k = min(components, n)
    eye = torch.eye(d, dtype=torch.float64)
    start = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    means = x[start].clone()
    pooled = torch.cov(x.T).reshape(d, d) + shrinkage * eye
    scale_tril = torch.linalg.cholesky(pooled).expand(k, d, d).clone()
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    previous = -math.inf
    for _ in range(iters):
        joint = _component_log_probs(x, means, scale_tril) + weights.log()[:, None]  # [K, N]
        total = torch.logsumexp(joint, dim=0)
        resp = (joint - total).exp()  # responsibilities [K, N]
        mass = resp.sum(dim=1).clamp_min(1e-12)
        weights = (mass / n).clamp_min(1e-12)
        weights = weights / weights.sum()
        means = resp @ x / mass[:, None]
        diff = x[None] - means[:, None]  # [K, N, D]
        cov = (resp[:, :, None] * diff).transpose(1, 2) @ diff / mass[:, None, None] + shrinkage * eye
        scale_tril = torch.linalg.cholesky(cov)
        mean_ll = float(total.mean())
        if mean_ll - previous < tol:
            break
        previous = mean_ll
    return GaussianMixture(weights, means, scale_tril)


def draw_latents(n: int, latent_dim: int, seed: int, density: GaussianMixture | None = None) -> torch.Tensor:
    """``[n, latent_dim]`` latents as ``ganrev generate --seed SEED`` draws them: from ``density`` when given,
    else from N(0, I)."""
    rng = torch.Generator().manual_seed(seed)
    return density.sample(n, rng) if density is not None else torch.randn(n, latent_dim, generator=rng)


def normal_log_likelihood(codes: torch.Tensor) -> float:
    """Mean log-density of ``codes`` under the N(0, I) prior, the baseline a fitted density must beat."""
    return float((-0.5 * (codes.double().square() + _LOG_2PI)).sum(dim=1).mean())


@dataclass
class DensityFit:
    """The chosen mixture and the evidence for it (recorded in the checkpoint's config.json)."""

    mixture: GaussianMixture
    shrinkage: float
    fit_codes: int
    validation_codes: int
    validation_log_likelihood: float | None  # mean per code; None without validation codes
    normal_log_likelihood: float | None  # the same codes under N(0, I)
    candidates: list[dict[str, float]] = field(default_factory=list)  # every (components, shrinkage) tried

    @property
    def components(self) -> int:
        return self.mixture.components

    def record(self) -> dict[str, Any]:
        return {"family": "gaussian-mixture", "components": self.components, "shrinkage": self.shrinkage,
                "fit_codes": self.fit_codes, "validation_codes": self.validation_codes,
                "validation_log_likelihood": self.validation_log_likelihood,
                "normal_log_likelihood": self.normal_log_likelihood, "candidates": self.candidates}


def choose_density(fit_codes: torch.Tensor, validation_codes: torch.Tensor | None, *,
                   components: tuple[int, ...] = COMPONENT_CHOICES,
                   shrinkages: tuple[float, ...] = SHRINKAGE_CHOICES, seed: int = 0) -> DensityFit:
    """Fit a mixture for every (components, shrinkage) on ``fit_codes``; keep the one whose validation codes
    are most likely. Without validation codes, fit :data:`UNVALIDATED_CHOICE`."""
    if validation_codes is None or len(validation_codes) == 0:
        k, shrink = UNVALIDATED_CHOICE
        mixture = fit_gaussian_mixture(fit_codes, k, shrink, seed=seed)
        return DensityFit(mixture, shrink, len(fit_codes), 0, None, None)
    best: tuple[float, GaussianMixture, float] | None = None
    candidates = []
    for k in components:
        if k > len(fit_codes):
            continue
        for shrink in shrinkages:
            mixture = fit_gaussian_mixture(fit_codes, k, shrink, seed=seed)
            score = float(mixture.log_prob(validation_codes).mean())
            candidates.append({"components": k, "shrinkage": shrink, "validation_log_likelihood": round(score, 3)})
            if best is None or score > best[0]:
                best = (score, mixture, shrink)
    if best is None:
        raise GanrevError(f"no mixture size in {components} fits {len(fit_codes)} codes")
    score, mixture, shrink = best
    return DensityFit(mixture, shrink, len(fit_codes), len(validation_codes), score,
                      normal_log_likelihood(validation_codes), candidates)


@torch.no_grad()
def encode_images(encoder: torch.nn.Module, images: Any, device: torch.device, chunk: int = 256) -> torch.Tensor:
    """E(x) ``[N, D]`` (CPU, float32) of a dataset or tensor of images in [0, 1]."""
    encoder.eval()
    codes = []
    for first in range(0, len(images), chunk):
        batch = torch.stack([images[i] for i in range(first, min(first + chunk, len(images)))])
        codes.append(encoder(batch.to(device)).float().cpu())
    return torch.cat(codes)


def fit_checkpoint_density(encoder: torch.nn.Module, metadata: dict[str, Any], device: torch.device,
                           seed: int = 0) -> DensityFit:
    """Choose a density for ``encoder``'s codes of the training side of the data its checkpoint was trained
    on (``metadata``: the checkpoint's config.json), validated on the groups carved from it (each at most
    :data:`MAX_FIT_CODES` / :data:`MAX_VALIDATION_CODES` images, a random subset drawn with ``seed``)."""
    source = metadata.get("dataset")
    if not isinstance(source, str):
        raise GanrevError("the checkpoint's config.json names no dataset to fit a latent density on")
    dataset = open_dataset(source, "train", resolution=int(metadata["resolution"]), channels=int(metadata["channels"]))
    fit, validation = carve_validation(dataset, source)
    rng = torch.Generator().manual_seed(seed)
    fit_codes = encode_images(encoder, _at_most(fit, MAX_FIT_CODES, rng), device)
    validation_codes = (encode_images(encoder, _at_most(validation, MAX_VALIDATION_CODES, rng), device)
                        if validation is not None else None)
    return choose_density(fit_codes, validation_codes, seed=seed)


def _at_most(images: Any, limit: int, rng: torch.Generator) -> Any:
    """``images`` itself, or a random subset of ``limit`` of them (an indexable of the same items)."""
    if len(images) <= limit:
        return images
    chosen = torch.randperm(len(images), generator=rng)[:limit].sort().values.tolist()
    return [images[i] for i in chosen]


__all__ = ["DensityFit", "GaussianMixture", "choose_density", "draw_latents", "fit_checkpoint_density",
           "fit_gaussian_mixture", "normal_log_likelihood"]
