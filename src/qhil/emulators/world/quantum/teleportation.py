"""Teleportation of one qubit through a shared pair, with Bob's Pauli correction.

Qubit order: 0 = the input (Alice), 1 = Alice's half of the resource, 2 = Bob's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from ._qutip import Qobj, qt
from .bell_measurement import PAULI_NAMES, BellBranch, PauliName, apply_pauli, measure_bell
from .density import PAULI_EIGENKETS, as_density_matrix, num_qubits, state_fidelity
from .states import BELL_STATES, BellState, bell_dm, check_bell


@dataclass(frozen=True)
class TeleportBranch:
    outcome: BellState
    probability: float
    correction: PauliName
    state: Qobj | None  # Bob's corrected qubit


def _check_resource(resource: Qobj) -> Qobj:
    rho = as_density_matrix(resource, "resource")
    if rho.dims[0] != [2, 2]:
        raise ValueError(f"resource must be a two-qubit state, got dims {rho.dims[0]}")
    return rho


@cache
def teleport_corrections(nominal: BellState) -> dict[BellState, PauliName]:
    """Bob's Pauli, per Bell outcome, that makes teleportation through the ideal
    ``nominal`` pair the identity channel."""
    corrections: dict[BellState, PauliName] = {}
    for outcome in BELL_STATES:
        for p in PAULI_NAMES:
            outputs = [_branch(k, bell_dm(nominal), outcome, p) for k in PAULI_EIGENKETS]
            if all(
                out is not None and state_fidelity(k, out) > 1 - 1e-9
                for k, out in zip(PAULI_EIGENKETS, outputs, strict=True)
            ):
                corrections[outcome] = p
                break
    return corrections


def _branch(
    input_state: Qobj, resource: Qobj, outcome: BellState, correction: PauliName
) -> Qobj | None:
    rho = qt.tensor(as_density_matrix(input_state), resource)
    branches = {b.outcome: b for b in measure_bell(rho, (0, 1))}
    chosen: BellBranch = branches[outcome]
    return None if chosen.state is None else apply_pauli(chosen.state, correction, 0)


def teleport_branches(
    input_state: Qobj, resource: Qobj, *, nominal: BellState = "phi+"
) -> tuple[TeleportBranch, ...]:
    """Every Bell outcome of Alice with its probability and Bob's corrected qubit."""
    rho_in = as_density_matrix(input_state, "input_state")
    if num_qubits(rho_in) != 1:
        raise ValueError(f"input_state must be one qubit, got dims {rho_in.dims[0]}")
    corrections = teleport_corrections(check_bell(nominal))
    out = []
    for b in measure_bell(qt.tensor(rho_in, _check_resource(resource)), (0, 1)):
        fix = corrections[b.outcome]
        state = None if b.state is None else apply_pauli(b.state, fix, 0)
        out.append(TeleportBranch(b.outcome, b.probability, fix, state))
    return tuple(out)


def teleport(input_state: Qobj, resource: Qobj, *, nominal: BellState = "phi+") -> Qobj:
    """Bob's corrected qubit averaged over Alice's outcomes (the teleportation channel)."""
    rho = None
    for b in teleport_branches(input_state, resource, nominal=nominal):
        if b.state is not None:
            rho = b.probability * b.state if rho is None else rho + b.probability * b.state
    assert rho is not None  # the probabilities sum to one
    return rho


def sample_teleport(
    input_state: Qobj, resource: Qobj, rng: np.random.Generator, *, nominal: BellState = "phi+"
) -> tuple[BellState, Qobj]:
    """Draw Alice's outcome; return it with Bob's corrected qubit."""
    branches = [
        b for b in teleport_branches(input_state, resource, nominal=nominal) if b.state is not None
    ]
    p = np.array([b.probability for b in branches])
    pick = branches[int(rng.choice(len(p), p=p / p.sum()))]
    assert pick.state is not None
    return pick.outcome, pick.state


def teleportation_channel(resource: Qobj, *, nominal: BellState = "phi+") -> Qobj:
    """The teleportation channel as a qutip superoperator, built from its action on the
    four basis density matrices |0><0|, |1><1|, |+><+|, |+i><+i| by linearity."""
    res = _check_resource(resource)
    kets = PAULI_EIGENKETS
    zero, one, plus, plus_i = (
        teleport(k.proj(), res, nominal=nominal) for k in (kets[0], kets[1], kets[2], kets[4])
    )
    # |0><1| = |+><+| + i|+i><+i| - (1 + i) 1/2, and |1><0| is its adjoint.
    identity_out = zero + one
    off_01 = plus + 1j * plus_i - (1 + 1j) / 2 * identity_out
    off_10 = plus - 1j * plus_i - (1 - 1j) / 2 * identity_out
    columns = [zero, off_10, off_01, one]  # column-stacking order of |i><j|: 00, 10, 01, 11
    matrix = np.column_stack([c.full().reshape(-1, order="F") for c in columns])
    return Qobj(matrix, dims=[[[2], [2]], [[2], [2]]], superrep="super")


def teleportation_average_fidelity(resource: Qobj, *, nominal: BellState = "phi+") -> float:
    """Fidelity of Bob's qubit with the input, averaged uniformly over the Bloch sphere."""
    res = _check_resource(resource)
    return float(
        np.mean([state_fidelity(k, teleport(k, res, nominal=nominal)) for k in PAULI_EIGENKETS])
    )


def werner_teleportation_fidelity(fidelity: float) -> float:
    """Average teleportation fidelity with a resource of Bell fidelity F: (2F + 1)/3."""
    return (2.0 * fidelity + 1.0) / 3.0
