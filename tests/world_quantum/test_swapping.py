"""Entanglement swapping: PHYSICS.md case 6, F = 1/4 + (4F1 - 1)(4F2 - 1)/12."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world.quantum import (
    BELL_STATES,
    LINEAR_OPTICS_OUTCOMES,
    bell_dm,
    bell_fidelity,
    dephase,
    entanglement_swap,
    sample_swap,
    spdc_pair_state,
    werner_state,
    werner_swap_fidelity,
)


@pytest.mark.parametrize(
    ("f1", "f2"), [(1.0, 1.0), (0.9, 0.8), (0.75, 0.95), (0.5, 0.6), (0.25, 0.9)]
)
def test_werner_swap_fidelity_in_every_branch(f1: float, f2: float) -> None:
    result = entanglement_swap(werner_state(f1), werner_state(f2))
    expected = 0.25 + (4 * f1 - 1) * (4 * f2 - 1) / 12
    assert werner_swap_fidelity(f1, f2) == pytest.approx(expected)
    for branch in result.branches:
        assert branch.probability == pytest.approx(0.25)
        assert branch.state is not None
        assert bell_fidelity(branch.state) == pytest.approx(expected, abs=1e-12)
    assert bell_fidelity(result.state) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(BELL_STATES, repeat=2)))
def test_ideal_pairs_of_any_bell_type_swap_to_the_target(a: str, b: str) -> None:
    for target in ("phi+", "psi-"):
        result = entanglement_swap(bell_dm(a), bell_dm(b), nominal=(a, b), target=target)  # type: ignore[arg-type]
        for branch in result.branches:
            assert branch.state is not None
            assert bell_fidelity(branch.state, target) == pytest.approx(1.0, abs=1e-12)  # type: ignore[arg-type]


def test_without_the_right_nominal_states_the_correction_is_wrong() -> None:
    # a psi- and a phi+ pair corrected as if both were phi+: the output is psi-
    result = entanglement_swap(bell_dm("psi-"), bell_dm("phi+"))
    assert bell_fidelity(result.state) == pytest.approx(0.0, abs=1e-12)
    assert bell_fidelity(result.state, "psi-") == pytest.approx(1.0, abs=1e-12)


def test_dephased_inputs_give_branch_dependent_states_with_the_product_coherence() -> None:
    # dephasing one half of each |Phi+> (coherences c1, c2): swapped coherence c1 c2
    c1, c2 = 0.8, 0.6
    ab = dephase(bell_dm(), (1 - c1) / 2, qubit=1)
    cd = dephase(bell_dm(), (1 - c2) / 2, qubit=0)
    result = entanglement_swap(ab, cd)
    for branch in result.branches:
        assert branch.state is not None
        assert bell_fidelity(branch.state) == pytest.approx((1 + c1 * c2) / 2, abs=1e-12)


def test_linear_optics_analyzer_heralds_half_of_the_swaps() -> None:
    result = entanglement_swap(spdc_pair_state(0.9), spdc_pair_state(0.9))
    p, state = result.heralded(LINEAR_OPTICS_OUTCOMES)
    assert p == pytest.approx(0.5)
    assert state is not None
    f = (1 + 3 * 0.9) / 4
    assert bell_fidelity(state) == pytest.approx(werner_swap_fidelity(f, f))


def test_sampled_swaps_herald_at_the_right_rate() -> None:
    rng = np.random.default_rng(11)
    pair = werner_state(0.9)
    trials = 2000
    outcomes = [
        sample_swap(pair, pair, rng, heralded_outcomes=LINEAR_OPTICS_OUTCOMES)[0]
        for _ in range(trials)
    ]
    heralded = sum(o is not None for o in outcomes)
    assert stats.binomtest(heralded, trials, 0.5).pvalue > 1e-3
    assert set(outcomes) == {None, "psi+", "psi-"}


def test_swap_input_errors_are_named() -> None:
    with pytest.raises(ValueError, match="pair_cd must be a two-qubit state"):
        entanglement_swap(bell_dm(), werner_state(0.9).ptrace(0))
    with pytest.raises(ValueError, match="bell state 'phi' is not one of"):
        entanglement_swap(bell_dm(), bell_dm(), target="phi")  # type: ignore[arg-type]
