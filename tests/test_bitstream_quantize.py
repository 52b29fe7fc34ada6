"""Tests for ganrev.bitstream.quantize: the latent grid, its range coding, and the quantizer-in-the-loop refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganrev.errors import GanrevError
from ganrev.bitstream.quantize import Quantizer, RowBlocks, latent_entropy_bits, refine_quantized


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


def test_row_blocks_quantize_each_block_on_its_own_grid_and_refine_as_the_blocks_would_alone():
    """Three precisions stacked as blocks of rows: each block quantizes and dequantizes exactly as its own
    quantizer does, and one refinement of the stack gives each block what a refinement of it alone gives."""
    torch.manual_seed(1)
    grids = (Quantizer(3, 3.0), Quantizer(5, 3.0), Quantizer(8, 3.0))
    blocks = RowBlocks(grids)
    goal, start = torch.rand(4, 6) * 6 - 3, torch.rand(4, 6) * 6 - 3
    stacked = start.repeat(3, 1)
    symbols = blocks.quantize(stacked)
    for q, block in zip(grids, symbols.split(4)):
        assert torch.equal(block, q.quantize(start))
    assert torch.equal(blocks.dequantize(symbols), torch.cat([q.dequantize(q.quantize(start)) for q in grids]))
    assert blocks.clip == 3.0

    loss_at = lambda values: (values - goal.repeat(len(values) // 4, 1)).square().sum(1)  # noqa: E731
    (together,) = refine_quantized(stacked, [(blocks, 6)], loss_at, 25, 0.05)
    for q, block in zip(grids, together.split(4)):
        (alone,) = refine_quantized(start, [(q, 6)], loss_at, 25, 0.05)
        assert torch.equal(block, alone)


def test_row_blocks_refuse_mixed_ranges_and_uneven_rows():
    with pytest.raises(GanrevError, match="same range"):
        RowBlocks((Quantizer(3, 3.0), Quantizer(3, 1.0)))
    with pytest.raises(GanrevError, match="at least one"):
        RowBlocks(())
    with pytest.raises(GanrevError, match="equal blocks"):
        RowBlocks((Quantizer(3, 3.0), Quantizer(4, 3.0))).quantize(torch.zeros(5, 2))
