"""Bjøntegaard deltas (ganrev.evaluate.bdrate) against cases computed by hand.

CompressAI 1.2.8 ships no BD-rate helper, so the independent check is a dense trapezoid sum over SciPy's
pchip_interpolate rather than another BD-rate implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.interpolate import pchip_interpolate

from ganrev.evaluate.bdrate import bd_quality, bd_rate

# four points, bent: PCHIP is not linear here
REFERENCE = [(0.1, 0.50), (0.3, 0.70), (0.5, 0.75), (1.2, 0.90)]


@pytest.mark.parametrize(("factor", "expected"), [(0.8, -20.0), (1.25, 25.0), (1.0, 0.0)])
def test_a_constant_rate_factor_at_the_same_qualities_is_exact(factor, expected):
    """ln(f r) = ln f + ln r at every quality, and PCHIP through shifted values is the shifted PCHIP."""
    test = [(bpp * factor, quality) for bpp, quality in REFERENCE]
    assert bd_rate(REFERENCE, test) == pytest.approx(expected, abs=1e-9)
    assert bd_rate(test, REFERENCE) == pytest.approx(100 * (1 / factor - 1), abs=1e-9)


def test_partial_overlap_by_hand():
    """Two points each: PCHIP is the straight line. Reference: ln r = ln 4 (q - 30) / 10 over PSNR 30-40; test:
    ln r = ln 2 (q - 35) / 10 over 35-45. Overlap 35-40: mean ln r is 0.75 ln 4 = 1.5 ln 2 for the reference
    (at q = 37.5) and 0.25 ln 2 for the test, so the test spends 2^-1.25 of the reference's rate: -57.955 %.
    At equal rate, over ln r in [0, ln 2]: mean PSNR 32.5 for the reference, 40 for the test: +7.5 dB."""
    reference, test = [(1.0, 30.0), (4.0, 40.0)], [(1.0, 35.0), (2.0, 45.0)]
    assert bd_rate(reference, test) == pytest.approx(100 * (2 ** -1.25 - 1), abs=1e-9)
    assert bd_rate(reference, test) == pytest.approx(-57.95517923731428, abs=1e-9)
    assert bd_quality(reference, test) == pytest.approx(7.5, abs=1e-9)
    assert bd_quality(test, reference) == pytest.approx(-7.5, abs=1e-9)


def test_collinear_points_interpolate_linearly():
    """Three collinear points in (quality, ln r) are one straight line too: the middle point changes nothing."""
    reference, test = [(1.0, 30.0), (2.0, 35.0), (4.0, 40.0)], [(1.0, 35.0), (2.0, 45.0)]
    assert bd_rate(reference, test) == pytest.approx(100 * (2 ** -1.25 - 1), abs=1e-9)


def test_against_a_dense_numerical_integral():
    """Bent curves, partial overlap: the exact PCHIP integral agrees with a fine trapezoid sum."""
    test = [(0.15, 0.62), (0.2, 0.74), (0.6, 0.86), (2.0, 0.97)]
    grid = np.linspace(0.62, 0.90, 200_001)  # the quality overlap

    def log_rate(curve):
        return pchip_interpolate([q for _, q in curve], [math.log(b) for b, _ in curve], grid)

    mean_gap = trapezoid(log_rate(test) - log_rate(REFERENCE), grid) / (grid[-1] - grid[0])
    assert bd_rate(REFERENCE, test) == pytest.approx(100 * math.expm1(mean_gap), abs=1e-6)
    assert bd_rate(REFERENCE, test) < 0  # fewer bits at every overlapping quality here


def test_no_overlap_or_too_few_points_is_none():
    assert bd_rate([(0.1, 0.5), (0.2, 0.6)], [(0.3, 0.7), (0.4, 0.8)]) is None
    assert bd_rate([(0.1, 0.5), (0.2, 0.6)], [(0.3, 0.6), (0.4, 0.8)]) is None  # touching at one quality
    assert bd_quality([(0.1, 0.5), (0.2, 0.6)], [(0.3, 0.7), (0.4, 0.8)]) is None
    assert bd_rate(REFERENCE, [(0.3, 0.7)]) is None
    assert bd_rate(REFERENCE, [(0.3, 0.7), (0.5, 0.7)]) is None  # two points, one quality
    assert bd_rate(REFERENCE, []) is None
    # bpp 0 (no file within a budget) and unmeasured or infinite qualities are left out, not a crash
    assert bd_rate(REFERENCE, [(0.0, 0.0), (0.2, None), (0.3, math.inf), (0.4, 0.8)]) is None


def test_order_and_unusable_points_do_not_matter():
    test = [(0.15, 0.62), (0.2, 0.74), (0.6, 0.86), (2.0, 0.97)]
    expected = bd_rate(REFERENCE, test)
    assert bd_rate(REFERENCE[::-1], [test[2], test[0], test[3], test[1]]) == pytest.approx(expected, abs=1e-12)
    assert bd_rate([*REFERENCE, (0.0, 0.0)], [*test, (0.5, None)]) == pytest.approx(expected, abs=1e-12)
    assert bd_quality(REFERENCE[::-1], test[::-1]) == pytest.approx(bd_quality(REFERENCE, test), abs=1e-12)


def test_a_repeated_quality_keeps_the_fewest_bits():
    reference, test = [(1.0, 30.0), (4.0, 40.0)], [(1.0, 35.0), (2.0, 45.0)]
    assert bd_rate(reference, [*test, (3.0, 35.0)]) == pytest.approx(bd_rate(reference, test), abs=1e-12)
    assert bd_quality(reference, [*test, (2.0, 41.0)]) == pytest.approx(bd_quality(reference, test), abs=1e-12)
