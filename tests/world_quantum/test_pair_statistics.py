"""Joint outcome probabilities of a pair, as the click sampler uses them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world.quantum import (
    BASIS_X,
    BASIS_Z,
    bbm92_pair_qber,
    bell_dm,
    bloch_analyzer,
    correlation,
    joint_probabilities,
    linear_analyzer,
    pair_qber,
    rotate_basis,
    sample_joint_counts,
    spdc_pair_state,
    werner_joint_probabilities,
)
from qhil.emulators.world.quantum._qutip import qt


def _random_unitaries(n: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.normal(size=(n, 2, 2)) + 1j * rng.normal(size=(n, 2, 2))
    q, r = np.linalg.qr(z)
    return (
        q
        * (np.diagonal(r, axis1=1, axis2=2) / np.abs(np.diagonal(r, axis1=1, axis2=2)))[:, None, :]
    )


def test_joint_probabilities_equal_qutip_expectation_values() -> None:
    rng = np.random.default_rng(5)
    rho = qt.rand_dm([2, 2], seed=9)
    polar, azimuth = rng.uniform(0, np.pi, (2, 7)), rng.uniform(0, 2 * np.pi, (2, 7))
    basis_a = bloch_analyzer(polar[0], azimuth[0])
    basis_b = bloch_analyzer(polar[1], azimuth[1])
    p = joint_probabilities(rho, basis_a, basis_b)
    assert p.shape == (7, 2, 2)
    for w in range(7):
        for i in range(2):
            for j in range(2):
                ket = qt.tensor(qt.Qobj(basis_a[w, i][:, None]), qt.Qobj(basis_b[w, j][:, None]))
                assert p[w, i, j] == pytest.approx(qt.expect(rho, ket), abs=1e-12)
    np.testing.assert_allclose(p.sum(axis=(-1, -2)), 1.0, atol=1e-12)


def test_settings_broadcast_like_numpy() -> None:
    rho = qt.rand_dm([2, 2], seed=5)
    ta, tb = np.linspace(0, 1, 3)[:, None], np.linspace(0, 2, 4)[None, :]
    grid = joint_probabilities(rho, linear_analyzer(ta), linear_analyzer(tb))
    assert grid.shape == (3, 4, 2, 2)
    for i in range(3):
        for j in range(4):
            single = joint_probabilities(rho, linear_analyzer(ta[i, 0]), linear_analyzer(tb[0, j]))
            np.testing.assert_allclose(grid[i, j], single, atol=1e-12)
    shared = joint_probabilities(rho, BASIS_Z, linear_analyzer(tb[0]))
    np.testing.assert_allclose(shared, grid[0], atol=1e-12)  # ta[0] = 0 is the Z basis


def test_werner_closed_form_matches_the_general_computation() -> None:
    rng = np.random.default_rng(1)
    theta_a, theta_b = rng.uniform(0, np.pi, 50), rng.uniform(0, np.pi, 50)
    v = 0.83
    general = joint_probabilities(
        spdc_pair_state(v), linear_analyzer(theta_a), linear_analyzer(theta_b)
    )
    np.testing.assert_allclose(general, werner_joint_probabilities(v, theta_a, theta_b), atol=1e-12)
    # Malus: both transmit with probability cos^2(ta - tb)/2 for a perfect pair
    perfect = werner_joint_probabilities(1.0, theta_a, theta_b)[:, 0, 0]
    np.testing.assert_allclose(perfect, np.cos(theta_a - theta_b) ** 2 / 2, atol=1e-12)


def test_rotating_the_basis_equals_rotating_the_state() -> None:
    rng = np.random.default_rng(2)
    rho = spdc_pair_state(0.9, "psi-")
    u_a, u_b = _random_unitaries(5, rng), _random_unitaries(5, rng)
    via_basis = joint_probabilities(rho, rotate_basis(BASIS_Z, u_a), rotate_basis(BASIS_X, u_b))
    for w in range(5):
        u = qt.tensor(qt.Qobj(u_a[w]), qt.Qobj(u_b[w]))
        rotated = u * rho * u.dag()
        assert joint_probabilities(rotated, BASIS_Z, BASIS_X) == pytest.approx(
            via_basis[w], abs=1e-12
        )
    # ...and the rotation matters
    assert not np.allclose(via_basis, joint_probabilities(rho, BASIS_Z, BASIS_X), atol=1e-3)


@pytest.mark.parametrize("bell", ["phi+", "phi-", "psi+", "psi-"])
def test_bbm92_qber_of_the_white_noise_pair_is_half_of_one_minus_v(bell: str) -> None:
    for v in (1.0, 0.95, 0.6):
        e_z, e_x = bbm92_pair_qber(spdc_pair_state(v, bell), bell)  # type: ignore[arg-type]
        assert e_z == pytest.approx((1 - v) / 2, abs=1e-12)
        assert e_x == pytest.approx((1 - v) / 2, abs=1e-12)


def test_dephased_pair_has_errors_only_in_x() -> None:
    e_z, e_x = bbm92_pair_qber(spdc_pair_state(0.8, noise="dephased"))
    assert e_z == pytest.approx(0.0, abs=1e-12)
    assert e_x == pytest.approx(0.1, abs=1e-12)


def test_pair_qber_refuses_a_basis_without_perfect_correlation() -> None:
    with pytest.raises(ValueError, match="not perfectly correlated"):
        # halfway between X (correlated) and Y (anticorrelated) for phi+
        pair_qber(bell_dm(), bloch_analyzer(np.pi / 2, np.pi / 4))


def test_correlation_of_phi_plus_in_the_circular_basis_is_minus_one() -> None:
    circular = bloch_analyzer(np.pi / 2, np.pi / 2)
    assert correlation(bell_dm("phi+"), circular, circular) == pytest.approx(-1.0)


def test_sampled_counts_follow_the_probabilities() -> None:
    # chi-square goodness of fit per setting, 99.9 % confidence, fixed seed
    rng = np.random.default_rng(2024)
    rho = spdc_pair_state(0.9)
    angles = np.array([0.0, 0.3, 1.1])
    basis_a, basis_b = linear_analyzer(angles), linear_analyzer(angles[::-1])
    shots = 20_000
    counts = sample_joint_counts(rho, basis_a, basis_b, shots, rng)
    assert counts.shape == (3, 2, 2)
    p = joint_probabilities(rho, basis_a, basis_b)
    for w in range(3):
        assert counts[w].sum() == shots
        result = stats.chisquare(counts[w].ravel(), shots * p[w].ravel())
        assert result.pvalue > 1e-3


def test_bad_pair_matrices_are_named() -> None:
    with pytest.raises(ValueError, match="4x4"):
        joint_probabilities(np.eye(2) / 2, BASIS_Z, BASIS_Z)
    with pytest.raises(ValueError, match="unit trace"):
        joint_probabilities(np.eye(4), BASIS_Z, BASIS_Z)
    with pytest.raises(ValueError, match="two qubits"):
        joint_probabilities(qt.rand_dm([2, 2, 2], seed=1), BASIS_Z, BASIS_Z)
