"""Fringe fit and CHSH on simulated Poisson counts: values and stated errors (coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhil.numerics.entanglement import EntanglementInputError, chsh, correlator, fit_fringe

# Pull statistics over K seeds: the mean of K unit normals is within 3.29/sqrt(K) of 0 and
# their std within ~3.29/sqrt(2K) of 1 at 99.9 % (two-sided; K = 400).
K = 400


def _pulls_ok(pulls: np.ndarray) -> None:
    k = pulls.size
    assert abs(pulls.mean()) < 3.29 / math.sqrt(k), pulls.mean()
    assert abs(pulls.std(ddof=1) - 1.0) < 3.29 / math.sqrt(2 * k), pulls.std(ddof=1)


def test_fringe_fit_recovers_the_visibility_within_its_stated_error() -> None:
    rng = np.random.default_rng(10)
    angles = np.arange(0.0, 90.0, 7.5)  # 12 points over one period of 4 theta
    amp, vis, phi, acc = 2000.0, 0.95, 40.0, 5.0
    mean = amp * (1 + vis * np.cos(np.radians(4 * angles - phi))) / 2 + acc
    pulls = []
    for _ in range(K):
        counts = rng.poisson(mean)
        fit = fit_fringe(angles, counts, accidentals=acc)
        pulls.append((fit.visibility - vis) / fit.visibility_stderr)
    _pulls_ok(np.asarray(pulls))
    fit = fit_fringe(angles, mean, accidentals=acc)  # noiseless: exact
    assert fit.visibility == pytest.approx(vis, abs=1e-9)
    assert fit.phase_deg == pytest.approx(phi, abs=1e-6)
    assert fit.max_angle_deg == pytest.approx(10.0, abs=1e-6)
    assert fit.amplitude == pytest.approx(amp, rel=1e-9)
    assert np.allclose(fit.model(angles, acc), mean)


def test_fringe_fit_without_the_accidentals_sees_a_lower_visibility() -> None:
    angles = np.arange(0.0, 90.0, 7.5)
    mean = 1000 * (1 + np.cos(np.radians(4 * angles))) / 2 + 50.0
    assert fit_fringe(angles, mean).visibility == pytest.approx(1000 / 1100, abs=1e-9)


def test_fringe_fit_bad_input() -> None:
    with pytest.raises(EntanglementInputError, match="counts"):
        fit_fringe([0, 10, 20], [1, 2, 3])
    with pytest.raises(EntanglementInputError, match="angles_deg"):
        fit_fringe([0, 90, 180, 270], [1, 2, 3, 4])  # one value of 4 theta
    with pytest.raises(EntanglementInputError, match="angles_deg, counts"):
        fit_fringe([0, 10, 20, 30], [1, 2, 3])


def test_correlator_value_and_error() -> None:
    c = correlator([[40, 10], [10, 40]])
    assert c.value == pytest.approx(0.6)
    assert c.stderr == pytest.approx(math.sqrt((1 - 0.36) / 100))
    with pytest.raises(EntanglementInputError, match="no coincidences"):
        correlator([[0, 0], [0, 0]])
    with pytest.raises(EntanglementInputError, match="2 x 2"):
        correlator([1, 2, 3, 4])


def test_chsh_s_and_its_stated_error_cover_the_truth() -> None:
    rng = np.random.default_rng(11)
    vis = 0.95
    angles = [(0.0, 22.5), (0.0, 67.5), (45.0, 22.5), (45.0, 67.5)]
    e = np.array([vis * math.cos(2 * math.radians(a - b)) for a, b in angles])
    s_true = 2 * math.sqrt(2) * vis
    p = np.stack([[[(1 + x) / 4, (1 - x) / 4], [(1 - x) / 4, (1 + x) / 4]] for x in e])
    pulls = []
    for _ in range(K):
        counts = np.stack([rng.poisson(1000 * pi) for pi in p])
        r = chsh(counts)
        pulls.append((r.s - s_true) / r.s_stderr)
    _pulls_ok(np.asarray(pulls))
    r = chsh(np.stack([1000 * pi for pi in p]))
    assert r.s == pytest.approx(s_true)
    assert r.sigmas_above_2 == pytest.approx((s_true - 2) / r.s_stderr)
    with pytest.raises(EntanglementInputError, match="signs"):
        chsh(np.ones((4, 2, 2)), signs=(1, 1, 1, 0))
    with pytest.raises(EntanglementInputError, match=r"\(4, 2, 2\)"):
        chsh(np.ones((3, 2, 2)))
