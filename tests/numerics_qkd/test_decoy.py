"""Decoy-state estimation (Ma et al. 2005) and Chernoff intervals, against the GLLP model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qhil.numerics.qkd.decoy import (
    DecoyBounds,
    DecoyCounts,
    chernoff_interval,
    decoy_key_rate,
    vacuum_weak_decoy_bounds,
)
from qhil.numerics.qkd.gllp import (
    GllpParameters,
    key_rate,
    signal_gain,
    signal_qber,
    single_photon_error,
    single_photon_yield,
)

P = GllpParameters()
MU = (0.48, 0.1, 0.0)


def expected_counts(distance_km: float, pulses: float) -> DecoyCounts:
    n = np.full(3, pulses)
    gains = np.array([signal_gain(m, distance_km, P) if m > 0 else P.y0 for m in MU])
    qbers = np.array([signal_qber(m, distance_km, P) if m > 0 else 0.5 for m in MU])
    det = np.rint(n * gains).astype(np.int64)
    return DecoyCounts(MU, n.astype(np.int64), det, det, np.rint(det * qbers).astype(np.int64))


@pytest.mark.parametrize("distance_km", [0.0, 50.0, 100.0])
def test_asymptotic_bounds_bracket_true_single_photon_values(distance_km: float) -> None:
    b = vacuum_weak_decoy_bounds(expected_counts(distance_km, 1e15))
    y1, e1 = single_photon_yield(distance_km, P), single_photon_error(distance_km, P)
    # A weak decoy (nu = 0.1) makes the bounds tight: within 5 % (Ma et al. 2005, Fig. 2).
    assert y1 * 0.95 <= b.y1_lower <= y1 * (1 + 1e-6)
    # e1^U also carries the multi-photon errors of the decoy, a relative excess ~ nu.
    assert e1 * (1 - 1e-6) <= b.e1_upper <= e1 * 1.15
    # Reference by hand from the closed-form model gains (Ma et al. Eqs. for Y1^L, e1^U).
    mu, nu = MU[0], MU[1]
    eta = P.eta_bob * 10 ** (-P.alpha_db_per_km * distance_km / 10)
    q_nu = P.y0 + 1 - math.exp(-eta * nu)
    q_mu = P.y0 + 1 - math.exp(-eta * mu)
    y1_ref = (
        mu
        / (mu * nu - nu**2)
        * (
            q_nu * math.exp(nu)
            - q_mu * math.exp(mu) * nu**2 / mu**2
            - (mu**2 - nu**2) / mu**2 * P.y0
        )
    )
    eq_nu = P.y0 / 2 + P.e_detector * (1 - math.exp(-eta * nu))
    e1_ref = (eq_nu * math.exp(nu) - P.y0 / 2) / (y1_ref * nu)
    assert b.y1_lower == pytest.approx(y1_ref, rel=1e-5)
    assert b.e1_upper == pytest.approx(e1_ref, rel=1e-5)
    rate = decoy_key_rate(b, f_ec=P.f_ec)
    ideal = key_rate(0.48, distance_km, P)
    assert 0.85 * ideal <= rate <= ideal * (1 + 1e-6)


def test_finite_size_bounds_hold_with_stated_confidence() -> None:
    # 300 simulated experiments at 50 km; each bound fails w.p. <= 5 eps = 5e-3,
    # so failures follow at most Binomial(300, 5e-3): 99.9 % limit below.
    rng = np.random.default_rng(12)
    eps, runs, pulses = 1e-3, 300, 10**9
    truth = expected_counts(50.0, pulses)
    y1 = single_photon_yield(50.0, P)
    e1 = single_photon_error(50.0, P)
    q = truth.detections / pulses
    qe = truth.errors / truth.detections
    bad = 0
    for _ in range(runs):
        det = rng.binomial(pulses, q)
        err = rng.binomial(det, qe)
        b = vacuum_weak_decoy_bounds(DecoyCounts(MU, truth.pulses, det, det, err), eps=eps)
        bad += int(b.y1_lower > y1 or b.e1_upper < e1)
        # Not vacuous: the finite-size bound keeps most of the yield at 1e9 pulses.
        assert b.y1_lower > 0.5 * y1
    assert bad <= stats.binom.ppf(0.999, runs, 5 * eps)


def test_chernoff_interval_coverage() -> None:
    rng = np.random.default_rng(13)
    eps, mean, draws = 0.01, 40.0, 4000
    x = rng.poisson(mean, draws)
    miss_hi = sum(chernoff_interval(float(v), eps)[1] < mean for v in x)
    miss_lo = sum(chernoff_interval(float(v), eps)[0] > mean for v in x)
    limit = stats.binom.ppf(0.999, draws, eps)
    assert miss_hi <= limit and miss_lo <= limit
    lo, hi = chernoff_interval(1e6, 1e-10)
    # Large counts: width ~ sqrt(2 x ln(1/eps)) on each side.
    assert hi - 1e6 == pytest.approx(math.sqrt(2e6 * math.log(1e10)), rel=0.02)
    assert 1e6 - lo == pytest.approx(math.sqrt(2e6 * math.log(1e10)), rel=0.02)


def test_from_data_tallies_per_intensity() -> None:
    c = DecoyCounts.from_data(MU, [0, 0, 1, 2, 2, 2], [0, 2], [0, 2], [True, False])
    np.testing.assert_array_equal(c.pulses, [2, 1, 3])
    np.testing.assert_array_equal(c.detections, [1, 0, 1])
    np.testing.assert_array_equal(c.errors, [1, 0, 0])
    np.testing.assert_allclose(c.gains, [0.5, 0.0, 1 / 3])


def test_bad_counts_named() -> None:
    with pytest.raises(ValueError, match=r"DecoyCounts\.detections: more detections"):
        DecoyCounts(
            MU, np.array([1, 1, 1]), np.array([2, 0, 0]), np.zeros(3, int), np.zeros(3, int)
        )
    c = expected_counts(10.0, 1e9)
    with pytest.raises(ValueError, match="vacuum intensity must be 0"):
        vacuum_weak_decoy_bounds(c, vacuum=1)


def test_finite_size_bounds_pinned_by_hand_where_they_dominate() -> None:
    """Ma et al. (2005) vacuum + weak decoy bounds at 1e7 pulses per intensity, eps = 1e-10,
    where each count's Chernoff end moves the bounds far more than the tolerance (Y1^L
    23 % below, e1^U 4x above the asymptotic values). Every number below was worked out
    by hand from the module docstring's formulas, L = ln(1/eps) = 23.02585093:

      count  lower                                upper
      20000  x + L/2 - sqrt(L^2/4 + 2xL) = 19051.73869   x + L + sqrt(L^2 + 2xL) = 20983.00722
       4300  3866.367033                          4768.618162
        400  275.3026902                          560.6880119
        150  77.60641361                          259.2693729

    Y0 (upper) = 560.688 / 1e7, Y0 (lower, in e1) = 275.303 / 1e7, Q_nu (lower) = 3866.367 /
    1e7, Q_mu (upper) = 20983.007 / 1e7, E_nu Q_nu (upper) = 259.269 / (2150 / 4300) / 1e7:
      Y1^L = mu / (mu nu - nu^2) [Q_nu e^nu - Q_mu e^mu nu^2 / mu^2 - (mu^2 - nu^2) / mu^2 Y0]
           = 0.00293866337   (asymptotic: 0.0038115724)
      e1^U = (E_nu Q_nu e^nu - Y0 / 2) / (Y1^L nu) = 0.14817029   (asymptotic: 0.0345136)
    """
    for count, lower, upper in [
        (20000, 19051.73869, 20983.00722),
        (4300, 3866.367033, 4768.618162),
        (400, 275.3026902, 560.6880119),
        (150, 77.60641361, 259.2693729),
    ]:
        lo, hi = chernoff_interval(count, 1e-10)
        assert lo == pytest.approx(lower, rel=1e-9) and hi == pytest.approx(upper, rel=1e-9)
    mu, nu, n = 0.5, 0.1, 10**7
    c = DecoyCounts(
        (mu, nu, 0.0),
        np.array([n, n, n]),
        np.array([20000, 4300, 400]),
        np.array([10000, 2150, 200]),
        np.array([300, 150, 100]),
    )
    b = vacuum_weak_decoy_bounds(c, eps=1e-10)
    assert b.y0 == pytest.approx(560.6880119 / n, rel=1e-8)
    assert b.y1_lower == pytest.approx(0.00293866337, rel=1e-8)
    assert b.e1_upper == pytest.approx(0.148170287, rel=1e-8)
    assert b.q1_lower == pytest.approx(0.00293866337 * mu * math.exp(-mu), rel=1e-8)
    asym = vacuum_weak_decoy_bounds(c)
    assert asym.y1_lower == pytest.approx(0.00381157241, rel=1e-8)
    assert asym.e1_upper == pytest.approx(0.0345136, rel=1e-5)
    # The finite-size rate is far below the asymptotic one at these counts.
    assert decoy_key_rate(b) < 0.5 * decoy_key_rate(asym)


def test_decoy_key_rate_by_hand() -> None:
    """q [Q1 (1 - h(e1)) - f Q h(E)], with a signal QBER above 1/2 counted as 1/2 (h = 1)."""
    b = DecoyBounds(
        y0=1e-5, y1_lower=0.04, e1_upper=0.11, q1_lower=0.01, q_signal=0.02, e_signal=0.7
    )
    h11 = -0.11 * math.log2(0.11) - 0.89 * math.log2(0.89)  # 0.49991596
    assert decoy_key_rate(b, f_ec=1.2, q_sift=0.5) == pytest.approx(
        0.5 * (0.01 * (1 - h11) - 1.2 * 0.02 * 1.0), rel=1e-12
    )
    low = DecoyBounds(
        y0=1e-5, y1_lower=0.04, e1_upper=0.11, q1_lower=0.01, q_signal=0.02, e_signal=0.02
    )
    h02 = -0.02 * math.log2(0.02) - 0.98 * math.log2(0.98)
    assert decoy_key_rate(low) == pytest.approx(
        0.5 * (0.01 * (1 - h11) - 1.16 * 0.02 * h02), rel=1e-12
    )


def test_chernoff_interval_edges() -> None:
    """Zero counts: [0, 2L]; a small count's lower end is 0, not rounded up to a count of 1
    (which would make every bound built on it less conservative)."""
    lg = math.log(1e10)
    assert chernoff_interval(0, 1e-10) == (0.0, pytest.approx(2 * lg))
    lo, hi = chernoff_interval(20, 1e-10)
    assert lo == 0.0 and hi == pytest.approx(81.12078298, rel=1e-9)
    # Positive just above x = L: 24 + L/2 - sqrt(L^2/4 + 48 L) = 0.33071.
    assert chernoff_interval(24, 1e-10)[0] == pytest.approx(0.330710, abs=1e-6)
    for count, eps, match in [(-1, 0.1, "count must be >= 0"), (5, 0.0, "eps"), (5, 1.0, "eps")]:
        with pytest.raises(ValueError, match=match):
            chernoff_interval(count, eps)


def test_bounds_refuse_what_they_cannot_use() -> None:
    good = expected_counts(10.0, 1e9)
    for mus, match in [((0.48, 0.48, 0.0), "decoy < signal"), ((0.48, 0.0, 0.0), "0 < decoy")]:
        c = DecoyCounts(mus, good.pulses, good.detections, good.compared, good.errors)
        with pytest.raises(ValueError, match=match):
            vacuum_weak_decoy_bounds(c)
    no_pulses = DecoyCounts(
        MU, np.array([10**9, 0, 10**9]), np.array([10, 0, 1]), good.compared * 0, good.errors * 0
    )
    with pytest.raises(ValueError, match=r"^DecoyCounts\.pulses: signal, decoy and vacuum"):
        vacuum_weak_decoy_bounds(no_pulses)
    uncompared = DecoyCounts(
        MU, good.pulses, good.detections, np.array([5, 0, 5]), np.zeros(3, int)
    )
    with pytest.raises(ValueError, match=r"^DecoyCounts\.compared: no compared bits at the decoy"):
        vacuum_weak_decoy_bounds(uncompared)


def test_no_single_photon_yield_gives_the_worst_error_rate() -> None:
    """A decoy gain too low for any single-photon yield: Y1^L = 0 and e1^U = 1/2."""
    n = np.array([10**7] * 3)
    c = DecoyCounts(
        MU, n, np.array([20000, 100, 400]), np.array([10000, 50, 200]), np.array([300, 5, 100])
    )
    b = vacuum_weak_decoy_bounds(c, eps=1e-10)
    assert (b.y1_lower, b.e1_upper, b.q1_lower) == (0.0, 0.5, 0.0)


def test_from_data_with_an_intensity_never_seen() -> None:
    c = DecoyCounts.from_data(MU, [0, 1, 0], [0], [0], [False])
    np.testing.assert_array_equal(c.pulses, [2, 1, 0])
    np.testing.assert_array_equal(c.detections, [1, 0, 0])
    np.testing.assert_array_equal(c.compared, [1, 0, 0])
    for args, match in [
        (([0, 3], [0], [0], [False]), r"^pulse_intensity: indices must lie in 0\.\.2$"),
        (([0, 1], [-1], [0], [False]), r"^detected_intensity: indices must lie in 0\.\.2$"),
        (([0, 1], [0], [3], [False]), r"^compared_intensity: indices must lie in 0\.\.2$"),
        (([0, 1], [0], [0, 1], [False]), r"^compared_intensity and compared_error differ"),
    ]:
        with pytest.raises(ValueError, match=match):
            DecoyCounts.from_data(MU, *args)


def test_every_bad_count_is_named() -> None:
    z, one = np.zeros(3, int), np.ones(3, int)
    for args, match in [
        ((MU, one, one, z, z[:2]), r"^DecoyCounts\.errors: expected 3 entries \(got \(2,\)\)$"),
        ((MU, one, np.array([1, -1, 0]), z, z), r"^DecoyCounts\.detections: counts must be >= 0$"),
        ((MU, one, one, one, one * 2), r"^DecoyCounts\.errors: more errors than compared bits$"),
        ((MU, one, one * 2, z, z), r"^DecoyCounts\.detections: more detections than pulses$"),
        (((0.5, -0.1, 0.0), one, one, z, z), r"^DecoyCounts\.mu: intensities must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            DecoyCounts(*args)
    DecoyCounts(MU, one, one, one, one)  # equal counts are fine
