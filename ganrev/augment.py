"""Augmentations for training on few images.

:func:`diff_augment`: differentiable augmentation of the discriminator's inputs (DiffAugment: Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training"). On a few thousand images D memorises the
training set and its gradients stop teaching G anything. Applying the *same kind* of random colour and
translation changes to real and generated images before D, and letting gradients flow through them to G, keeps
D from memorising without teaching G to draw augmented images.

:func:`reconstruction_augment`: new training images for the encoder and generator to reconstruct (the target is
the augmented image itself), so that they learn shapes, positions and colours beyond the few thousand they see.

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


def random_affine(x: torch.Tensor, scale: tuple[float, float] = (0.8, 1.05), max_shift: float = 0.0625,
                  max_degrees: float = 10.0, fill: float = 1.0) -> torch.Tensor:
    """Zoom by a random factor in ``scale``, rotate up to ``max_degrees`` and shift up to ``max_shift`` of the
    size, per image, with bilinear sampling; uncovered pixels take ``fill`` (1: the white background that
    emoji are composited on, so a zoomed-out image still looks like one)."""
    n = x.shape[0]
    options = {"device": x.device, "dtype": x.dtype}
    zoom = torch.empty(n, **options).uniform_(*scale)
    angle = torch.empty(n, **options).uniform_(-max_degrees, max_degrees) * (torch.pi / 180)
    shift = torch.empty(n, 2, **options).uniform_(-2 * max_shift, 2 * max_shift)  # grid units: the size is 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output -> input coordinates: inverse zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with 0: sample x - fill so that the padding comes back as ``fill``.
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def channel_permutation(x: torch.Tensor) -> torch.Tensor:
    """Reorder the colour channels of each image at random (one of the 6 orders; gray images unchanged): a
    yellow face becomes a cyan or magenta one, with the same shapes and the same white background."""
    if x.shape[1] != 3:
        return x
    orders = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], device=x.device)
    index = orders[torch.randint(0, 6, (x.shape[0],), device=x.device)]
    return x.gather(1, index.view(-1, 3, 1, 1).expand_as(x))


def reconstruction_augment(x: torch.Tensor) -> torch.Tensor:
    """The ``--augment`` policy of fit-generator: a random affine change (:func:`random_affine`) on every
    image and a random channel order (:func:`channel_permutation`) on half of them."""
    moved = random_affine(x)
    recoloured = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(recoloured, channel_permutation(moved), moved)


__all__ = ["brightness", "channel_permutation", "contrast", "diff_augment", "random_affine",
           "reconstruction_augment", "saturation", "translation"]
