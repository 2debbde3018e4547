"""Density matrices of qubit registers: coercion, checks and fidelity.

Fidelity everywhere in this package is the Jozsa (squared) fidelity
F(rho, sigma) = (tr sqrt(sqrt(rho) sigma sqrt(rho)))^2, which for a pure state
reduces to <psi|rho|psi>. qutip's ``fidelity`` is its square root.
"""

from __future__ import annotations

import numpy as np

from ._qutip import Qobj, qt

_TRACE_TOLERANCE = 1e-8

# Pauli eigenstates: a spherical 2-design, so averaging a fidelity (quadratic in
# the input) over them equals the uniform average over the Bloch sphere exactly.
PAULI_EIGENKETS: tuple[Qobj, ...] = (
    qt.basis(2, 0),
    qt.basis(2, 1),
    (qt.basis(2, 0) + qt.basis(2, 1)).unit(),
    (qt.basis(2, 0) - qt.basis(2, 1)).unit(),
    (qt.basis(2, 0) + 1j * qt.basis(2, 1)).unit(),
    (qt.basis(2, 0) - 1j * qt.basis(2, 1)).unit(),
)


def as_density_matrix(state: Qobj, what: str = "state") -> Qobj:
    """Return ``state`` as a normalised qubit density matrix, or raise naming what is wrong."""
    if not isinstance(state, Qobj):
        raise TypeError(f"{what} must be a qutip Qobj, got {type(state).__name__}")
    if state.isket:
        rho = state.proj()
    elif state.isoper:
        rho = state
    else:
        raise ValueError(f"{what} must be a ket or a density matrix, got a {state.type}")
    dims = list(rho.dims[0])
    if any(d != 2 for d in dims) or list(rho.dims[1]) != dims:
        raise ValueError(f"{what} must be a register of qubits, got dims {rho.dims}")
    trace = complex(rho.tr())
    if abs(trace - 1.0) > _TRACE_TOLERANCE:
        raise ValueError(f"{what} must have unit trace, got {trace.real:.6g}")
    return rho


def num_qubits(state: Qobj) -> int:
    """Number of qubits in a ket or density matrix."""
    return len(state.dims[0])


def _is_pure(rho: Qobj) -> bool:
    return bool(abs(complex((rho * rho).tr()) - 1.0) < 1e-12)


def state_fidelity(a: Qobj, b: Qobj) -> float:
    """Jozsa fidelity between two states (kets or density matrices) of equal dims."""
    if a.dims[0] != b.dims[0]:
        raise ValueError(f"states have different dims: {a.dims[0]} and {b.dims[0]}")
    # A pure argument gives the exact overlap; sqrtm only for two mixed states.
    if a.isket:
        return float(np.real(complex(a.dag() * as_density_matrix(b) * a)))
    if b.isket:
        return float(np.real(complex(b.dag() * as_density_matrix(a) * b)))
    rho, sigma = as_density_matrix(a, "a"), as_density_matrix(b, "b")
    if _is_pure(rho) or _is_pure(sigma):
        return float(np.real(complex((rho * sigma).tr())))
    return float(qt.fidelity(rho, sigma) ** 2)
