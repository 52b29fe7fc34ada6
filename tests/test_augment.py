"""Augmentations: DiffAugment ops and fit-generator's reconstruction policy; shapes, what each op does to a known
image, and gradients flowing through them."""

from __future__ import annotations

import torch

import pytest

from ganrev.augment import (brightness, channel_permutation, contrast, diff_augment, random_affine,
                            reconstruction_augment, saturation, translation)


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


def _square(size: int = 32) -> torch.Tensor:
    """A white image in [-1, 1] with a centred coloured square (red 1, green -1, blue 0)."""
    x = torch.ones(1, 3, size, size)
    x[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1)
    return x


def test_random_affine_identity_settings_keep_the_image():
    x = _square()
    same = random_affine(x, scale=(1.0, 1.0), max_shift=0.0, max_degrees=0.0)
    assert torch.allclose(same, x, atol=1e-5)


def test_random_affine_zoom_out_fills_with_white_and_keeps_the_object_centred():
    torch.manual_seed(0)
    x = _square().expand(16, -1, -1, -1)
    small = random_affine(x, scale=(0.5, 0.5), max_shift=0.0, max_degrees=0.0)
    green = (small[:, 1] < 0).float()  # the square's pixels (the background and fill are white)
    assert green.sum(dim=(1, 2)).sub(16 * 16 / 4).abs().max() <= 8  # half the side: a quarter of the area
    assert torch.allclose(small[:, :, :6, :], torch.ones_like(small[:, :, :6, :]))  # new border: white
    rows = torch.nonzero(green[0]).float().mean(0)
    assert torch.allclose(rows, torch.tensor([15.5, 15.5]), atol=0.6)


def test_random_affine_shifts_stay_within_bounds_and_vary():
    torch.manual_seed(1)
    x = _square().expand(64, -1, -1, -1)
    moved = random_affine(x, scale=(1.0, 1.0), max_shift=0.125, max_degrees=0.0)
    centres = torch.stack([torch.nonzero(m[1] < 0).float().mean(0) for m in moved])
    offsets = centres - 15.5
    assert offsets.abs().max() <= 32 * 0.125 + 0.5
    assert offsets.std(0).min() > 1.0  # the shift differs from image to image


def test_channel_permutation_reorders_channels_and_leaves_gray_alone():
    torch.manual_seed(2)
    x = torch.rand(64, 3, 4, 4)
    out = channel_permutation(x)
    for before, after in zip(x, out):
        order = [next(j for j in range(3) if torch.equal(after[i], before[j])) for i in range(3)]
        assert sorted(order) == [0, 1, 2]
    assert not torch.equal(out, x)
    gray = torch.rand(4, 1, 4, 4)
    assert torch.equal(channel_permutation(gray), gray)


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstruction_augment_keeps_range_shape_and_white_background(channels: int):
    torch.manual_seed(3)
    x = (_square() if channels == 3 else _square()[:, 1:2]).expand(32, -1, -1, -1)  # gray: the dark square
    out = reconstruction_augment(x)
    assert out.shape == x.shape and out.min() >= -1 - 1e-5 and out.max() <= 1 + 1e-5
    assert torch.allclose(out[:, :, 0, 0], torch.ones(32, channels), atol=1e-5)  # corners stay white
    assert not torch.equal(reconstruction_augment(x), out)
