"""Density matrices of qubit registers: coercion, checks and fidelity.

Fidelity everywhere in this package is the Jozsa (squared) fidelity
F(rho, sigma) = (tr sqrt(sqrt(rho) sigma sqrt(rho)))^2, which for a pure state
reduces to <psi|rho|psi>. qutip's ``fidelity`` is its square root.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._qutip import Qobj

    PAULI_EIGENKETS: tuple[Qobj, ...]

_TRACE_TOLERANCE = 1e-8

_R2 = 1.0 / math.sqrt(2.0)
# Pauli eigenstates H, V, D, A, R, L: a spherical 2-design, so averaging a fidelity
# (quadratic in the input) over them equals the uniform average over the Bloch sphere
# exactly. Plain numpy here; as qutip kets, ``PAULI_EIGENKETS`` (built on first use,
# so importing this module does not import qutip).
PAULI_EIGENKET_ARRAYS: tuple[np.ndarray, ...] = tuple(
    np.array(k, dtype=complex)
    for k in ((1, 0), (0, 1), (_R2, _R2), (_R2, -_R2), (_R2, 1j * _R2), (_R2, -1j * _R2))
)


@functools.cache
def _pauli_eigenkets() -> tuple[Qobj, ...]:
    from ._qutip import Qobj

    return tuple(Qobj(k.reshape(2, 1)) for k in PAULI_EIGENKET_ARRAYS)


def __getattr__(name: str) -> Any:
    if name == "PAULI_EIGENKETS":
        return _pauli_eigenkets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def as_density_matrix(state: Qobj, what: str = "state") -> Qobj:
    """Return ``state`` as a normalised qubit density matrix, or raise naming what is wrong."""
    from ._qutip import Qobj

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


def density_array(state: Qobj | np.ndarray, what: str = "state") -> np.ndarray:
    """``state`` as a numpy density matrix of qubits (checked like
    :func:`as_density_matrix`): a qutip Qobj, or numpy amplitudes or a density matrix.
    Numpy in, numpy out without qutip (the memories' store path, issue Y3)."""
    if not isinstance(state, np.ndarray):
        return np.array(as_density_matrix(state, what).full(), dtype=complex)
    rho = np.asarray(state, dtype=complex)
    if rho.ndim == 1 or (rho.ndim == 2 and rho.shape[1] == 1):
        amplitudes = rho.ravel()
        rho = np.outer(amplitudes, amplitudes.conj())
    size = rho.shape[0]
    if rho.ndim != 2 or rho.shape != (size, size) or size < 2 or size & (size - 1):
        raise ValueError(f"{what} must be a register of qubits, got shape {state.shape}")
    trace = complex(np.trace(rho))
    if abs(trace - 1.0) > _TRACE_TOLERANCE:
        raise ValueError(f"{what} must have unit trace, got {trace.real:.6g}")
    return rho


def array_qubits(rho: np.ndarray) -> int:
    """Number of qubits of a numpy density matrix."""
    return int(rho.shape[0]).bit_length() - 1


def fidelity_arrays(a: np.ndarray, b: np.ndarray) -> float:
    """Jozsa fidelity of two numpy density matrices (as :func:`state_fidelity`)."""
    for pure, other in ((a, b), (b, a)):
        if abs(np.trace(pure @ pure).real - 1.0) < 1e-12:
            return float(np.real(np.trace(pure @ other)))
    w, v = np.linalg.eigh(a)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.conj().T
    inner = np.linalg.eigvalsh(root @ b @ root)
    return float(np.sum(np.sqrt(np.clip(inner, 0.0, None))) ** 2)


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
    from ._qutip import qt

    return float(qt.fidelity(rho, sigma) ** 2)
