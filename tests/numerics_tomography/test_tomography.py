"""Single-qubit tomography against exact states (qutip) and sampled counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import qutip as qt

from qhil.numerics.tomography import (
    BASES,
    PAULI_STATES,
    TomographyError,
    bloch_of,
    bloch_vector,
    density_matrix,
    estimate_state,
    fidelity,
    mean_fidelity,
    pauli_counts,
)

Z99_9 = 3.2905  # two-sided 99.9 %


def _exact_counts(rho: qt.Qobj, shots: int) -> np.ndarray:
    """Expected counts (not rounded) of rho in X, Y, Z from qutip's projectors."""
    ops = [qt.sigmax(), qt.sigmay(), qt.sigmaz()]
    p0 = np.array([(1 + qt.expect(op, rho)) / 2 for op in ops])
    return np.stack([p0 * shots, (1 - p0) * shots], axis=-1)


def test_named_states_match_qutip_kets() -> None:
    h, v = qt.basis(2, 0), qt.basis(2, 1)
    kets = {
        "H": h,
        "V": v,
        "D": (h + v).unit(),
        "A": (h - v).unit(),
        "R": (h + 1j * v).unit(),
        "L": (h - 1j * v).unit(),
    }
    for name, ket in kets.items():
        rho = density_matrix(bloch_vector(name))
        assert np.allclose(rho, (ket * ket.dag()).full()), name
        assert np.allclose(bloch_of(rho), PAULI_STATES[name])


def test_bloch_angles() -> None:
    theta, phi = 1.1, -0.4
    ket = math.cos(theta / 2) * qt.basis(2, 0) + np.exp(1j * phi) * math.sin(theta / 2) * qt.basis(
        2, 1
    )
    assert np.allclose(density_matrix(bloch_vector((theta, phi))), (ket * ket.dag()).full())


def test_exact_counts_recover_state_and_fidelity() -> None:
    rng = np.random.default_rng(5)
    rhos = [qt.rand_dm(2, seed=int(s)) for s in rng.integers(0, 10_000, 8)]
    counts = np.stack([_exact_counts(r, 1000) for r in rhos])
    est = estimate_state(counts)
    for k, rho in enumerate(rhos):
        assert np.allclose(est.density_matrix[k], rho.full(), atol=1e-12)
        target = qt.rand_dm(2, seed=k)
        # qutip's fidelity is the root (Uhlmann); ours the Jozsa square.
        want = qt.fidelity(rho, target) ** 2
        assert est.fidelity(bloch_of(target.full()))[0][k] == pytest.approx(want, abs=1e-9)
        assert est.purity[k] == pytest.approx((rho * rho).tr().real, abs=1e-12)


def test_unphysical_linear_estimate_projected_onto_sphere() -> None:
    counts = np.array([[10, 0], [10, 0], [10, 0]])  # r = (1, 1, 1): |r| = sqrt 3
    est = estimate_state(counts)
    assert np.allclose(est.bloch_linear, 1.0)
    assert np.allclose(est.bloch, 1 / math.sqrt(3))
    eig = np.linalg.eigvalsh(est.density_matrix)
    assert eig.min() >= -1e-12
    assert np.all(est.bloch_std > 0)  # all outcomes agree, yet an error


def test_fidelity_errors_cover_truth_at_stated_rate() -> None:
    """Pulls (F_est - F_true) / sigma of 4000 sampled tomographies of a noisy teleported-like
    state: mean ~0 and sd ~1 (two-sided 99.9 % bounds for 4000 samples), seed fixed."""
    rng = np.random.default_rng(11)
    true = 0.9 * bloch_vector((0.7, 2.0))  # mixed, |r| = 0.9
    target = bloch_vector((0.7, 2.0))
    p0 = (1 + true) / 2
    n = 300
    k = 4000
    n0 = rng.binomial(n, np.broadcast_to(p0, (k, 3)))
    counts = np.stack([n0, n - n0], axis=-1)
    f, s = estimate_state(counts).fidelity(target)
    pulls = (f - float(fidelity(true, target))) / s
    assert abs(pulls.mean()) < Z99_9 / math.sqrt(k)
    # sd of a normal sample: se(sd) ~ 1/sqrt(2k)
    assert abs(pulls.std() - 1.0) < Z99_9 / math.sqrt(2 * k) + 0.02


def test_wrong_error_would_be_caught() -> None:
    """The coverage test has power: errors half as large give sd ~2."""
    rng = np.random.default_rng(11)
    true = 0.9 * bloch_vector("D")
    n0 = rng.binomial(300, np.broadcast_to((1 + true) / 2, (4000, 3)))
    f, s = estimate_state(np.stack([n0, 300 - n0], axis=-1)).fidelity(bloch_vector("D"))
    pulls = (f - 0.95) / (s / 2)
    assert abs(pulls.std() - 1.0) > Z99_9 / math.sqrt(8000) + 0.02


def test_pauli_counts_groups() -> None:
    basis = np.array([0, 1, 2, 2, 0, 1])
    outcome = np.array([0, 1, 1, 1, 0, 0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    c = pauli_counts(basis, outcome, groups=groups, n_groups=3)
    assert c.shape == (3, 3, 2)
    assert c[0].tolist() == [[1, 0], [0, 1], [0, 1]]
    assert c[1].tolist() == [[1, 0], [1, 0], [0, 1]]
    assert c[2].sum() == 0
    assert pauli_counts(basis, outcome).sum() == 6


def test_mean_fidelity() -> None:
    m, s = mean_fidelity([0.9, 0.8], [0.03, 0.04])
    assert m == pytest.approx(0.85)
    assert s == pytest.approx(0.025)


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        (np.zeros((3, 3)), "shape"),
        (np.array([[1, 1], [0, 0], [2, 1]]), "basis Y"),
        (np.array([[1, -1], [1, 1], [2, 1]]), "non-negative"),
    ],
)
def test_bad_counts_named(counts: np.ndarray, field: str) -> None:
    with pytest.raises(TomographyError, match=field):
        estimate_state(counts)


def test_bad_state_name() -> None:
    with pytest.raises(TomographyError, match="state: 'Q'"):
        bloch_vector("Q")
    assert BASES == ("X", "Y", "Z")
