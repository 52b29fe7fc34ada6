"""Bjøntegaard deltas: how much rate (:func:`bd_rate`) or quality (:func:`bd_quality`) one rate-distortion
curve differs from a reference curve by, averaged over the stretch where both are measured.

Computed the way CompressAI's and the JVET/AOM tools' "pchip" BD-rate is: rate in the log domain, each curve
interpolated piecewise-cubically with a monotone Hermite interpolant (PCHIP: it passes through every measured
point and, unlike the original third-order polynomial fit, never overshoots between them), the gap between the
two interpolants integrated exactly over the overlap and divided by its length. A curve is a sequence of
``(bpp, quality)`` points in any order; quality is any metric where higher is better (SSIM, MS-SSIM, PSNR).

Which points count, so that every input gives one well-defined number or None:

- a point with bpp <= 0 (no log rate: e.g. a budget no image had a file within) or with a non-finite value
  (a lossless PSNR of infinity, a metric not measured) is left out;
- points sharing a quality (for :func:`bd_rate`) keep the fewest bits, the cheapest way the curve reaches that
  quality; points sharing a rate (for :func:`bd_quality`) keep the best quality;
- the rest are sorted by the interpolated axis, so their order does not matter. A non-monotone curve (more bits
  buying less quality somewhere) is interpolated through its points as they are, not smoothed or refused: the
  published tools assume monotone curves, and the figure is as meaningful as the curve is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["bd_quality", "bd_rate"]

Point = tuple[float, float]  # (bpp, quality)


def _function(pairs: Iterable[tuple[float, float]], keep_larger_y: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x, y)`` with x strictly increasing (one y per x: the larger or the smaller), or None under 2 points."""
    by_x: dict[float, float] = {}
    for x, y in pairs:
        if x in by_x:
            y = max(y, by_x[x]) if keep_larger_y else min(y, by_x[x])
        by_x[x] = y
    if len(by_x) < 2:
        return None
    xs = sorted(by_x)
    return np.array(xs, dtype=float), np.array([by_x[x] for x in xs], dtype=float)


def _average_gap(reference: tuple[np.ndarray, np.ndarray] | None,
                 test: tuple[np.ndarray, np.ndarray] | None) -> float | None:
    """Mean of test(x) - reference(x), each a PCHIP through its points, over the x both cover; None if they do
    not overlap (a single shared x is no interval to average over) or either curve is None."""
    if reference is None or test is None:
        return None
    low, high = max(reference[0][0], test[0][0]), min(reference[0][-1], test[0][-1])
    if not high > low:
        return None
    area = [PchipInterpolator(xs, ys).integrate(low, high) for xs, ys in (reference, test)]
    return float(area[1] - area[0]) / (high - low)


def _usable(curve: Iterable[Point]) -> list[Point]:
    return [(float(bpp), float(quality)) for bpp, quality in curve
            if bpp is not None and quality is not None and math.isfinite(bpp) and bpp > 0 and math.isfinite(quality)]


def bd_rate(reference: Iterable[Point], test: Iterable[Point]) -> float | None:
    """Average rate difference of ``test`` against ``reference`` in percent at equal quality: -20 means ``test``
    needs 20 % fewer bits on average over the qualities both curves reach, +25 that it needs 25 % more.

    ln(bpp) as a function of quality, averaged over the overlapping quality interval [max of the two lowest
    qualities, min of the two highest]; the mean log-rate difference d gives 100 (e^d - 1). Outside the overlap
    nothing is extrapolated, so the figure says nothing about rates only one curve reaches.

    None when the qualities do not overlap in an interval, or when either curve has fewer than 2 distinct
    qualities among its usable points (no interval to interpolate over); see the module's notes.
    """
    gap = _average_gap(*(_function(((q, math.log(bpp)) for bpp, q in _usable(curve)), keep_larger_y=False)
                         for curve in (reference, test)))
    return None if gap is None else 100.0 * math.expm1(gap)


def bd_quality(reference: Iterable[Point], test: Iterable[Point]) -> float | None:
    """Average quality difference of ``test`` against ``reference`` at equal rate (BD-PSNR when quality is PSNR:
    +0.5 means 0.5 dB better on average), in the quality's own units.

    Quality as a function of log rate, averaged over the overlapping log-rate interval (the base of the log does
    not matter: an average over an interval is unchanged by scaling its axis). None under the same conditions
    as :func:`bd_rate`, with distinct rates in place of distinct qualities.
    """
    return _average_gap(*(_function(((math.log(bpp), q) for bpp, q in _usable(curve)), keep_larger_y=True)
                          for curve in (reference, test)))
