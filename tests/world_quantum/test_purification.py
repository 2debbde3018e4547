"""BBPSSW purification: PHYSICS.md case 6, F = 0.9 -> 0.9264 with probability 0.8756."""

from __future__ import annotations

import numpy as np
import pytest

from qhil.emulators.world.quantum import (
    BELL_STATES,
    bbpssw_round,
    bbpssw_werner,
    bell_fidelity,
    spdc_pair_state,
    twirl_to_werner,
    werner_state,
)
from qhil.emulators.world.quantum._qutip import qt


def test_published_numbers_for_f_0_9() -> None:
    result = bbpssw_round(werner_state(0.9))
    assert round(result.fidelity, 4) == 0.9264
    assert round(result.success_probability, 4) == 0.8756
    assert bbpssw_werner(0.9) == pytest.approx((result.fidelity, result.success_probability))


@pytest.mark.parametrize("f", np.linspace(0.3, 1.0, 8))
def test_qutip_circuit_matches_the_closed_form(f: float) -> None:
    result = bbpssw_round(werner_state(f))
    fidelity, success = bbpssw_werner(f)
    assert result.fidelity == pytest.approx(fidelity, abs=1e-12)
    assert result.success_probability == pytest.approx(success, abs=1e-12)
    assert (result.fidelity > f) == (0.5 < f < 1.0)


@pytest.mark.parametrize("bell", BELL_STATES)
def test_every_nominal_bell_state_purifies_alike(bell: str) -> None:
    result = bbpssw_round(werner_state(0.85, bell), bell=bell)  # type: ignore[arg-type]
    assert result.fidelity == pytest.approx(bbpssw_werner(0.85)[0], abs=1e-12)
    assert bell_fidelity(result.state, bell) == pytest.approx(result.fidelity)  # type: ignore[arg-type]


def test_twirl_makes_non_werner_input_follow_the_werner_formula() -> None:
    rho = spdc_pair_state(0.85, noise="dephased")
    f = bell_fidelity(rho)
    twirled = bbpssw_round(rho)
    assert twirled.fidelity == pytest.approx(bbpssw_werner(f)[0], abs=1e-12)
    # without the twirl the (pure phase-error) state purifies differently
    raw = bbpssw_round(rho, twirl=False)
    assert raw.fidelity != pytest.approx(twirled.fidelity, abs=1e-6)
    assert bell_fidelity(twirl_to_werner(rho)) == pytest.approx(f)


def test_two_different_pairs() -> None:
    f1, f2 = 0.9, 0.8
    result = bbpssw_round(werner_state(f1), werner_state(f2))
    g1, g2 = (1 - f1) / 3, (1 - f2) / 3
    success = f1 * f2 + f1 * g2 + g1 * f2 + 5 * g1 * g2
    assert result.success_probability == pytest.approx(success)
    assert result.fidelity == pytest.approx((f1 * f2 + g1 * g2) / success)


def test_bad_pairs_are_named() -> None:
    with pytest.raises(ValueError, match="second must be a two-qubit state"):
        bbpssw_round(werner_state(0.9), qt.basis(2, 0))
