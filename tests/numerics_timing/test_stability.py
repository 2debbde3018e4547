"""ADEV / MDEV / TDEV from phase data against NIST SP 1065: hand cases, a literal
transcription of the definitions, and the exact expectations of power-law noises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhil.numerics.timing import TimingInputError
from qhil.numerics.timing.stability import adev, mdev, octave_factors, tdev


def _reference(kind: str, x: np.ndarray, tau0: float, m: int) -> tuple[float, int]:
    """SP 1065 eqs. 14, 15, 17 written as loops (terms touching a NaN left out)."""
    n = x.size
    tau = m * tau0
    if kind == "adev":
        terms = [x[i + 2 * m] - 2 * x[i + m] + x[i] for i in range(n - 2 * m)]
    else:
        terms = [
            sum(x[i + 2 * m] - 2 * x[i + m] + x[i] for i in range(j, j + m))
            for j in range(n - 3 * m + 1)
        ]
    kept = [t for t in terms if not math.isnan(t)]
    mean_sq = sum(t * t for t in kept) / len(kept)
    if kind == "adev":
        return math.sqrt(mean_sq / (2 * tau * tau)), len(kept)
    var = mean_sq / (2 * m * m * tau * tau)
    if kind == "tdev":
        var *= tau * tau / 3
    return math.sqrt(var), len(kept)


_FUNCS = {"adev": adev, "mdev": mdev, "tdev": tdev}


def test_hand_computed_small_case() -> None:
    # x = [0, 1, 0, 3, 1], tau0 = 1, m = 1: second differences -2, 4, -5
    x = [0.0, 1.0, 0.0, 3.0, 1.0]
    assert adev(x, 1.0, [1]).dev[0] == pytest.approx(math.sqrt(45 / 6), rel=1e-14)
    assert mdev(x, 1.0, [1]).dev[0] == pytest.approx(math.sqrt(45 / 6), rel=1e-14)
    assert tdev(x, 1.0, [1]).dev[0] == pytest.approx(math.sqrt(2.5), rel=1e-14)
    assert tdev(x, 1.0, [1]).n_terms[0] == 3


def test_linear_frequency_drift_gives_adev_proportional_to_tau() -> None:
    # x = D t^2 / 2 with D = 2 per s: ADEV(tau) = D tau / sqrt(2) exactly
    t = np.arange(7.0)
    s = adev(t * t, 1.0, [1, 2, 3])
    np.testing.assert_allclose(s.dev, math.sqrt(2) * np.array([1.0, 2.0, 3.0]), rtol=1e-14)
    np.testing.assert_array_equal(s.n_terms, [5, 3, 1])
    # MDEV at m = 2: two sums of two second differences of 8: MVAR = 16^2 / (2 * 4 * 4)
    assert mdev(t * t, 1.0, [2]).dev[0] == pytest.approx(math.sqrt(8.0), rel=1e-14)
    assert tdev(t * t, 1.0, [2]).dev[0] == pytest.approx(math.sqrt(32 / 3), rel=1e-14)


@pytest.mark.parametrize("kind", ["adev", "mdev", "tdev"])
def test_matches_the_definition_written_as_loops(kind: str) -> None:
    rng = np.random.default_rng(11)
    x = np.cumsum(rng.normal(size=200)) * 1e-9 + rng.normal(size=200) * 3e-10
    s = _FUNCS[kind](x, 0.25)
    assert s.m.tolist() == octave_factors(200, kind).tolist()
    for m, dev, n in zip(s.m, s.dev, s.n_terms, strict=True):
        want, n_want = _reference(kind, x, 0.25, int(m))
        assert dev == pytest.approx(want, rel=1e-10)
        assert n == n_want
    np.testing.assert_allclose(s.tau_s, 0.25 * s.m)


@pytest.mark.parametrize("kind", ["adev", "mdev", "tdev"])
def test_gaps_drop_only_the_terms_that_touch_them(kind: str) -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(size=120)
    x[[7, 50, 51, 52]] = np.nan
    s = _FUNCS[kind](x, 1.0, [1, 2, 5, 9])
    for m, dev, n in zip(s.m, s.dev, s.n_terms, strict=True):
        want, n_want = _reference(kind, x, 1.0, int(m))
        assert n == n_want
        assert dev == pytest.approx(want, rel=1e-10)
    assert s.n_terms[0] < 120  # some were dropped


def test_all_terms_in_gaps_is_nan_with_zero_terms() -> None:
    x = np.full(9, np.nan)
    s = tdev(x, 1.0)
    assert np.isnan(s.dev).all() and (s.n_terms == 0).all()


def _mean_var(kind: str, series: np.ndarray, tau0: float) -> tuple[np.ndarray, np.ndarray]:
    devs = np.array([_FUNCS[kind](x, tau0).dev for x in series])
    var = devs**2
    return var.mean(axis=0), var.std(axis=0, ddof=1) / math.sqrt(len(series))


# Each check below is two-sided: |mean - expectation| < 4 standard errors of the mean over
# realisations (false alarm 6e-5 per point, < 1e-3 over all points of a test); fixed seeds.
Z = 4.0


def test_white_pm_tdev_is_sigma_over_sqrt_m() -> None:
    """White PM of std sigma: TVAR(m) = sigma^2 / m exactly (three disjoint block sums)."""
    rng = np.random.default_rng(21)
    sigma, n, r = 2e-11, 2048, 120
    series = rng.normal(scale=sigma, size=(r, n))
    mean, sem = _mean_var("tdev", series, 0.1)
    m = octave_factors(n, "tdev")
    expected = sigma**2 / m
    assert np.all(np.abs(mean - expected) < Z * sem), (mean / expected, sem / expected)
    slope = np.polyfit(np.log(m * 0.1), 0.5 * np.log(mean), 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.05)


def test_white_fm_adev_is_s_over_sqrt_m_and_tdev_rises_as_sqrt_tau() -> None:
    rng = np.random.default_rng(22)
    s_y, tau0, n, r = 1e-9, 1.0, 2048, 120
    series = np.cumsum(rng.normal(scale=s_y, size=(r, n)), axis=1) * tau0
    mean, sem = _mean_var("adev", series, tau0)
    m = octave_factors(n, "adev")
    expected = s_y**2 / m
    assert np.all(np.abs(mean - expected) < Z * sem), (mean / expected, sem / expected)
    t_mean, _ = _mean_var("tdev", series, tau0)
    tm = octave_factors(n, "tdev")[2:]  # past the first octaves' bias toward the asymptote
    slope = np.polyfit(np.log(tm), 0.5 * np.log(t_mean[2:]), 1)[0]
    assert slope == pytest.approx(0.5, abs=0.05)


def test_random_walk_fm_adev_exact_and_tdev_slope_three_halves() -> None:
    """Frequency a random walk with step s per tau0: AVAR(m) = s^2 (2 m^2 + 1) / (6 m)."""
    rng = np.random.default_rng(23)
    s, tau0, n, r = 1e-12, 1.0, 1024, 150
    y = np.cumsum(rng.normal(scale=s, size=(r, n)), axis=1)
    series = np.cumsum(y, axis=1) * tau0
    mean, sem = _mean_var("adev", series, tau0)
    m = octave_factors(n, "adev").astype(float)
    expected = s**2 * (2 * m**2 + 1) / (6 * m)
    assert np.all(np.abs(mean - expected) < Z * sem), (mean / expected, sem / expected)
    t_mean, _ = _mean_var("tdev", series, tau0)
    tm = octave_factors(n, "tdev")[2:]
    slope = np.polyfit(np.log(tm), 0.5 * np.log(t_mean[2:]), 1)[0]
    assert slope == pytest.approx(1.5, abs=0.08)


def test_err_is_dev_over_sqrt_of_independent_terms() -> None:
    x = np.random.default_rng(3).normal(size=64)
    s = tdev(x, 1.0, [1, 4])
    np.testing.assert_allclose(s.err, s.dev / np.sqrt(np.maximum(s.n_terms / s.m, 1)))


def test_octave_factors_leave_a_term() -> None:
    assert octave_factors(2, "tdev").size == 0
    assert octave_factors(3, "tdev").tolist() == [1]
    assert octave_factors(26, "tdev").tolist() == [1, 2, 4, 8]
    assert octave_factors(17, "adev").tolist() == [1, 2, 4, 8]


@pytest.mark.parametrize(
    ("phase", "tau0", "m", "match"),
    [
        (np.zeros((3, 3)), 1.0, None, "phase_s: expected a 1-D"),
        (np.array([0.0, np.inf, 1.0]), 1.0, None, "phase_s: infinite"),
        (np.array(["a", "b", "c"]), 1.0, None, "phase_s: expected real"),
        (np.zeros(10), 0.0, None, "tau0_s"),
        (np.zeros(10), float("nan"), None, "tau0_s"),
        (np.zeros(10), 1.0, [4], r"m: averaging factors must lie in 1\.\.3"),
        (np.zeros(10), 1.0, [0], "m: averaging factors"),
        (np.zeros(10), 1.0, [1.5], "m: expected integer"),
    ],
)
def test_bad_input_names_the_argument(phase, tau0, m, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TimingInputError, match=match):
        tdev(phase, tau0, m)
