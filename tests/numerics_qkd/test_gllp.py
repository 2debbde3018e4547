"""GLLP decoy-state asymptotic key rate against the published numbers of PHYSICS.md case 4."""

from __future__ import annotations

import itertools
import math

import pytest

from qhil.numerics.qkd.entropy import binary_entropy
from qhil.numerics.qkd.gllp import (
    GllpParameters,
    key_rate,
    max_distance,
    optimal_mu,
    signal_gain,
    signal_qber,
)


# Published values are quoted to 3 significant figures, so 0.5 % relative is the
# rounding of the reference itself plus a little margin for the optimiser.
@pytest.mark.parametrize(
    ("distance_km", "reference"), [(0.0, 2.55e-3), (50.0, 2.23e-4), (100.0, 1.72e-5)]
)
def test_optimised_rate_matches_published(distance_km: float, reference: float) -> None:
    mu, rate = optimal_mu(distance_km)
    assert rate == pytest.approx(reference, rel=5e-3)
    # Optimal mu ~ 0.48 in the paper; it drifts slightly with distance.
    assert 0.45 <= mu <= 0.50


def test_cutoff_distance_near_142_km() -> None:
    assert max_distance() == pytest.approx(142.0, abs=1.0)


def test_rate_formula_by_hand_at_one_point() -> None:
    # Independent scalar evaluation of the case-4 formulas at mu 0.5, L 25 km.
    p = GllpParameters()
    eta = 0.045 * 10 ** (-0.21 * 25 / 10)
    q_mu = 1.7e-6 + 1 - math.exp(-eta * 0.5)
    e_mu = (1.7e-6 / 2 + 0.033 * (1 - math.exp(-eta * 0.5))) / q_mu
    y1 = 1.7e-6 + eta - 1.7e-6 * eta
    q1 = y1 * 0.5 * math.exp(-0.5)
    e1 = (1.7e-6 / 2 + 0.033 * eta) / y1

    def h(x: float) -> float:
        return -x * math.log2(x) - (1 - x) * math.log2(1 - x)

    expected = 0.5 * (q1 * (1 - h(e1)) - 1.22 * q_mu * h(e_mu))
    assert signal_gain(0.5, 25, p) == pytest.approx(q_mu, rel=1e-12)
    assert signal_qber(0.5, 25, p) == pytest.approx(e_mu, rel=1e-12)
    assert key_rate(0.5, 25, p) == pytest.approx(expected, rel=1e-12)


def test_rate_is_optimum_over_mu_and_falls_with_distance() -> None:
    mu, best = optimal_mu(30.0)
    for other in (0.5 * mu, 0.9 * mu, 1.1 * mu, 2 * mu):
        assert key_rate(other, 30.0) < best
    rates = [optimal_mu(d)[1] for d in (0, 20, 40, 80, 120)]
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_rate_negative_past_cutoff() -> None:
    assert optimal_mu(160.0)[1] < 0


def test_binary_entropy_values_and_errors() -> None:
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == 0.0
    assert binary_entropy(0.11) == pytest.approx(0.4999, abs=1e-4)
    with pytest.raises(ValueError, match="probability"):
        binary_entropy(1.2)
    assert binary_entropy(1.0) == 0.0
    with pytest.raises(ValueError, match="probability"):
        binary_entropy(float("nan"))


def test_bad_parameters_named() -> None:
    with pytest.raises(ValueError, match="eta_bob"):
        GllpParameters(eta_bob=0.0)
    with pytest.raises(ValueError, match="distance_km"):
        key_rate(0.5, -1.0)


@pytest.mark.parametrize(
    ("name", "bad", "edge"),
    [
        ("alpha_db_per_km", -1e-9, 0.0),
        ("e_detector", -1e-9, 0.0),
        ("e_detector", 0.5 + 1e-9, 0.5),
        ("y0", -1e-9, 0.0),
        ("y0", 1.0, 1.0 - 1e-9),
        ("eta_bob", 0.0, 1e-9),
        ("eta_bob", 1.0 + 1e-9, 1.0),
        ("f_ec", 1.0 - 1e-9, 1.0),
        ("q_sift", 0.0, 1e-9),
        ("q_sift", 1.0 + 1e-9, 1.0),
    ],
)
def test_each_parameter_range_is_checked_at_its_edge(name: str, bad: float, edge: float) -> None:
    with pytest.raises(ValueError, match=rf"GllpParameters\.{name}: out of range \(got {bad!r}\)"):
        GllpParameters(**{name: bad})
    assert getattr(GllpParameters(**{name: edge}), name) == edge


def test_cutoff_pinned_and_its_edge_cases() -> None:
    # README: the optimised rate reaches 0 at 142.2 km (brentq to 1e-3 km).
    assert max_distance() == pytest.approx(142.2087, abs=2e-3)
    # No key even at 0 km (20 % misalignment): the cut-off is 0.
    assert max_distance(GllpParameters(e_detector=0.2)) == 0.0
    with pytest.raises(ValueError, match="upper_km=100"):
        max_distance(upper_km=100.0)
    with pytest.raises(ValueError, match=r"mu must be > 0 \(got 0.0\)"):
        key_rate(0.0, 10.0)


def test_optimal_mu_pinned() -> None:
    # Values of the README: mu* = 0.486 / 0.479 / 0.475 at 0 / 50 / 100 km.
    for distance, mu_ref, rate_ref in [
        (0.0, 0.48636, 2.554908e-3),
        (50.0, 0.47930, 2.225955e-4),
        (100.0, 0.47522, 1.718587e-5),
    ]:
        mu, rate = optimal_mu(distance)
        assert mu == pytest.approx(mu_ref, abs=2e-4)
        assert rate == pytest.approx(rate_ref, rel=1e-6)
