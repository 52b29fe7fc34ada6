"""CompressAI's reference learned codecs, sized for small images: the learned-codec peer of GAN reversal.

- ``factorized``: ``bmshj2018-factorized`` (Ballé et al., "Variational image compression with a scale
  hyperprior", ICLR 2018, the factorized-prior baseline): y = g_a(x) coded under a learned factorized density.
- ``hyperprior``: ``bmshj2018-hyperprior``: y coded under Gaussians whose scales a hyper-latent z predicts.
- ``mean``: ``mbt2018-mean`` (Minnen et al., NeurIPS 2018, without the context model): means and scales.
- ``joint``: ``mbt2018`` (the same paper's full model): the hyperprior's means and scales joined with an
  autoregressive context model over y (a masked 5x5 convolution), decoded position by position.
- ``cheng2020-anchor``: Cheng et al., CVPR 2020, without attention: residual-block transforms, subpixel
  upsampling and the same context model; one channel count, N (its latent y has N channels).

The networks are CompressAI's own classes (``compressai.models``), so the transforms, the entropy models and
the rANS bitstreams are the ones published curves were made with. Channel counts: CompressAI uses N = 128,
M = 192 for its low-rate models on 256-pixel crops; at 64x64 pixels (a 4x4 latent grid, a 1x1 hyper-latent)
and a CPU budget we default to N = 64, M = 96 (1.8 M parameters for ``mean``), set per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ganrev.errors import GanrevError

if TYPE_CHECKING:
    from torch import nn

ARCHITECTURE = "compressai"
# The order is the files' model ids (ganrev.codecs.hyperprior): new models go at the end.
MODELS = {"factorized": "bmshj2018-factorized", "hyperprior": "bmshj2018-hyperprior", "mean": "mbt2018-mean",
          "joint": "mbt2018", "cheng2020-anchor": "cheng2020-anchor"}
# the factor an input's sides must divide by: g_a halves four times, h_a twice more
ALIGNMENT = {"factorized": 16, "hyperprior": 64, "mean": 64, "joint": 64, "cheng2020-anchor": 64}
ONE_CHANNEL_COUNT = ("cheng2020-anchor",)  # models built from N alone: their latent has N channels (M = N)
DEFAULT_LATENT_CHANNELS = 96


@dataclass(frozen=True)
class HyperpriorConfig:
    """One of :data:`MODELS` with its channel counts: ``n`` (hidden and hyper-latent), ``m`` (latent y)."""

    model: str = "mean"
    n: int = 64
    m: int = DEFAULT_LATENT_CHANNELS
    channels: int = 3

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise GanrevError(f"invalid --model {self.model!r}: {', '.join(MODELS)}")
        if not (8 <= self.n <= 512 and 8 <= self.m <= 512):
            raise GanrevError(f"channel counts must be 8-512, got N={self.n}, M={self.m}")
        if self.model in ONE_CHANNEL_COUNT and self.m != self.n:
            raise GanrevError(f"{self.name} has one channel count, N: its latent has N channels, so M must equal N "
                              f"(got N={self.n}, M={self.m})")
        if self.channels != 3:
            raise GanrevError("CompressAI's models code RGB images (gray ones go through as three equal channels)")

    @property
    def alignment(self) -> int:
        return ALIGNMENT[self.model]

    @property
    def name(self) -> str:
        return MODELS[self.model]


def compressai_available() -> bool:
    """Whether CompressAI is installed (the table leaves its rows out, with a note, where it is not)."""
    import importlib.util

    return importlib.util.find_spec("compressai") is not None


def compressai_module():  # noqa: ANN201 -- the compressai.models module
    """``compressai.models``, or a one-line error saying how to install it."""
    try:
        import compressai.models
    except ImportError as exc:  # an optional dependency: the rest of ganrev runs without it
        raise GanrevError("the learned-codec peer needs CompressAI: pip install 'ganrev[compressai]' "
                          f"(compressai==1.2.8); {exc}") from exc
    return compressai.models


def build_model(config: HyperpriorConfig) -> nn.Module:
    """A fresh (untrained) CompressAI model for ``config``."""
    models = compressai_module()
    if config.model in ONE_CHANNEL_COUNT:
        return models.Cheng2020Anchor(config.n)
    classes = {"factorized": models.FactorizedPrior, "hyperprior": models.ScaleHyperprior,
               "mean": models.MeanScaleHyperprior, "joint": models.JointAutoregressiveHierarchicalPriors}
    return classes[config.model](config.n, config.m)


def latent_channels_for(model: str, latent_channels: int | None, hidden_channels: int) -> int:
    """M for ``--latent-channels``: as given, else N for a model of one channel count, else 96."""
    if latent_channels is not None:
        return latent_channels
    return hidden_channels if model in ONE_CHANNEL_COUNT else DEFAULT_LATENT_CHANNELS
