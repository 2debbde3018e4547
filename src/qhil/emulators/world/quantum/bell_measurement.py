"""Complete Bell-state measurement on two qubits of a register, and Pauli corrections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ._qutip import Qobj, qt
from .channels import apply_kraus
from .density import as_density_matrix, num_qubits
from .states import BELL_STATES, BellState, bell_dm, bell_ket

PauliName = Literal["I", "X", "Y", "Z"]
PAULI_NAMES: tuple[PauliName, ...] = ("I", "X", "Y", "Z")
_PAULI_MATRICES: dict[str, Qobj] = {
    "I": qt.qeye(2),
    "X": qt.sigmax(),
    "Y": qt.sigmay(),
    "Z": qt.sigmaz(),
}

_PAULI_ARRAYS: dict[str, npt.NDArray[np.complex128]] = {
    name: np.asarray(op.full(), dtype=np.complex128)[None] for name, op in _PAULI_MATRICES.items()
}
_BELL_AMPLITUDES = {name: bell_ket(name).full().reshape(2, 2) for name in BELL_STATES}

# A linear-optics analyzer (one beam splitter, two detectors per side) tells
# apart only these two Bell states: success probability 1/2 for Bell inputs.
LINEAR_OPTICS_OUTCOMES: tuple[BellState, ...] = ("psi+", "psi-")

# Branches below this probability are reported with no state.
_NEGLIGIBLE = 1e-14


def pauli(name: PauliName) -> Qobj:
    """Single-qubit Pauli operator by name."""
    if name not in _PAULI_MATRICES:
        raise ValueError(f"Pauli {name!r} is not one of {', '.join(PAULI_NAMES)}")
    return _PAULI_MATRICES[name]


@dataclass(frozen=True)
class BellBranch:
    """One outcome of a Bell measurement: its probability and the rest of the register."""

    outcome: BellState
    probability: float
    state: Qobj | None  # normalised state of the unmeasured qubits; None if probability ~ 0


def bell_measurement_operators(n: int, qubits: tuple[int, int]) -> dict[BellState, Qobj]:
    """Projectors onto the four Bell states of ``qubits`` in an ``n``-qubit register."""
    return {
        name: qt.expand_operator(bell_dm(name), dims=[2] * n, targets=list(qubits))
        for name in BELL_STATES
    }


def measure_bell(state: Qobj, qubits: tuple[int, int]) -> tuple[BellBranch, ...]:
    """All four branches of a complete Bell measurement on ``qubits``.

    The remaining qubits keep their order; ``state`` must have at least three qubits.
    """
    rho = as_density_matrix(state)
    n = num_qubits(rho)
    q0, q1 = qubits
    if q0 == q1 or not (0 <= q0 < n and 0 <= q1 < n):
        raise ValueError(f"qubits {qubits} are not two distinct qubits of a {n}-qubit register")
    if n < 3:
        raise ValueError("a Bell measurement here needs qubits left over: use >= 3 qubits")
    rest = [i for i in range(n) if i not in qubits]
    # <B|_{q0 q1} rho |B>_{q0 q1}: the rest's unnormalised state, by one einsum per
    # outcome on the register tensor (numpy: far cheaper than expanded projectors).
    tensor = np.moveaxis(rho.full().reshape([2] * (2 * n)), (q0, q1, n + q0, n + q1), (0, 1, 2, 3))
    tensor = tensor.reshape(2, 2, 2, 2, 2 ** len(rest), 2 ** len(rest))
    rest_dims = [[2] * len(rest), [2] * len(rest)]
    branches = []
    for name in BELL_STATES:
        amplitudes = _BELL_AMPLITUDES[name]
        reduced = np.einsum("ab,abcdxy,cd->xy", amplitudes.conj(), tensor, amplitudes)
        p = float(np.real(np.trace(reduced)))
        state_rest = Qobj(reduced / p, dims=rest_dims) if p > _NEGLIGIBLE else None
        branches.append(BellBranch(name, max(p, 0.0), state_rest))
    return tuple(branches)


def apply_pauli(state: Qobj, name: PauliName, qubit: int) -> Qobj:
    """Apply a Pauli to one qubit of a density matrix."""
    if name == "I":
        return state
    return apply_kraus(state, _PAULI_ARRAYS[name], qubit)
