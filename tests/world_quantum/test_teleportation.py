"""Teleportation: PHYSICS.md case 6, average fidelity (2F + 1)/3."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world.quantum import (
    BELL_STATES,
    bell_dm,
    bell_fidelity,
    sample_teleport,
    spdc_pair_state,
    state_fidelity,
    t1t2_decay,
    teleport,
    teleport_branches,
    teleportation_average_fidelity,
    teleportation_channel,
    werner_state,
    werner_teleportation_fidelity,
)
from qhil.emulators.world.quantum._qutip import qt


@pytest.mark.parametrize("f", [1.0, 0.95, 0.8, 0.5, 0.25])
def test_werner_resource_gives_two_f_plus_one_over_three(f: float) -> None:
    resource = werner_state(f)
    expected = (2 * f + 1) / 3
    assert werner_teleportation_fidelity(f) == pytest.approx(expected)
    assert teleportation_average_fidelity(resource) == pytest.approx(expected, abs=1e-12)
    # independent check: qutip's average gate fidelity of the channel we build
    assert qt.average_gate_fidelity(teleportation_channel(resource)) == pytest.approx(expected)


def test_haar_random_inputs_agree_with_the_exact_average() -> None:
    # Monte Carlo over Haar-random inputs: mean fidelity within 99.9 % of the exact value
    resource = spdc_pair_state(0.8, noise="dephased", dephasing=(0.0, 0.1))
    fids = np.array(
        [
            state_fidelity(k, teleport(k, resource))
            for k in (qt.rand_ket(2, seed=s) for s in range(400))
        ]
    )
    exact = teleportation_average_fidelity(resource)
    t = stats.ttest_1samp(fids, exact)
    assert t.pvalue > 1e-3


def test_any_resource_follows_its_bell_fidelity() -> None:
    # standard protocol: f = (2 <Phi+|rho|Phi+> + 1)/3 for any resource
    for seed in range(5):
        resource = qt.rand_dm([2, 2], seed=seed)
        f = bell_fidelity(resource)
        assert teleportation_average_fidelity(resource) == pytest.approx((2 * f + 1) / 3, abs=1e-12)


def test_ideal_teleportation_returns_the_input_in_every_branch() -> None:
    psi = qt.rand_ket(2, seed=3)
    for nominal in BELL_STATES:
        branches = teleport_branches(psi, bell_dm(nominal), nominal=nominal)
        for b in branches:
            assert b.probability == pytest.approx(0.25)
            assert b.state is not None
            assert state_fidelity(psi, b.state) == pytest.approx(1.0, abs=1e-12)


def test_teleporting_through_a_stored_pair_half() -> None:
    # resource whose Bob half waited in a memory with T2: F = (1 + e^{-t/T2})/2
    t, t2 = 0.3, 1.0
    resource = t1t2_decay(bell_dm(), t, np.inf, t2, qubit=1)
    f = (1 + np.exp(-t / t2)) / 2
    assert teleportation_average_fidelity(resource) == pytest.approx((2 * f + 1) / 3)


def test_sampled_teleportation_outcomes_are_uniform_and_corrected() -> None:
    rng = np.random.default_rng(8)
    psi = (qt.basis(2, 0) + 1j * qt.basis(2, 1)).unit()
    outcomes = []
    for _ in range(800):
        outcome, state = sample_teleport(psi, bell_dm(), rng)
        outcomes.append(outcome)
        assert state_fidelity(psi, state) == pytest.approx(1.0, abs=1e-12)
    counts = [outcomes.count(b) for b in BELL_STATES]
    assert stats.chisquare(counts).pvalue > 1e-3


def test_teleport_input_errors_are_named() -> None:
    with pytest.raises(ValueError, match="input_state must be one qubit"):
        teleport(bell_dm(), bell_dm())
    with pytest.raises(ValueError, match="resource must be a two-qubit state"):
        teleport(qt.basis(2, 0), qt.rand_dm([2, 2, 2], seed=1))
