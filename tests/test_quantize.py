"""Tests for ganrev.quantize: the latent grid, its range coding, and the quantizer-in-the-loop refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganrev.errors import GanrevError
from ganrev.quantize import Quantizer, latent_entropy_bits, refine_quantized


def test_quantizer_grid_round_trip():
    q = Quantizer(bits=4, clip=3.0)
    z = torch.linspace(-5, 5, 101)
    symbols = q.quantize(z)
    assert symbols.min() == 0 and symbols.max() == 15
    grid = q.dequantize(torch.arange(16))
    assert torch.allclose(grid[[0, -1]], torch.tensor([-3.0, 3.0]))
    inside = z.abs() <= 3
    assert (q.dequantize(symbols)[inside] - z[inside]).abs().max() <= q.step / 2 + 1e-6
    assert torch.equal(q.quantize(grid), torch.arange(16))


@pytest.mark.parametrize("bits", [2, 5, 8, 12, 16])
def test_entropy_coder_round_trip_and_rate(bits):
    q = Quantizer(bits=bits, clip=3.0)
    z = torch.randn(100, generator=torch.Generator().manual_seed(bits)).clamp(-3, 3)
    symbols = q.quantize(z).numpy()
    sigma, payload = q.best_sigma(symbols)
    assert np.array_equal(q.decode_symbols(payload, len(symbols), sigma), symbols)
    # The range coder stays within a few bytes of the ideal code length under its own model.
    assert len(payload) * 8 <= latent_entropy_bits(symbols, q, sigma) + 40


def test_quantizer_rejects_bad_settings():
    for bits in (1, 17):
        with pytest.raises(GanrevError, match="bits"):
            Quantizer(bits=bits, clip=3.0)


def test_refine_quantized_splits_columns_among_quantizers_and_keeps_the_best_grid_point():
    """A loss whose minimum lies between grid points, in two column groups quantized differently: the
    refinement returns each group's indices on its own grid, never a worse row than plain rounding, and with
    0 iterations plain rounding itself."""
    torch.manual_seed(0)
    coarse, fine = Quantizer(2, 3.0), Quantizer(6, 1.0)
    goal = torch.cat([torch.rand(5, 3) * 6 - 3, torch.rand(5, 4) * 2 - 1], dim=1)
    start = goal + 0.3 * torch.randn(5, 7)
    loss_at = lambda values: (values - goal).square().sum(1)  # noqa: E731
    rounded = refine_quantized(start, [(coarse, 3), (fine, 4)], loss_at, 0, 0.1)
    refined = refine_quantized(start, [(coarse, 3), (fine, 4)], loss_at, 40, 0.05)
    assert torch.equal(rounded[0], coarse.quantize(start[:, :3]))
    assert torch.equal(rounded[1], fine.quantize(start[:, 3:]))

    def loss_of(symbols: list[torch.Tensor]) -> torch.Tensor:
        return loss_at(torch.cat([coarse.dequantize(symbols[0]), fine.dequantize(symbols[1])], dim=1))

    assert refined[0].shape == (5, 3) and refined[1].shape == (5, 4)
    assert int(refined[0].max()) < coarse.levels and int(refined[1].max()) < fine.levels
    assert torch.all(loss_of(refined) <= loss_of(rounded))
    assert loss_of(refined).sum() < loss_of(rounded).sum()  # the start is off by 0.3: rounding it is not optimal
