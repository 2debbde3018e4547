"""Bell, Werner and SPDC pair states."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qhil.emulators.world.quantum import (
    BELL_STATES,
    as_density_matrix,
    bell_dm,
    bell_fidelity,
    bell_ket,
    fidelity_to_visibility,
    spdc_pair_state,
    state_fidelity,
    twirl_to_werner,
    visibility_to_fidelity,
    werner_state,
)
from qhil.emulators.world.quantum._qutip import qt


def test_bell_states_are_an_orthonormal_basis_with_the_textbook_amplitudes() -> None:
    kets = [bell_ket(name) for name in BELL_STATES]
    gram = np.array([[complex(a.dag() * b) for b in kets] for a in kets])
    np.testing.assert_allclose(gram, np.eye(4), atol=1e-12)
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(bell_ket("phi+").full().ravel(), [s, 0, 0, s])
    np.testing.assert_allclose(bell_ket("psi-").full().ravel(), [0, s, -s, 0])
    # qutip's own |Phi+> agrees
    assert state_fidelity(bell_ket("phi+"), qt.bell_state("00")) == pytest.approx(1.0)


@pytest.mark.parametrize("bell", BELL_STATES)
def test_werner_state_has_the_requested_fidelity_and_is_bell_diagonal(bell: str) -> None:
    rho = werner_state(0.8, bell)  # type: ignore[arg-type]
    assert bell_fidelity(rho, bell) == pytest.approx(0.8)  # type: ignore[arg-type]
    for other in BELL_STATES:
        if other != bell:
            assert bell_fidelity(rho, other) == pytest.approx(0.2 / 3)
    assert complex(rho.tr()) == pytest.approx(1.0)


def test_white_noise_pair_is_the_werner_state_with_f_from_v() -> None:
    for v in (0.0, 0.5, 0.93, 1.0):
        rho = spdc_pair_state(v)
        f = visibility_to_fidelity(v)
        np.testing.assert_allclose(rho.full(), werner_state(f).full(), atol=1e-12)
        assert fidelity_to_visibility(f) == pytest.approx(v)


def test_dephased_pair_keeps_hv_correlation_and_loses_coherence() -> None:
    v = 0.7
    rho = spdc_pair_state(v, "phi+", noise="dephased").full()
    assert rho[0, 0].real == pytest.approx(0.5) and rho[3, 3].real == pytest.approx(0.5)
    assert rho[1, 1].real == pytest.approx(0.0) and rho[2, 2].real == pytest.approx(0.0)
    assert rho[0, 3].real == pytest.approx(v / 2)


def test_per_half_noise_is_applied_to_the_named_half() -> None:
    # depolarizing one half of |Phi+> with p leaves Bell fidelity 1 - 3p/4
    rho = spdc_pair_state(1.0, depolarizing=(0.2, 0.0))
    assert bell_fidelity(rho) == pytest.approx(1 - 0.75 * 0.2)
    # dephasing each half with p: coherence (1 - 2p)^2, fidelity (1 + (1-2p)^2)/2
    rho = spdc_pair_state(1.0, dephasing=(0.1, 0.1))
    assert bell_fidelity(rho) == pytest.approx((1 + 0.8**2) / 2)
    # local noise leaves the reduced state of the other half maximally mixed
    rho = spdc_pair_state(0.9, depolarizing=(0.3, 0.0), dephasing=(0.0, 0.2))
    np.testing.assert_allclose(rho.ptrace(1).full(), np.eye(2) / 2, atol=1e-12)


def test_twirl_keeps_the_fidelity_and_makes_a_werner_state() -> None:
    rho = spdc_pair_state(0.8, noise="dephased", dephasing=(0.05, 0.0))
    twirled = twirl_to_werner(rho)
    assert bell_fidelity(twirled) == pytest.approx(bell_fidelity(rho))
    np.testing.assert_allclose(twirled.full(), werner_state(bell_fidelity(rho)).full(), atol=1e-12)


def test_fidelity_of_mixed_states_matches_qutip_squared() -> None:
    a, b = qt.rand_dm([2, 2], seed=1), qt.rand_dm([2, 2], seed=2)
    assert state_fidelity(a, b) == pytest.approx(qt.fidelity(a, b) ** 2)
    assert state_fidelity(bell_ket(), a) == pytest.approx(bell_fidelity(a))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bell_ket("phi"), "bell state 'phi' is not one of"),  # type: ignore[arg-type]
        (lambda: werner_state(1.2), "fidelity must be in"),
        (lambda: spdc_pair_state(-0.1), "visibility must be in"),
        (lambda: spdc_pair_state(0.9, noise="pink"), "noise 'pink'"),  # type: ignore[arg-type]
        (lambda: as_density_matrix(2 * bell_dm()), "unit trace"),
        (lambda: as_density_matrix(qt.basis(3, 0)), "register of qubits"),
        (lambda: as_density_matrix(np.eye(2)), "qutip Qobj"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_named(call: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call()  # type: ignore[operator]


def test_all_bell_pairs_have_unit_fidelity_only_with_themselves() -> None:
    for a, b in itertools.product(BELL_STATES, repeat=2):
        expected = 1.0 if a == b else 0.0
        assert bell_fidelity(bell_dm(a), b) == pytest.approx(expected, abs=1e-12)
