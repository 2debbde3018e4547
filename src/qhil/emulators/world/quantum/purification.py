"""BBPSSW entanglement purification (Bennett et al., PRL 76, 722 (1996)): one round.

Two pairs (A1, B1) and (A2, B2); Alice applies CNOT A1 -> A2, Bob B1 -> B2, both
measure the target pair in Z and keep the source pair if their results agree.
The protocol first twirls each pair into the Werner state of the same fidelity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._qutip import Qobj, qt
from .bell_measurement import PAULI_NAMES, PauliName, apply_pauli
from .density import as_density_matrix
from .states import BellState, bell_dm, bell_fidelity, check_bell, twirl_to_werner


@dataclass(frozen=True)
class PurificationResult:
    success_probability: float
    state: Qobj  # the kept pair, given success (not re-twirled)
    fidelity: float  # its fidelity with the nominal Bell state


def _to_phi_plus(bell: BellState) -> PauliName:
    """Bob's Pauli that turns the Bell state ``bell`` into |Phi+>."""
    for p in PAULI_NAMES:
        if bell_fidelity(apply_pauli(bell_dm(bell), p, 1)) > 1 - 1e-9:
            return p
    raise AssertionError(
        f"no Pauli maps {bell} to phi+"
    )  # unreachable: Bell states are Pauli-related


def _bilateral_cnot_keep_even() -> tuple[Qobj, Qobj]:
    dims = [2, 2, 2, 2]  # A1, B1, A2, B2
    cnots = qt.expand_operator(qt.gates.cnot(), dims=dims, targets=[0, 2]) * qt.expand_operator(
        qt.gates.cnot(), dims=dims, targets=[1, 3]
    )
    zz, oo = qt.basis([2, 2], [0, 0]).proj(), qt.basis([2, 2], [1, 1]).proj()
    keep = qt.expand_operator(zz + oo, dims=dims, targets=[2, 3])
    return cnots, keep


def bbpssw_round(
    pair: Qobj, second: Qobj | None = None, *, bell: BellState = "phi+", twirl: bool = True
) -> PurificationResult:
    """One BBPSSW round on ``pair`` and ``second`` (default: a copy of ``pair``).

    For Werner input of fidelity F: F' = (F^2 + ((1-F)/3)^2) / N with success
    probability N = F^2 + 2F(1-F)/3 + 5((1-F)/3)^2 (F = 0.9 -> 0.9264, N = 0.8756).
    """
    bell = check_bell(bell)
    pairs = []
    for rho, name in ((pair, "pair"), (pair if second is None else second, "second")):
        rho = as_density_matrix(rho, name)
        if rho.dims[0] != [2, 2]:
            raise ValueError(f"{name} must be a two-qubit state, got dims {rho.dims[0]}")
        if twirl:
            rho = twirl_to_werner(rho, bell)
        pairs.append(apply_pauli(rho, _to_phi_plus(bell), 1))  # work in the |Phi+> frame
    cnots, keep = _bilateral_cnot_keep_even()
    after = keep * cnots * qt.tensor(pairs[0], pairs[1]) * cnots.dag() * keep
    success = float(np.real(complex(after.tr())))
    if success <= 0.0:
        raise ValueError("these pairs never pass the BBPSSW parity check")
    kept = apply_pauli(after.ptrace([0, 1]) / success, _to_phi_plus(bell), 1)
    return PurificationResult(success, kept, bell_fidelity(kept, bell))


def bbpssw_werner(fidelity: float) -> tuple[float, float]:
    """Closed form for Werner input: (output fidelity, success probability)."""
    f = fidelity
    g = (1.0 - f) / 3.0
    success = f**2 + 2.0 * f * g + 5.0 * g**2
    return (f**2 + g**2) / success, success
