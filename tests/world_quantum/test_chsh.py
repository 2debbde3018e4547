"""CHSH: PHYSICS.md case 5 (S = 2 sqrt(2) V), optimum, and estimates from counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world.quantum import (
    chsh_from_counts,
    chsh_std_error,
    chsh_value,
    max_chsh_value,
    sample_chsh_counts,
    spdc_pair_state,
)
from qhil.emulators.world.quantum._qutip import qt

Z_999 = stats.norm.ppf(1 - 0.001 / 2)  # two-sided 99.9 %


@pytest.mark.parametrize("v", [1.0, 0.95, 0.8, 1 / np.sqrt(2), 0.3, 0.0])
def test_chsh_of_werner_like_state_is_2_sqrt2_v(v: float) -> None:
    rho = spdc_pair_state(v)
    assert chsh_value(rho) == pytest.approx(2 * np.sqrt(2) * v, abs=1e-12)
    assert max_chsh_value(rho) == pytest.approx(2 * np.sqrt(2) * v, abs=1e-12)


def test_optimum_of_the_dephased_pair_is_horodecki_2_sqrt_1_plus_v2() -> None:
    v = 0.6
    rho = spdc_pair_state(v, noise="dephased")
    assert max_chsh_value(rho) == pytest.approx(2 * np.sqrt(1 + v**2), abs=1e-12)
    # the standard angles are not optimal for it: S = sqrt(2)(1 + V)
    assert chsh_value(rho) == pytest.approx(np.sqrt(2) * (1 + v), abs=1e-12)


def test_max_chsh_bounds_every_linear_analyzer_setting() -> None:
    rng = np.random.default_rng(3)
    rho = qt.rand_dm([2, 2], seed=4)
    best = max_chsh_value(rho)
    values = [chsh_value(rho, tuple(rng.uniform(0, np.pi, 4))) for _ in range(300)]
    assert max(abs(s) for s in values) <= best + 1e-12
    assert best <= 2 * np.sqrt(2) + 1e-12


def test_sampled_chsh_agrees_with_the_formula_within_its_error() -> None:
    rng = np.random.default_rng(7)
    v, shots = 0.9, 20_000
    rho = spdc_pair_state(v)
    sigma = chsh_std_error(rho, shots)
    # sigma from the same E's: var(S) = sum (1 - E^2)/N with |E| = V/sqrt(2)
    assert sigma == pytest.approx(np.sqrt(4 * (1 - v**2 / 2) / shots))
    estimate = chsh_from_counts(sample_chsh_counts(rho, shots, rng))
    assert abs(estimate.value - 2 * np.sqrt(2) * v) < Z_999 * sigma
    assert estimate.std_error == pytest.approx(sigma, rel=0.05)
    # the test has power: V = 0.85 would be rejected
    assert abs(estimate.value - 2 * np.sqrt(2) * 0.85) > Z_999 * sigma


def test_chsh_from_counts_on_known_counts() -> None:
    # E = +0.5, +0.5, +0.5, -0.5 with 200 shots each -> S = 2
    one = np.array([[375, 125], [125, 375]]) / 5
    neg = one[:, ::-1]
    counts = np.stack([one, one, one, neg]).round().astype(int)
    est = chsh_from_counts(counts)
    assert est.value == pytest.approx(2.0)
    assert est.std_error == pytest.approx(np.sqrt(4 * 0.75 / 200))
    with pytest.raises(ValueError, match="shape"):
        chsh_from_counts(counts[:3])
    with pytest.raises(ValueError, match="needs counts"):
        chsh_from_counts(np.zeros((4, 2, 2)))
