"""Pauli frames and the Bell-diagonal model against the world's qutip protocols, and the
ping's statistics (Clopper-Pearson, SPRT)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qhil.emulators.world.quantum import bell_measurement as bm
from qhil.emulators.world.quantum._qutip import qt
from qhil.emulators.world.quantum.analyzers import BASIS_X, BASIS_Z
from qhil.emulators.world.quantum.pair_statistics import joint_probabilities
from qhil.emulators.world.quantum.states import bell_dm, bell_ket, werner_state
from qhil.emulators.world.quantum.swapping import werner_swap_fidelity
from qhil.orchestrator.experiments.network import frames

BASIS_Y = np.array([[1, 1j], [1, -1j]]) / np.sqrt(2)  # rows: R, L


@pytest.mark.parametrize(("a", "b"), list(itertools.product(frames.BELL_BITS, repeat=2)))
def test_swap_composes_frames_as_qutip(a: str, b: str) -> None:
    state = qt.tensor(bell_ket(a), bell_ket(b))
    for branch in bm.measure_bell(state, (1, 2)):
        if branch.probability < 1e-9:
            continue
        predicted = frames.compose(a, branch.outcome, b)
        fid = (bell_dm(predicted) * branch.state).tr().real
        assert fid == pytest.approx(1.0)


@pytest.mark.parametrize("bell", list(frames.BELL_BITS))
def test_agreement_per_basis_as_qutip(bell: str) -> None:
    rho = bell_dm(bell)
    for basis, name in ((BASIS_Z, "Z"), (BASIS_X, "X"), (BASIS_Y, "Y")):
        p = joint_probabilities(rho, basis, basis)
        agree = float(np.real(p[0, 0] + p[1, 1]))
        assert agree == pytest.approx(1.0 if frames.agree_expected(bell, name) else 0.0)


def test_correction_takes_every_state_to_phi_plus() -> None:
    for bell, op in frames.CORRECTION.items():
        x, z = frames.BELL_BITS[bell]
        ox, oz = {"I": (0, 0), "X": (1, 0), "Z": (0, 1), "Y": (1, 1)}[op]
        assert frames.bell_name(x ^ ox, z ^ oz) == "phi+"


@pytest.mark.parametrize(("f1", "f2"), [(0.9, 0.9), (0.95, 0.7), (0.6, 0.5)])
def test_bell_diagonal_swap_is_werner_formula(f1: float, f2: float) -> None:
    v = frames.swap(frames.werner(f1), frames.werner(f2))
    assert v[0] == pytest.approx(werner_swap_fidelity(f1, f2))
    assert v[0] == pytest.approx(0.25 + (4 * f1 - 1) * (4 * f2 - 1) / 12)
    assert v.sum() == pytest.approx(1.0)


def test_dephasing_of_phi_plus() -> None:
    c = np.exp(-0.7)
    assert frames.dephase(frames.werner(1.0), c)[0] == pytest.approx((1 + c) / 2)
    # Werner input, against qutip's dephased state
    rho = werner_state(0.9, "phi+")
    z = qt.tensor(qt.qeye(2), qt.sigmaz())
    q = (1 - c) / 2
    out = (1 - q) * rho + q * z * rho * z
    assert frames.dephase(frames.werner(0.9), c)[0] == pytest.approx(
        (bell_dm("phi+") * out).tr().real
    )


def test_agreements_recover_the_errors() -> None:
    v = np.array([0.8, 0.1, 0.06, 0.04])
    q_z, q_x, q_y = v[0] + v[2], v[0] + v[1], v[0] + v[3]
    np.testing.assert_allclose(frames.from_agreements(q_z, q_x, q_y), v)
    assert frames.fidelity_from_agreement(frames.agreement_from_fidelity(0.8)) == pytest.approx(0.8)
    assert frames.agreement_from_fidelity(0.8) == pytest.approx((q_z + q_x + q_y) / 3)


def test_clopper_pearson_bounds() -> None:
    from scipy import stats

    lo, hi = frames.clopper_pearson(80, 100, 0.95)
    # by definition: P(X >= 80 | lo) = 5 % and P(X <= 80 | hi) = 5 %
    assert stats.binom.sf(79, 100, lo) == pytest.approx(0.05, rel=1e-6)
    assert stats.binom.cdf(80, 100, hi) == pytest.approx(0.05, rel=1e-6)
    assert frames.clopper_pearson(0, 0, 0.95) == (0.0, 1.0)


def test_sprt_decides_both_ways_at_its_error_rates() -> None:
    """Over seeds: at F = threshold + delta it says reachable, at the threshold not, each
    wrong at most ~alpha (binomial bound, 99.9 % two-sided)."""
    rng = np.random.default_rng(5)
    runs = 300
    for f, want in ((0.6, True), (0.5, False)):
        q = frames.agreement_from_fidelity(f)
        wrong = 0
        for _ in range(runs):
            t = frames.Sprt(0.5, 0.1, alpha=0.05, beta=0.05)
            t.update(rng.random(2000) < q)
            wrong += t.decision is not want
        # expected <= 5 %: 300 runs, 99.9 % upper binomial bound ~ 30
        assert wrong <= 30, (f, wrong)
    t = frames.Sprt(0.5, 0.1, alpha=0.01, beta=0.01)
    assert t.update([True] * 10) is None and t.decided_after is None
    assert t.update([True] * 200) is True and t.decided_after is not None
    assert t.update([False] * 1000) is True  # decided: later pairs change nothing
