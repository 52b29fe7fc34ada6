"""ComCNN and RecCNN (seed 003; Jiang et al., "An End-to-End Compression Framework Based on Convolutional Neural
Networks", 2017).

ComCNN maps an image to a compact image of half its size, which a standard codec (JPEG) stores; the decoder
upscales the decoded compact image (bicubic) and RecCNN restores it by predicting the residual. The paper's
ComCNN (3x3 conv; a stride-2 3x3 conv + BN; 3x3 conv to the image channels) is kept, with one change that
makes short CPU training safe: its output is added to a 2x2-average downscale of the input and its last layer
starts at zero, so training starts from plain "downscale, JPEG, upscale" and moves away only where the loss
falls. RecCNN is the paper's VDSR-like residual stack, narrower and shallower for CPU (``depth``, ``width``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURE = "comcnn-reccnn"


@dataclass(frozen=True)
class ComCnnConfig:
    channels: int = 3
    com_width: int = 64
    rec_width: int = 48
    rec_depth: int = 10  # convolutions in RecCNN (the paper: 20 of width 64)

    def __post_init__(self) -> None:
        if min(self.channels, self.com_width, self.rec_width) < 1 or self.rec_depth < 2:
            raise ValueError(f"invalid ComCNN/RecCNN config {self}")


class ComCNN(nn.Module):
    """``[N, C, H, W]`` in [0, 1] -> compact ``[N, C, ceil(H/2), ceil(W/2)]`` in [0, 1]."""

    def __init__(self, config: ComCnnConfig = ComCnnConfig()) -> None:
        super().__init__()
        c, w = config.channels, config.com_width
        self.body = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, c, 3, padding=1))
        last = self.body[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        base = F.avg_pool2d(image, 2, ceil_mode=True)
        return (base + self.body(image)).clamp(0, 1)


class RecCNN(nn.Module):
    """Upscaled decoded compact image ``[N, C, H, W]`` -> restored image (input + predicted residual)."""

    def __init__(self, config: ComCnnConfig = ComCnnConfig()) -> None:
        super().__init__()
        c, w = config.channels, config.rec_width
        layers: list[nn.Module] = [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(config.rec_depth - 2):
            layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(w, c, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, upscaled: torch.Tensor) -> torch.Tensor:
        return upscaled + self.body(upscaled)


def upscale(compact: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic 2x upscale of a compact image, cropped to ``height x width`` and clamped to [0, 1]."""
    up = F.interpolate(compact, scale_factor=2, mode="bicubic", align_corners=False)
    return up[..., :height, :width].clamp(0, 1)
