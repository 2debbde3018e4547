"""Exact binomial intervals of error fractions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qhil.calibration import ErrorFraction, clopper_pearson, upper_bound


def test_closed_forms_at_the_edges() -> None:
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n).
    n, conf = 10, 0.95
    assert clopper_pearson(0, n, conf) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)))
    assert clopper_pearson(n, n, conf) == pytest.approx((0.025 ** (1 / n), 1.0))
    assert upper_bound(0, n, conf) == pytest.approx(1 - 0.05 ** (1 / n))
    assert clopper_pearson(0, 0, conf) == (0.0, 1.0)


def test_interval_tails_are_exact() -> None:
    # At the bounds, the binomial tail probabilities are exactly alpha/2.
    k, n = 17, 3000
    lo, hi = clopper_pearson(k, n, 0.99)
    assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.005, rel=1e-6)
    assert stats.binom.cdf(k, n, hi) == pytest.approx(0.005, rel=1e-6)
    assert stats.binom.cdf(k, n, upper_bound(k, n, 0.95)) == pytest.approx(0.05, rel=1e-6)


def test_coverage_is_at_least_the_confidence() -> None:
    # 4000 draws of k ~ Bin(2000, 0.006): the 95 % interval holds p at least 95 % of the
    # time (Clopper-Pearson is conservative); the count of misses is below the 99.9 %
    # binomial upper limit of 5 %.
    rng = np.random.default_rng(3)
    p, n, draws = 0.006, 2000, 4000
    ks = rng.binomial(n, p, draws)
    misses = sum(not (lo <= p <= hi) for lo, hi in (clopper_pearson(int(k), n, 0.95) for k in ks))
    assert misses <= stats.binom.ppf(0.999, draws, 0.05)


def test_error_fraction() -> None:
    ef = ErrorFraction(12, 3000)
    assert ef.value == pytest.approx(0.004)
    assert ef.std == pytest.approx(math.sqrt(0.004 * 0.996 / 3000))
    assert ef.upper(0.95) == upper_bound(12, 3000, 0.95)
    empty = ErrorFraction(0, 0)
    assert math.isnan(empty.value) and math.isinf(empty.variance())
    # A zero count still carries one count's worth of variance (it is not exact).
    assert ErrorFraction(0, 1000).variance() == pytest.approx(0.001 * 0.999 / 1000)


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="errors <= total"):
        clopper_pearson(5, 3, 0.95)
    with pytest.raises(ValueError, match="confidence"):
        upper_bound(1, 3, 1.0)
