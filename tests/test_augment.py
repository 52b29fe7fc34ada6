"""DiffAugment ops: shapes, what each op does to a known image, and gradients flowing through them."""

from __future__ import annotations

import torch

from ganrev.augment import brightness, contrast, diff_augment, saturation, translation


def test_translation_shifts_whole_pixels_and_fills_with_black():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one bright pixel on a mid-gray (0 in [-1, 1]) image
    shifted = translation(x, ratio=0.125)
    assert shifted.shape == x.shape
    for image in shifted:
        ys, xs = torch.nonzero(image[0] == 1.0, as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 8) <= 2 and abs(int(xs[0]) - 8) <= 2
    moved = (shifted != x).flatten(1).any(1)
    assert moved.float().mean() > 0.5  # most images move
    assert set(shifted.unique().tolist()) <= {-1.0, 0.0, 1.0}  # the fill is -1, nothing is interpolated


def test_colour_ops_keep_structure_and_gray_images():
    torch.manual_seed(1)
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    b = brightness(x)
    offset = (b - x).flatten(1)
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-6)  # one offset per image
    assert offset.abs().max() <= 1.0
    gray = torch.rand(4, 1, 8, 8)
    assert torch.equal(saturation(gray), gray)
    c = contrast(x)
    assert torch.allclose(c.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)  # contrast keeps the mean


def test_diff_augment_is_differentiable_and_random():
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = diff_augment(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not torch.equal(diff_augment(x.detach()), diff_augment(x.detach()))
