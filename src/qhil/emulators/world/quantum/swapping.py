"""Entanglement swapping: a Bell measurement on one half of each of two pairs.

Pairs (A, B) and (C, D); the measurement acts on B and C, and D gets the Pauli
correction that turns the heralded A-D state into the target Bell state when
the inputs are the nominal Bell states.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from ._qutip import Qobj, qt
from .bell_measurement import PAULI_NAMES, PauliName, apply_pauli, measure_bell
from .density import as_density_matrix, state_fidelity
from .states import BELL_STATES, BellState, bell_dm, check_bell


@dataclass(frozen=True)
class SwapBranch:
    outcome: BellState
    probability: float
    correction: PauliName
    state: Qobj | None  # corrected A-D state; None if the outcome cannot occur


@dataclass(frozen=True)
class SwapResult:
    branches: tuple[SwapBranch, ...]

    def heralded(self, outcomes: Iterable[BellState] = BELL_STATES) -> tuple[float, Qobj | None]:
        """Success probability and mean corrected A-D state over the heralded outcomes.

        Pass :data:`~.bell_measurement.LINEAR_OPTICS_OUTCOMES` for a linear-optics
        Bell-state analyzer.
        """
        wanted = {check_bell(o) for o in outcomes}
        kept = [b for b in self.branches if b.outcome in wanted and b.state is not None]
        p = sum(b.probability for b in kept)
        if not kept or p <= 0.0:
            return 0.0, None
        mixed = sum(
            (b.probability * b.state for b in kept if b.state is not None),
            Qobj(0 * qt.qeye([2, 2])),
        )
        return p, mixed / p

    def sample(
        self, rng: np.random.Generator, heralded_outcomes: Iterable[BellState] = BELL_STATES
    ) -> tuple[BellState | None, Qobj | None]:
        """Draw one Bell outcome; (None, None) if it is not among ``heralded_outcomes``."""
        p = np.array([b.probability for b in self.branches])
        pick = self.branches[int(rng.choice(len(p), p=p / p.sum()))]
        if pick.outcome not in {check_bell(o) for o in heralded_outcomes}:
            return None, None
        return pick.outcome, pick.state

    @property
    def state(self) -> Qobj:
        """A-D state averaged over all four (corrected) outcomes."""
        _, rho = self.heralded()
        assert rho is not None  # some outcome always has weight
        return rho


@cache
def swap_corrections(
    nominal_ab: BellState, nominal_cd: BellState, target: BellState
) -> dict[BellState, PauliName]:
    """Pauli on D, per Bell outcome, that maps ideal nominal inputs to ``target``."""
    ideal = qt.tensor(bell_dm(nominal_ab), bell_dm(nominal_cd))
    corrections: dict[BellState, PauliName] = {}
    for branch in measure_bell(ideal, (1, 2)):
        assert branch.state is not None  # every outcome has probability 1/4
        fits = [
            p
            for p in PAULI_NAMES
            if state_fidelity(bell_dm(target), apply_pauli(branch.state, p, 1)) > 1 - 1e-9
        ]
        corrections[branch.outcome] = fits[0]
    return corrections


def entanglement_swap(
    pair_ab: Qobj,
    pair_cd: Qobj,
    *,
    nominal: tuple[BellState, BellState] = ("phi+", "phi+"),
    target: BellState = "phi+",
) -> SwapResult:
    """Bell measurement on B and C of two pairs; every branch with its corrected A-D state.

    For Werner inputs of fidelities F1, F2 the corrected state has fidelity
    F = 1/4 + (4 F1 - 1)(4 F2 - 1)/12 whatever the outcome.
    """
    ab, cd = as_density_matrix(pair_ab, "pair_ab"), as_density_matrix(pair_cd, "pair_cd")
    for rho, name in ((ab, "pair_ab"), (cd, "pair_cd")):
        if rho.dims[0] != [2, 2]:
            raise ValueError(f"{name} must be a two-qubit state, got dims {rho.dims[0]}")
    corrections = swap_corrections(
        check_bell(nominal[0]), check_bell(nominal[1]), check_bell(target)
    )
    branches = []
    for branch in measure_bell(qt.tensor(ab, cd), (1, 2)):
        fix = corrections[branch.outcome]
        corrected = None if branch.state is None else apply_pauli(branch.state, fix, 1)
        branches.append(SwapBranch(branch.outcome, branch.probability, fix, corrected))
    return SwapResult(tuple(branches))


def sample_swap(
    pair_ab: Qobj,
    pair_cd: Qobj,
    rng: np.random.Generator,
    *,
    heralded_outcomes: Iterable[BellState] = BELL_STATES,
    nominal: tuple[BellState, BellState] = ("phi+", "phi+"),
    target: BellState = "phi+",
) -> tuple[BellState | None, Qobj | None]:
    """Swap once and draw the Bell outcome (see :meth:`SwapResult.sample`; to draw many
    times from the same inputs, call :func:`entanglement_swap` once and sample that)."""
    result = entanglement_swap(pair_ab, pair_cd, nominal=nominal, target=target)
    return result.sample(rng, heralded_outcomes)


def werner_swap_fidelity(f1: float, f2: float) -> float:
    """Fidelity after swapping two Werner pairs: 1/4 + (4 F1 - 1)(4 F2 - 1)/12."""
    return 0.25 + (4.0 * f1 - 1.0) * (4.0 * f2 - 1.0) / 12.0
