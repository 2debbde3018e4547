"""Ma-Fung-Lo BBM92 gain and QBER (PHYSICS.md case 5), against a brute-force sum
over the PDC photon-number distribution and limits derived by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qhil.emulators.world.quantum import (
    bbm92_figures,
    bbm92_key_rate,
    bbm92_symmetric,
    binary_entropy,
    side_efficiency,
    thermal_pair_probability,
)


def _brute_force(
    lam: float, eta_a: float, eta_b: float, d_a: float, d_b: float, e_d: float, n_max: int = 400
) -> tuple[float, float]:
    """Sum over n pairs and their split m (uniform on 0..n) with binomial loss and
    per-detector dark probabilities d (two detectors per side). Returns (Q, E).

    Dark counts enter the gain exactly; the correlated term leaves them out, as the
    paper does, so the comparison is exact."""
    log_a, log_b = np.log1p(-eta_a), np.log1p(-eta_b)
    gain = 0.0
    correlated = 0.0
    for n in range(n_max):
        pn = float(thermal_pair_probability(n, lam))
        if pn < 1e-18:
            break
        # given n, losses on the two sides are independent, so Q_n = P(A clicks) P(B clicks);
        # expm1/log1p keep tiny click probabilities accurate
        click_a = -np.expm1(2 * np.log1p(-d_a) + n * log_a)
        click_b = -np.expm1(2 * np.log1p(-d_b) + n * log_b)
        gain += pn * click_a * click_b
        # single clicks on the right minus on the wrong detectors, averaged over m:
        # a^(n-m) - a^m = a^m expm1((n - 2m) log a)
        m = np.arange(n + 1)
        diff_a = np.exp(m * log_a) * np.expm1((n - 2 * m) * log_a)
        diff_b = np.exp(m * log_b) * np.expm1((n - 2 * m) * log_b)
        correlated += pn * float(np.sum(diff_a * diff_b)) / (n + 1)
    return gain, 0.5 - (0.5 - e_d) * correlated / gain


@pytest.mark.parametrize(
    ("lam", "eta_a", "eta_b", "d", "e_d"),
    [
        (0.05, 0.3, 0.1, 1e-4, 0.02),
        (0.5, 0.045, 0.045, 8.5e-7, 0.033),
        (1.5, 0.9, 0.6, 0.0, 0.01),
        (0.01, 1e-3, 2e-3, 1e-5, 0.05),
    ],
)
def test_closed_form_equals_the_photon_number_sum(
    lam: float, eta_a: float, eta_b: float, d: float, e_d: float
) -> None:
    y0 = 1 - (1 - d) ** 2  # two detectors per side
    figures = bbm92_figures(lam, eta_a, eta_b, y0, y0, e_d)
    gain, qber = _brute_force(lam, eta_a, eta_b, d, d, e_d)
    assert float(figures.gain) == pytest.approx(gain, rel=1e-10)
    assert float(figures.qber) == pytest.approx(qber, rel=1e-10)


def test_thermal_distribution_is_normalised_with_mean_two_lambda() -> None:
    n = np.arange(2000)
    p = thermal_pair_probability(n, 0.3)
    assert p.sum() == pytest.approx(1.0)
    assert (n * p).sum() == pytest.approx(0.6)


def test_limits() -> None:
    # no pairs: only background coincidences, random bits
    f = bbm92_figures(0.0, 0.5, 0.5, 1e-3, 2e-3, 0.01)
    assert float(f.gain) == pytest.approx(2e-6)
    assert float(f.qber) == pytest.approx(0.5)
    # weak source, no background: Q -> 2 eta_A eta_B lambda and E -> e_d
    f = bbm92_figures(1e-6, 0.2, 0.4, 0.0, 0.0, 0.03)
    assert float(f.gain) == pytest.approx(2 * 0.2 * 0.4 * 1e-6, rel=1e-5)
    assert float(f.qber) == pytest.approx(0.03, rel=1e-4)
    # perfect detection: E = 1/2 - 2(1/2 - e_d)/(2 + lambda)  (double clicks from multi-pairs)
    for lam in (0.1, 1.0, 5.0):
        f = bbm92_figures(lam, 1.0, 1.0, 0.0, 0.0, 0.02)
        assert float(f.qber) == pytest.approx(0.5 - 2 * 0.48 / (2 + lam))
        assert float(f.gain) == pytest.approx(1 - 1 / (1 + lam) ** 2)


def test_symmetric_case_puts_half_the_fibre_on_each_side_and_vectorises() -> None:
    lengths = np.array([0.0, 50.0, 100.0])
    f = bbm92_symmetric(0.1, lengths, 0.21, 0.045, 1.7e-6, 0.033)
    eta = 0.045 * 10 ** (-0.21 * lengths / 2 / 10)
    np.testing.assert_allclose(side_efficiency(lengths / 2, 0.21, 0.045), eta)
    for k, e in enumerate(eta):
        ref = bbm92_figures(0.1, e, e, 1.7e-6, 1.7e-6, 0.033)
        assert f.gain[k] == pytest.approx(float(ref.gain))
        assert f.qber[k] == pytest.approx(float(ref.qber))
    assert np.all(np.diff(f.gain) < 0) and np.all(np.diff(f.qber) > 0)


def test_key_rate() -> None:
    assert float(binary_entropy(0.11)) == pytest.approx(0.4999, abs=1e-3)
    assert float(binary_entropy(0.0)) == 0.0 and float(binary_entropy(1.0)) == 0.0
    rate = bbm92_key_rate(1e-3, 0.02, f_ec=1.2, q=0.5)
    h = float(binary_entropy(0.02))
    assert float(rate) == pytest.approx(0.5e-3 * (1 - 2.2 * h))
    assert float(bbm92_key_rate(1e-3, 0.2)) == 0.0
    # the rate vanishes at long distance: background wins
    f = bbm92_symmetric(0.05, np.array([10.0, 400.0]), 0.21, 0.045, 1.7e-6, 0.033)
    rates = bbm92_key_rate(f.gain, f.qber)
    assert rates[0] > 0.0 and rates[1] == 0.0


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("eta_a", {"eta_a": 1.5}),
        ("lam", {"lam": -0.1}),
        ("e_d", {"e_d": 2.0}),
        ("y0_b", {"y0_b": -1e-6}),
    ],
)
def test_bad_values_are_named(name: str, kwargs: dict[str, float]) -> None:
    args = {"lam": 0.1, "eta_a": 0.1, "eta_b": 0.1, "y0_a": 0.0, "y0_b": 0.0, "e_d": 0.01}
    with pytest.raises(ValueError, match=name):
        bbm92_figures(**{**args, **kwargs})  # type: ignore[arg-type]


def test_figures_broadcast_over_parameter_grids() -> None:
    lams = np.array([0.01, 0.1])[:, None]
    etas = np.array([0.1, 0.2, 0.3])[None, :]
    f = bbm92_figures(lams, etas, etas, 1e-6, 1e-6, 0.02)
    assert f.gain.shape == (2, 3)
    for i, j in itertools.product(range(2), range(3)):
        single = bbm92_figures(
            float(lams[i, 0]), float(etas[0, j]), float(etas[0, j]), 1e-6, 1e-6, 0.02
        )
        assert f.gain[i, j] == pytest.approx(float(single.gain))
