"""Kraus maps: trace preservation, the T1/T2 conventions, and agreement with a
Lindblad master equation solved by qutip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhil.emulators.world.quantum import (
    amplitude_damping_kraus,
    apply_kraus,
    bell_ket,
    bit_flip,
    compose,
    dephase,
    depolarize,
    depolarizing_kraus,
    kraus_superoperator,
    phase_flip_kraus,
    t1t2_decay,
    t1t2_kraus,
)
from qhil.emulators.world.quantum._qutip import qt
from qhil.emulators.world.quantum.channels import pure_dephasing_rate


@pytest.mark.parametrize(
    "kraus",
    [
        amplitude_damping_kraus(0.37),
        phase_flip_kraus(0.2),
        depolarizing_kraus(0.6),
        t1t2_kraus(0.4, 1.3, 0.9),
        compose(depolarizing_kraus(0.1), t1t2_kraus(2.0, 1.0, 2.0)),
    ],
)
def test_kraus_maps_are_trace_preserving(kraus: list[qt.Qobj]) -> None:
    total = sum(k.dag() * k for k in kraus)
    np.testing.assert_allclose(total.full(), np.eye(2), atol=1e-12)


def test_amplitude_damping_empties_the_excited_state_with_t1() -> None:
    t1 = 2.0
    for t in (0.0, 0.5, 3.0):
        out = t1t2_decay(qt.basis(2, 1), t, t1, 2 * t1)
        assert out.full()[1, 1].real == pytest.approx(math.exp(-t / t1), abs=1e-12)


def test_coherence_decays_with_t2_including_the_t1_part() -> None:
    t1, t2 = 3.0, 1.2
    plus = (qt.basis(2, 0) + qt.basis(2, 1)).unit()
    for t in (0.1, 1.0, 2.5):
        out = t1t2_decay(plus, t, t1, t2)
        assert abs(out.full()[0, 1]) == pytest.approx(0.5 * math.exp(-t / t2), abs=1e-12)


def test_dephasing_one_half_of_phi_plus_matches_physics_case_6() -> None:
    # PHYSICS.md case 6: F = (1 + exp(-t/T2)) / 2 (pure dephasing, T1 infinite).
    t2 = 0.8
    phi = bell_ket("phi+")
    for t in (0.0, 0.2, 0.8, 3.0):
        rho = t1t2_decay(phi, t, math.inf, t2, qubit=1)
        fidelity = (phi.dag() * rho * phi).real
        assert fidelity == pytest.approx((1 + math.exp(-t / t2)) / 2, abs=1e-12)


@pytest.mark.parametrize("qubit", [0, 1])
def test_t1t2_kraus_on_half_a_pair_agrees_with_lindblad_mesolve(qubit: int) -> None:
    # Independent reference: the Lindblad equation with collapse operators
    # sqrt(1/T1) a and sqrt(gamma_phi/2) sigma_z on the stored qubit.
    t1, t2, t = 1.5, 0.9, 0.7
    gamma_phi = 1 / t2 - 1 / (2 * t1)
    lower = qt.destroy(2)  # |0><1|: decay towards |0>
    ops = [math.sqrt(1 / t1) * lower, math.sqrt(gamma_phi / 2) * qt.sigmaz()]
    ops = [qt.expand_operator(op, dims=[2, 2], targets=qubit) for op in ops]
    rho0 = qt.ket2dm((qt.tensor(qt.basis(2, 0), qt.basis(2, 1)) + bell_ket("psi-")).unit())
    reference = qt.mesolve(0 * qt.qeye([2, 2]), rho0, [0.0, t], ops).states[-1]
    ours = t1t2_decay(rho0, t, t1, t2, qubit=qubit)
    np.testing.assert_allclose(ours.full(), reference.full(), atol=1e-6)


def test_depolarize_and_dephase_definitions() -> None:
    rho = qt.ket2dm((qt.basis(2, 0) + 1j * qt.basis(2, 1)).unit())
    p = 0.3
    np.testing.assert_allclose(
        depolarize(rho, p).full(), ((1 - p) * rho + p * qt.qeye(2) / 2).full(), atol=1e-12
    )
    z = qt.sigmaz()
    np.testing.assert_allclose(
        dephase(rho, p).full(), ((1 - p) * rho + p * z * rho * z).full(), atol=1e-12
    )
    x = qt.sigmax()
    np.testing.assert_allclose(
        bit_flip(rho, p).full(), ((1 - p) * rho + p * x * rho * x).full(), atol=1e-12
    )


def test_apply_kraus_equals_the_qutip_superoperator_on_a_register() -> None:
    rho = qt.rand_dm([2, 2, 2], seed=11)
    kraus = t1t2_kraus(0.3, 1.0, 0.7)
    superop = kraus_superoperator(kraus)
    for qubit in range(3):
        full = qt.super_tensor(
            *[superop if i == qubit else qt.to_super(qt.qeye(2)) for i in range(3)]
        )
        reference = qt.vector_to_operator(full * qt.operator_to_vector(rho))
        np.testing.assert_allclose(
            apply_kraus(rho, kraus, qubit).full(), reference.full(), atol=1e-12
        )
        # and the channel really did something to that qubit
        assert not np.allclose(apply_kraus(rho, kraus, qubit).full(), rho.full(), atol=1e-3)


def test_bad_t1_t2_and_probabilities_are_named() -> None:
    with pytest.raises(ValueError, match="t2 must be <= 2\\*t1"):
        t1t2_kraus(1.0, 1.0, 3.0)
    with pytest.raises(ValueError, match="t1 must be > 0"):
        t1t2_kraus(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="duration"):
        t1t2_kraus(-1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="depolarizing probability"):
        depolarizing_kraus(1.5)
    with pytest.raises(ValueError, match="qubit 2 is not in"):
        dephase(bell_ket(), 0.1, qubit=2)
    assert pure_dephasing_rate(1.0, 2.0) == 0.0
    assert pure_dephasing_rate(math.inf, 0.5) == pytest.approx(2.0)
