"""The DCGAN networks, after pytorch/examples' dcgan: generator, discriminator, and the encoder trained with G.

The generator also takes an optional :class:`Modulation` (a per-image scale and shift of one batch-norm
layer's channels), the second layer of a ``latent+modulation`` file (:mod:`ganrev.bitstream.modulation`).
Checkpoints of these networks are :mod:`ganrev.models`'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganrev.errors import GanrevError


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator: its architecture hyper-parameters."""

    latent_dim: int = 100
    channels: int = 3
    resolution: int = 64
    width: int = 64  # ngf in pytorch/examples: channels of the last hidden layer

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise GanrevError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if self.channels not in (1, 3):
            raise GanrevError(f"channels must be 1 or 3, got {self.channels}")
        if self.latent_dim < 1 or self.width < 1:
            raise GanrevError("latent_dim and width must be positive")

    @property
    def upsamplings(self) -> int:
        """Number of stride-2 layers between the 4x4 seed and the output."""
        return int(math.log2(self.resolution)) - 2


class Generator(nn.Module):
    """z ``[N, latent_dim]`` -> image ``[N, C, R, R]`` in [-1, 1] (tanh)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        mult = 2 ** (config.upsamplings - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.latent_dim, config.width * mult, 4, 1, 0, bias=False),
            nn.BatchNorm2d(config.width * mult),
            nn.ReLU(True),
        ]
        while mult > 1:
            layers += [
                nn.ConvTranspose2d(config.width * mult, config.width * mult // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(config.width * mult // 2),
                nn.ReLU(True),
            ]
            mult //= 2
        layers += [nn.ConvTranspose2d(config.width, config.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, modulation: Modulation | None = None) -> torch.Tensor:
        h = z.view(z.shape[0], -1, 1, 1)
        if modulation is None:
            return self.main(h)
        norms = 0
        for module in self.main:
            h = module(h)
            if isinstance(module, nn.BatchNorm2d):
                if norms == modulation.layer:
                    h = modulation.apply(h)
                norms += 1
        return h

    def images(self, z: torch.Tensor, modulation: Modulation | None = None) -> torch.Tensor:
        """Generated images mapped to the [0, 1] range ganrev uses everywhere else."""
        return (self(z, modulation) + 1.0) * 0.5

    def norm_channels(self) -> list[int]:
        """Channels of each batch-norm layer, from the 4x4 seed to the last hidden layer: the layers a
        :class:`Modulation` can scale and shift."""
        return [module.num_features for module in self.main if isinstance(module, nn.BatchNorm2d)]

    def folded(self, dtype: torch.dtype = torch.float32) -> FoldedGenerator:
        """A frozen copy of this generator in eval mode for the latent search: see :class:`FoldedGenerator`."""
        return FoldedGenerator(self, dtype)


class FoldedGenerator(nn.Module):
    """The generator as eval mode computes it, with each batch norm folded into the transposed convolution
    before it (scale into its weights, shift into a bias), weights in ``dtype`` and activations channels-last.

    The same function as ``generator.images`` (to float rounding in fp32), only faster: no batch-norm passes
    forward or backward, and channels-last is the layout oneDNN's bf16 convolutions run fastest in (measured on
    one thread of a Xeon with AMX-BF16, 64 rows of emoji64, forward and gradient to z: 0.55 ms per image in bf16
    channels-last, 0.73 in bf16 contiguous, 1.50 in fp32 channels-last, 1.63 in fp32 contiguous). No modulation
    and no parameter gradients: a search moves z only. Outputs are fp32 images in [0, 1], whatever ``dtype``.
    """

    def __init__(self, generator: Generator, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config, self.dtype = generator.config, dtype
        layers: list[nn.Module] = []
        modules = list(generator.main)
        for index, module in enumerate(modules):
            if not isinstance(module, nn.ConvTranspose2d):
                if not isinstance(module, nn.BatchNorm2d):
                    layers.append(module)  # ReLU, Tanh
                continue
            weight = module.weight.detach()
            bias = torch.zeros(module.out_channels)
            following = modules[index + 1] if index + 1 < len(modules) else None
            if isinstance(following, nn.BatchNorm2d):
                scale = following.weight.detach() / (following.running_var + following.eps).sqrt()
                weight = weight * scale[None, :, None, None]  # ConvTranspose2d weights are [in, out, kh, kw]
                bias = following.bias.detach() - following.running_mean * scale
            # skip_init: the weights are overwritten below, so drawing random ones would be wasted work (most of the
            # fold's time) and would advance torch's global generator on every search
            conv = nn.utils.skip_init(nn.ConvTranspose2d, module.in_channels, module.out_channels, module.kernel_size,
                                      module.stride, module.padding, bias=True)
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            layers.append(conv)
        self.main = nn.Sequential(*layers).to(device=generator.main[0].weight.device, dtype=dtype)
        self.main.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    def images(self, z: torch.Tensor) -> torch.Tensor:
        """``[N, latent_dim]`` -> fp32 images ``[N, C, R, R]`` in [0, 1] (contiguous)."""
        h = z.to(self.dtype).view(z.shape[0], -1, 1, 1).contiguous(memory_format=torch.channels_last)
        return ((self.main(h).float() + 1.0) * 0.5).contiguous()


@dataclass(frozen=True)
class Modulation:
    """A per-image, per-channel affine change of one of G's batch-norm outputs (FiLM, Perez et al. 2018):
    ``h * (1 + scale) + shift`` after batch-norm layer ``layer`` (0 = the 4x4 seed's). ``params`` is
    ``[N, 2C]``, the C scales then the C shifts, one row per latent of the batch; zeros change nothing."""

    layer: int
    params: torch.Tensor

    def __post_init__(self) -> None:
        if self.layer < 0 or self.params.ndim != 2 or self.params.shape[1] % 2:
            raise GanrevError(f"a modulation needs a layer >= 0 and [N, 2C] params, got layer {self.layer} and "
                              f"{list(self.params.shape)}")

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        scale, shift = self.params.to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift


def _downsampling_stack(config: GeneratorConfig, outputs: int, *, spectral: bool = False) -> nn.Sequential:
    """The DCGAN discriminator's body: stride-2 convolutions from ``[C, R, R]`` to ``[outputs, 1, 1]``.

    ``spectral``: spectral norm on every convolution instead of batch norm (Miyato et al. 2018), the
    Lipschitz constraint that keeps a hinge-loss discriminator from overpowering G on small data sets.
    """
    wrap = nn.utils.parametrizations.spectral_norm if spectral else (lambda module: module)
    layers: list[nn.Module] = [wrap(nn.Conv2d(config.channels, config.width, 4, 2, 1, bias=spectral)),
                               nn.LeakyReLU(0.2, inplace=True)]
    mult = 1
    for _ in range(config.upsamplings - 1):
        layers.append(wrap(nn.Conv2d(config.width * mult, config.width * mult * 2, 4, 2, 1, bias=spectral)))
        if not spectral:
            layers.append(nn.BatchNorm2d(config.width * mult * 2))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        mult *= 2
    layers.append(wrap(nn.Conv2d(config.width * mult, outputs, 4, 1, 0, bias=spectral)))
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """image ``[N, C, R, R]`` in [-1, 1] -> one logit per image (no sigmoid: trained with BCE-with-logits
    or the hinge loss). ``spectral``: spectral norm instead of batch norm (see :func:`_downsampling_stack`)."""

    def __init__(self, config: GeneratorConfig, *, spectral: bool = False) -> None:
        super().__init__()
        self.main = _downsampling_stack(config, 1, spectral=spectral)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


class Encoder(nn.Module):
    """image ``[N, C, R, R]`` in [0, 1] -> latent ``[N, latent_dim]``: the DCGAN discriminator's shape with
    ``latent_dim`` outputs. Trained with G to reconstruct (``G(E(x)) ~ x``) and to keep E(x) ~ N(0, I), the
    prior the range coder assumes; its output starts the latent search."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.main = _downsampling_stack(config, config.latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images * 2 - 1).flatten(1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


__all__ = ["Discriminator", "Encoder", "Generator", "GeneratorConfig", "Modulation", "init_weights"]
