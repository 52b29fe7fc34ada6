"""AR-CNN + ASPP (seed 004): JPEG artefact removal.

AR-CNN (Dong et al., "Compression Artifacts Reduction by a Deep Convolutional Network", ICCV 2015) has four
convolutions: feature extraction (9x9, 64), feature enhancement (7x7, 32), mapping (1x1, 16) and reconstruction
(5x5). Seed 004 adds an atrous spatial pyramid pooling block (DeepLab's ASPP: parallel 3x3 convolutions with
growing dilation, concatenated and merged by a 1x1) after the enhancement, so a pixel sees its neighbouring 8x8
JPEG blocks, and a global residual connection: the net predicts the correction to the decoded JPEG.

The other layers start at He initialisation; the reconstruction layer starts at zero, so an untrained net returns its input: training can only move the
output away from plain JPEG where that lowers the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ARCHITECTURE = "arcnn-aspp"


@dataclass(frozen=True)
class ArcnnConfig:
    channels: int = 3
    features: int = 64  # feature extraction, 9x9
    enhanced: int = 32  # feature enhancement, 7x7
    mapped: int = 16  # mapping, 1x1
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # ASPP branches: a dilation of 8 spans the neighbouring blocks

    def __post_init__(self) -> None:
        if min(self.channels, self.features, self.enhanced, self.mapped) < 1 or not self.dilations \
                or min(self.dilations) < 1:
            raise ValueError(f"invalid ARCNN config {self}")


class Aspp(nn.Module):
    """Parallel dilated 3x3 convolutions, concatenated and merged back to ``channels`` by a 1x1 convolution."""

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.PReLU(channels))
            for d in dilations)
        self.merge = nn.Sequential(nn.Conv2d(channels * len(dilations), channels, 1), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([branch(x) for branch in self.branches], dim=1))


class ArcnnAspp(nn.Module):
    """``restored = jpeg + net(jpeg)`` for images in [0, 1] (output not clamped: clamp for display)."""

    def __init__(self, config: ArcnnConfig = ArcnnConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.extract = nn.Sequential(nn.Conv2d(c.channels, c.features, 9, padding=4), nn.PReLU(c.features))
        self.enhance = nn.Sequential(nn.Conv2d(c.features, c.enhanced, 7, padding=3), nn.PReLU(c.enhanced))
        self.aspp = Aspp(c.enhanced, c.dilations)
        self.map = nn.Sequential(nn.Conv2d(c.enhanced, c.mapped, 1), nn.PReLU(c.mapped))
        self.reconstruct = nn.Conv2d(c.mapped, c.channels, 5, padding=2)
        # He initialisation for the PReLU layers: with PyTorch's default each layer shrinks its input (std 0.2 ->
        # 0.07 by the mapping), and a short CPU run barely learns (AR-CNN's N(0, 0.001) was made for long SGD runs).
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module is not self.reconstruct:
                nn.init.kaiming_normal_(module.weight, a=0.25)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.reconstruct.weight)
        nn.init.zeros_(self.reconstruct.bias)

    def forward(self, jpeg: torch.Tensor) -> torch.Tensor:
        features = self.aspp(self.enhance(self.extract(jpeg)))
        return jpeg + self.reconstruct(self.map(features))
