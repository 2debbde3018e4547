"""Single-qubit noise channels as Kraus maps, applied to one qubit of a register.

Conventions (all probabilities in [0, 1]):

- amplitude damping with gamma: |1> decays to |0> with probability gamma
  (|0> is the relaxed state);
- phase flip with p: Z applied with probability p, coherences scale by 1 - 2p;
- bit flip with p: X applied with probability p;
- depolarizing with p: rho -> (1 - p) rho + p 1/2;
- T1/T2 decay for a time t: amplitude damping gamma = 1 - exp(-t/T1), then pure
  dephasing at rate 1/T2 - 1/(2 T1), so coherences decay as exp(-t/T2) in total
  (T2 is the measured coherence time and must satisfy T2 <= 2 T1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .density import as_density_matrix

if TYPE_CHECKING:
    from ._qutip import Qobj

# qutip is imported where a qutip object is made, not with this module (issue Y3).
KrausMap = list["Qobj"]
# The same maps as numpy arrays of shape (k, 2, 2): what the hot paths use, since
# building qutip objects costs more than the arithmetic on 2x2 matrices.
KrausArray = npt.NDArray[np.complex128]

_I = np.eye(2, dtype=complex)
_X = np.array([[0, 1], [1, 0]], dtype=complex)
_Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
_Z = np.array([[1, 0], [0, -1]], dtype=complex)


def _probability(value: float, name: str) -> float:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def to_qobjs(kraus: KrausArray) -> KrausMap:
    """A Kraus array (k, 2, 2) as a list of qutip operators."""
    from ._qutip import Qobj

    return [Qobj(k) for k in kraus]


def _as_array(kraus: Sequence[Qobj] | KrausArray) -> KrausArray:
    if isinstance(kraus, np.ndarray):
        return kraus.astype(np.complex128, copy=False)
    return np.stack([np.asarray(k.full(), dtype=np.complex128) for k in kraus])


def amplitude_damping_array(gamma: float) -> KrausArray:
    g = _probability(gamma, "gamma")
    return np.array(
        [[[1.0, 0.0], [0.0, math.sqrt(1.0 - g)]], [[0.0, math.sqrt(g)], [0.0, 0.0]]],
        dtype=np.complex128,
    )


def phase_flip_array(p: float) -> KrausArray:
    p = _probability(p, "phase-flip probability")
    return np.stack([math.sqrt(1.0 - p) * _I, math.sqrt(p) * _Z])


def bit_flip_array(p: float) -> KrausArray:
    p = _probability(p, "bit-flip probability")
    return np.stack([math.sqrt(1.0 - p) * _I, math.sqrt(p) * _X])


def depolarizing_array(p: float) -> KrausArray:
    p = _probability(p, "depolarizing probability")
    pauli = math.sqrt(p / 4.0)
    return np.stack([math.sqrt(1.0 - 0.75 * p) * _I, pauli * _X, pauli * _Y, pauli * _Z])


def amplitude_damping_kraus(gamma: float) -> KrausMap:
    """Kraus operators of amplitude damping towards |0> with decay probability gamma."""
    return to_qobjs(amplitude_damping_array(gamma))


def phase_flip_kraus(p: float) -> KrausMap:
    """Kraus operators of the phase-flip (pure dephasing) channel."""
    return to_qobjs(phase_flip_array(p))


def bit_flip_kraus(p: float) -> KrausMap:
    """Kraus operators of the bit-flip channel."""
    return to_qobjs(bit_flip_array(p))


def depolarizing_kraus(p: float) -> KrausMap:
    """Kraus operators of rho -> (1 - p) rho + p 1/2."""
    return to_qobjs(depolarizing_array(p))


def check_t1_t2(t1: float, t2: float) -> None:
    """Raise unless 0 < T1, 0 < T2 <= 2 T1 (either may be math.inf)."""
    if not t1 > 0.0:
        raise ValueError(f"t1 must be > 0 s (math.inf for none), got {t1!r}")
    if not t2 > 0.0:
        raise ValueError(f"t2 must be > 0 s (math.inf for none), got {t2!r}")
    if t2 > 2.0 * t1 * (1.0 + 1e-12):
        raise ValueError(
            f"t2 must be <= 2*t1 (T1 decay alone gives T2 = 2 T1), got t1={t1!r}, t2={t2!r}"
        )


def pure_dephasing_rate(t1: float, t2: float) -> float:
    """1/T_phi = 1/T2 - 1/(2 T1), in 1/s (zero when T1 accounts for all of T2)."""
    check_t1_t2(t1, t2)
    return max(0.0, 1.0 / t2 - 0.5 / t1)


def compose_arrays(first: KrausArray, then: KrausArray) -> KrausArray:
    """Kraus array of ``then`` after ``first`` (all products, then pruned of zeros)."""
    products = np.einsum("jab,ibc->jiac", then, first).reshape(-1, 2, 2)
    return products[np.abs(products).sum(axis=(1, 2)) > 0.0]


def compose(first: Sequence[Qobj], then: Sequence[Qobj]) -> KrausMap:
    """Kraus operators of ``then`` after ``first``."""
    return to_qobjs(compose_arrays(_as_array(first), _as_array(then)))


def t1t2_array(duration: float, t1: float, t2: float) -> KrausArray:
    if not duration >= 0.0:
        raise ValueError(f"duration must be >= 0 s, got {duration!r}")
    check_t1_t2(t1, t2)
    gamma = -math.expm1(-duration / t1)
    coherence = math.exp(-duration * pure_dephasing_rate(t1, t2))
    # Amplitude damping and Z flips commute, so the order does not matter.
    return compose_arrays(amplitude_damping_array(gamma), phase_flip_array((1.0 - coherence) / 2.0))


def t1t2_kraus(duration: float, t1: float, t2: float) -> KrausMap:
    """Kraus operators of T1 amplitude damping and T2 dephasing for ``duration`` seconds."""
    return to_qobjs(t1t2_array(duration, t1, t2))


def kraus_superoperator(kraus: Sequence[Qobj] | KrausArray) -> Qobj:
    """The channel as a qutip superoperator (supermatrix representation)."""
    from ._qutip import qt

    return qt.kraus_to_super(to_qobjs(_as_array(kraus)))


def apply_kraus(state: Qobj, kraus: Sequence[Qobj] | KrausArray, qubit: int = 0) -> Qobj:
    """Apply a single-qubit channel to qubit ``qubit`` of a register; returns a density matrix."""
    from ._qutip import Qobj

    rho = as_density_matrix(state)
    out = apply_kraus_array(np.asarray(rho.full(), dtype=complex), _as_array(kraus), qubit)
    return Qobj(out, dims=rho.dims)


def apply_kraus_array(rho: np.ndarray, kraus: KrausArray, qubit: int = 0) -> np.ndarray:
    """:func:`apply_kraus` on a numpy density matrix of qubits, in numpy (no qutip)."""
    n = int(rho.shape[0]).bit_length() - 1
    if not (0 <= qubit < n):
        raise ValueError(f"qubit {qubit} is not in the state's register of {n} qubit(s)")
    # One einsum on the register's tensor rather than expanded operators.
    tensor = np.moveaxis(rho.reshape([2] * (2 * n)), (qubit, n + qubit), (0, 1))
    shape = tensor.shape
    out = np.einsum("kab,bcx,kdc->adx", kraus, tensor.reshape(2, 2, -1), kraus.conj())
    out = np.moveaxis(out.reshape(shape), (0, 1), (qubit, n + qubit))
    return np.ascontiguousarray(out).reshape(2**n, 2**n)


def depolarize(state: Qobj, p: float, qubit: int = 0) -> Qobj:
    """Depolarize one qubit: rho -> (1 - p) rho + p 1/2 on that qubit."""
    return apply_kraus(state, depolarizing_kraus(p), qubit)


def dephase(state: Qobj, p: float, qubit: int = 0) -> Qobj:
    """Dephase one qubit: a Z flip with probability p."""
    return apply_kraus(state, phase_flip_kraus(p), qubit)


def bit_flip(state: Qobj, p: float, qubit: int = 0) -> Qobj:
    """Flip one qubit with probability p."""
    return apply_kraus(state, bit_flip_kraus(p), qubit)


def t1t2_decay(state: Qobj, duration: float, t1: float, t2: float, qubit: int = 0) -> Qobj:
    """Let one qubit decay with T1 and T2 for ``duration`` seconds."""
    return apply_kraus(state, t1t2_kraus(duration, t1, t2), qubit)
