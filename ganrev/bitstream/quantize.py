"""Latent quantization and entropy coding: a uniform grid of ``2**bits`` points over ``[-clip, clip]``, range-coded
under a discretised Gaussian N(0, sigma) (the generator's prior, sigma chosen per file to minimise its
size), and the quantizer-in-the-loop refinement that picks grid points by the decoded image.

Why a uniform grid in z rather than uniform in the Gaussian CDF: a CDF-uniform grid makes every symbol
equally likely under the prior, so entropy coding could not save a single bit; a uniform grid with an
entropy coder sits ~0.25 bit/coordinate from the Gaussian's rate-distortion bound at high rate, fixed-rate
Lloyd-Max designs do worse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import constriction
import numpy as np
import torch

from ganrev.adam import Adam
from ganrev.bitstream.container import CLIP_UNITS, SIGMA_UNITS
from ganrev.errors import GanrevError


@dataclass(frozen=True)
class Quantizer:
    """Uniform grid of ``2**bits`` points over ``[-clip, clip]``, entropy-coded under N(0, sigma)."""

    bits: int
    clip: float

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise GanrevError(f"bits must be between 2 and 16, got {self.bits}")
        if not 0 < self.clip < 256 / CLIP_UNITS:
            raise GanrevError(f"clip must be in (0, 16), got {self.clip}")

    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def step(self) -> float:
        return 2 * self.clip / (self.levels - 1)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Grid indices (int64) of the nearest grid points."""
        return ((z.clamp(-self.clip, self.clip) + self.clip) / self.step).round().long().clamp(0, self.levels - 1)

    def dequantize(self, symbols: torch.Tensor) -> torch.Tensor:
        return symbols.float() * self.step - self.clip

    def _model(self, sigma: float) -> constriction.stream.model.QuantizedGaussian:
        # In index units the prior N(0, sigma) has mean (L-1)/2 and std sigma/step; the end bins take the tails.
        return constriction.stream.model.QuantizedGaussian(0, self.levels - 1, (self.levels - 1) / 2,
                                                          sigma / self.step)

    def encode_symbols(self, symbols: np.ndarray, sigma: float) -> bytes:
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(np.ascontiguousarray(symbols, dtype=np.int32), self._model(sigma))
        return encoder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")

    def decode_symbols(self, payload: bytes, count: int, sigma: float) -> np.ndarray:
        padded = payload + b"\0" * (-len(payload) % 4)
        try:
            decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))
            return np.asarray(decoder.decode(self._model(sigma), count), dtype=np.int64)
        except Exception as exc:  # constriction reports damaged streams with its own exception types
            raise GanrevError(f"corrupted ganrev payload: {exc}") from exc

    def best_sigma(self, symbols: np.ndarray) -> tuple[float, bytes]:
        """The entropy-model sigma (in 1/32 steps, 0.25..4) giving the smallest payload, and that payload."""
        candidates = [(self.encode_symbols(symbols, units / SIGMA_UNITS), units) for units in range(8, 129, 2)]
        payload, units = min(candidates, key=lambda item: (len(item[0]), abs(item[1] - SIGMA_UNITS)))
        return units / SIGMA_UNITS, payload


@dataclass(frozen=True)
class RowBlocks:
    """One :class:`Quantizer` per block of consecutive rows (equal blocks, in order), all over the same
    ``[-clip, clip]``: lets one refinement batch serve several precisions at once (rate control refines a
    small group's latent and modulation at every pair of precisions together). Each block is quantized by
    its own quantizer, exactly as that quantizer alone would."""

    quantizers: tuple[Quantizer, ...]

    def __post_init__(self) -> None:
        if not self.quantizers or len({q.clip for q in self.quantizers}) != 1:
            raise GanrevError("row blocks need at least one quantizer, all over the same range")

    @property
    def clip(self) -> float:
        return self.quantizers[0].clip

    def _blocks(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(rows) % len(self.quantizers):
            raise GanrevError(f"{len(rows)} rows do not split into {len(self.quantizers)} equal blocks")
        return rows.split(len(rows) // len(self.quantizers))

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([q.quantize(block) for q, block in zip(self.quantizers, self._blocks(z))])

    def dequantize(self, symbols: torch.Tensor) -> torch.Tensor:
        return torch.cat([q.dequantize(block) for q, block in zip(self.quantizers, self._blocks(symbols))])


def refine_quantized(values: torch.Tensor, quantizers: Sequence[tuple[Quantizer | RowBlocks, int]],
                     loss_at: Callable[[torch.Tensor], torch.Tensor], iters: int, lr: float) -> list[torch.Tensor]:
    """Quantizer-in-the-loop refinement: Adam on continuous ``values`` ``[N, D]`` whose forward pass sees them
    quantized, the straight-through estimator passing ``loss_at``'s gradient at the grid point to the value.

    The columns are split among ``quantizers``, each given with its column count (a latent; a latent and a
    modulation); a :class:`RowBlocks` quantizes its columns block of rows by block. The best *quantized* row
    seen by ``loss_at`` (``[N, D] -> [N]``, lower is better) is kept, so refinement never makes an image worse
    than plain rounding. Returns each quantizer's grid indices.
    """
    widths = [width for _, width in quantizers]

    def snap(current: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(grid indices per quantizer, the values they stand for)"""
        parts = current.detach().split(widths, dim=1)
        symbols = [q.quantize(part) for (q, _), part in zip(quantizers, parts)]
        return symbols, torch.cat([q.dequantize(s) for (q, _), s in zip(quantizers, symbols)], dim=1)

    values = values.clone()
    best, snapped = snap(values)
    with torch.no_grad():
        best_loss = loss_at(snapped)
    adam = Adam(values)
    values.requires_grad_(True)
    for _ in range(iters):
        symbols, snapped = snap(values)
        loss = loss_at(values + (snapped - values).detach())
        better = loss.detach() < best_loss
        best_loss = torch.where(better, loss.detach(), best_loss)
        best = [torch.where(better[:, None], new, old) for new, old in zip(symbols, best)]
        (grad,) = torch.autograd.grad(loss.sum(), values)
        adam.step(grad, lr)
        with torch.no_grad():
            for (q, _), part in zip(quantizers, values.split(widths, dim=1)):
                part.clamp_(-q.clip, q.clip)
    return best


def latent_entropy_bits(symbols: np.ndarray, quantizer: Quantizer, sigma: float) -> float:
    """Ideal code length (bits) of ``symbols`` under the entropy model: the bound the range coder approaches."""
    model_std = sigma / quantizer.step
    centre = (quantizer.levels - 1) / 2
    cdf = lambda x: 0.5 * (1 + math.erf((x - centre) / (model_std * math.sqrt(2))))  # noqa: E731
    total = 0.0
    for k in symbols.tolist():
        lo = 0.0 if k == 0 else cdf(k - 0.5)
        hi = 1.0 if k == quantizer.levels - 1 else cdf(k + 0.5)
        total -= math.log2(max(hi - lo, 1e-300))
    return total
