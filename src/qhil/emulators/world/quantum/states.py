"""Two-qubit states of entangled photon pairs.

Polarization qubits: |H> = |0>, |V> = |1>. A pair's qubit 0 goes to Alice, qubit 1
to Bob.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from .channels import dephase, depolarize
from .density import as_density_matrix, state_fidelity

if TYPE_CHECKING:
    from ._qutip import Qobj

BellState = Literal["phi+", "phi-", "psi+", "psi-"]
BELL_STATES: tuple[BellState, ...] = get_args(BellState)

PairNoise = Literal["white", "dephased"]

_BELL_AMPLITUDES: dict[str, tuple[float, float, float, float]] = {
    # amplitudes on |00>, |01>, |10>, |11>
    "phi+": (1.0, 0.0, 0.0, 1.0),
    "phi-": (1.0, 0.0, 0.0, -1.0),
    "psi+": (0.0, 1.0, 1.0, 0.0),
    "psi-": (0.0, 1.0, -1.0, 0.0),
}


def check_bell(name: str) -> BellState:
    """Return ``name`` as a Bell-state label, or raise listing the valid ones."""
    if name not in _BELL_AMPLITUDES:
        raise ValueError(f"bell state {name!r} is not one of {', '.join(BELL_STATES)}")
    return name  # type: ignore[return-value]


def _check_unit_interval(value: float, name: str, low: float = 0.0) -> float:
    if not (low <= value <= 1.0):
        raise ValueError(f"{name} must be in [{low:g}, 1], got {value!r}")
    return float(value)


def bell_amplitudes(name: BellState = "phi+") -> np.ndarray:
    """The Bell state ``name``'s amplitudes on |00>, |01>, |10>, |11> (numpy, no qutip)."""
    return np.array(_BELL_AMPLITUDES[check_bell(name)], dtype=complex) / np.sqrt(2.0)


def bell_ket(name: BellState = "phi+") -> Qobj:
    """The Bell state ``name`` as a two-qubit ket."""
    from ._qutip import Qobj

    return Qobj(bell_amplitudes(name).reshape(4, 1), dims=[[2, 2], [1, 1]])


def bell_dm(name: BellState = "phi+") -> Qobj:
    """The Bell state ``name`` as a two-qubit density matrix."""
    return bell_ket(name).proj()


def werner_state(fidelity: float, bell: BellState = "phi+") -> Qobj:
    """Werner state F |B><B| + (1 - F)/3 (1 - |B><B|) with Bell-state fidelity F."""
    from ._qutip import qt

    f = _check_unit_interval(fidelity, "fidelity")
    projector = bell_dm(bell)
    identity = qt.qeye([2, 2])
    return f * projector + (1.0 - f) / 3.0 * (identity - projector)


def visibility_to_fidelity(visibility: float) -> float:
    """Bell fidelity of the white-noise pair state of visibility V: (1 + 3V)/4."""
    return (1.0 + 3.0 * visibility) / 4.0


def fidelity_to_visibility(fidelity: float) -> float:
    """Inverse of :func:`visibility_to_fidelity`: V = (4F - 1)/3."""
    return (4.0 * fidelity - 1.0) / 3.0


def spdc_pair_state(
    visibility: float,
    bell: BellState = "phi+",
    noise: PairNoise = "white",
    depolarizing: tuple[float, float] = (0.0, 0.0),
    dephasing: tuple[float, float] = (0.0, 0.0),
) -> Qobj:
    """Polarization state of one SPDC pair with visibility V, then noise on each half.

    ``noise="white"`` gives the Werner-like V|B><B| + (1 - V) 1/4, whose CHSH value
    is 2 sqrt(2) V and whose fringe visibility is V in every basis.
    ``noise="dephased"`` gives V|B><B| + (1 - V) diag_HV(|B><B|): perfect H/V
    correlation and visibility V only in superposition bases (a source whose two
    emission paths are partly distinguishable).

    ``depolarizing`` and ``dephasing`` are per-half channel probabilities
    (Alice, Bob), as defined in :mod:`.channels`.
    """
    from ._qutip import Qobj, qt

    v = _check_unit_interval(visibility, "visibility")
    projector = bell_dm(bell)
    if noise == "white":
        rho = v * projector + (1.0 - v) * qt.qeye([2, 2]) / 4.0
    elif noise == "dephased":
        diagonal = Qobj(np.diag(np.diag(projector.full())), dims=projector.dims)
        rho = v * projector + (1.0 - v) * diagonal
    else:
        raise ValueError(f"noise {noise!r} is not one of {', '.join(get_args(PairNoise))}")
    for qubit, (p_depol, p_deph) in enumerate(zip(depolarizing, dephasing, strict=True)):
        if p_depol:
            rho = depolarize(rho, p_depol, qubit)
        if p_deph:
            rho = dephase(rho, p_deph, qubit)
    return rho


def bell_fidelity(state: Qobj, bell: BellState = "phi+") -> float:
    """Fidelity of a two-qubit state with the Bell state ``bell``."""
    rho = as_density_matrix(state)
    if rho.dims[0] != [2, 2]:
        raise ValueError(f"bell_fidelity needs a two-qubit state, got dims {rho.dims[0]}")
    return state_fidelity(bell_ket(bell), rho)


def twirl_to_werner(state: Qobj, bell: BellState = "phi+") -> Qobj:
    """Werner state with the same Bell fidelity: what a random bilateral twirl leaves."""
    return werner_state(min(max(bell_fidelity(state, bell), 0.0), 1.0), bell)
