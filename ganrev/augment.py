"""Differentiable augmentation of the discriminator's inputs (DiffAugment: Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training").

On a few thousand images D memorises the training set and its gradients stop teaching G anything. Applying
the *same kind* of random colour and translation changes to real and generated images before D, and letting
gradients flow through them to G, keeps D from memorising without teaching G to draw augmented images.
Images are in [-1, 1], ``[N, C, H, W]``; every op is differentiable in the images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add one random offset in [-0.5, 0.5) per image (in [0, 1] units, i.e. [-1, 1) here)."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * 2


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance from its gray value by a random factor in [0, 2); no-op on gray images."""
    if x.shape[1] == 1:
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each image's distance from its mean by a random factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by a random whole number of pixels, up to ``ratio`` of its size, filling with -1.

    The fill is the minimum value (black in [-1, 1]), as in DiffAugment: the shift itself, not the fill
    colour, is what D must learn to ignore.
    """
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).clamp(-1, h)  # -1 and h are padding
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    index = ((rows + 1) * (w + 2) + (cols + 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, index).view_as(x)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """Colour (brightness, saturation, contrast) then translation: the policy 'color,translation'."""
    return translation(contrast(saturation(brightness(x))))


__all__ = ["brightness", "contrast", "diff_augment", "saturation", "translation"]
