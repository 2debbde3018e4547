"""BBPSSW purification of two elementary-link pairs (Bennett et al., PRL 76, 722 (1996)),
through the two end memories, as the network's requests call it when one pair cannot
reach the requested fidelity (``EntanglementRequest.purification_rounds``).

One round, both pairs on the same link (ends ``nodes[0]``, ``nodes[1]``):

1. frame: the second end applies the Pauli that takes each pair's heralded Bell state to
   the singlet ``psi-`` (``pauli``);
2. twirl: each pair gets one of the 12 elements of QMC-1's twirling group (the tetrahedral
   rotations, a unitary 2-design), drawn at random per pair and applied at both of its
   ends (``twirl``: ``U x U`` leaves the singlet invariant): averaged over the draws the
   pair is a Werner state, as BBPSSW assumes; then ``Y`` at the second end takes it to
   ``phi+`` (BBPSSW's unilateral rotation);
3. each end does its half of the bilateral CNOT (kept pair controls) and measures the
   sacrificed qubit in Z (``purify``);
4. the two bits are compared over the classical channel: equal bits keep the pair, now
   ``phi+`` with fidelity ``F'``; unequal (or a failed read) discard it.

For Werner inputs ``F1``, ``F2``: success probability
``p = F1 F2 + (F1 (1 - F2) + (1 - F1) F2) / 3 + 5 (1 - F1)(1 - F2) / 9`` and
``F' = (F1 F2 + (1 - F1)(1 - F2) / 9) / p`` (0.9, 0.9 -> 0.9264 with p = 0.8756).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from qhil.errors import InstrumentError

#: Elements of the twirling group QMC-1's ``twirl`` knows.
TWIRL_ELEMENTS = 12
#: The Pauli (on either qubit) that takes a Bell state to the singlet psi-, up to a phase.
TO_SINGLET = {"phi+": "Y", "phi-": "X", "psi+": "Z", "psi-": "I"}


def bbpssw_werner(f1: float, f2: float | None = None) -> tuple[float, float]:
    """``(F', p)`` of one BBPSSW round on Werner pairs of fidelities ``f1`` and ``f2``."""
    f2 = f1 if f2 is None else f2
    e1, e2 = (1.0 - f1) / 3.0, (1.0 - f2) / 3.0
    p = f1 * f2 + f1 * e2 + e1 * f2 + 5.0 * e1 * e2
    return (f1 * f2 + e1 * e2) / p, p


class PurifyingMemory(Protocol):
    """What a round needs of each end's memory controller (QMC-1's commands)."""

    async def pauli(self, mode: int, op: str) -> None: ...

    async def twirl(self, mode: int, element: int) -> None: ...

    async def purify(self, keep: int, sacrifice: int) -> int | None: ...


class LinkPairLike(Protocol):
    @property
    def nodes(self) -> tuple[str, str]: ...

    @property
    def modes(self) -> tuple[int, int]: ...

    @property
    def bell(self) -> str: ...

    @property
    def fidelity(self) -> float: ...


def _rng(network: Any) -> np.random.Generator:
    rng = getattr(network, "rng", None)
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng()


#: QMC-1's error for a Pauli or twirl on an empty mode (the qubit was lost: cutoff, decay).
MODE_EMPTY = 102


async def _clear(mems: list[Any], *pairs: Any) -> None:
    """Empty both ends' modes of ``pairs`` (nothing happens to an already empty mode)."""
    for pair in pairs:
        for end in (0, 1):
            await mems[end].clear_mode(mode=pair.modes[end])


async def _twirl_to_phi_plus(mems: list[Any], pair: Any, rng: np.random.Generator) -> None:
    op = TO_SINGLET[pair.bell]
    if op != "I":
        await mems[1].pauli(pair.modes[1], op)
    element = int(rng.integers(TWIRL_ELEMENTS))
    for end in (0, 1):
        await mems[end].twirl(pair.modes[end], element)
    await mems[1].pauli(pair.modes[1], "Y")  # singlet -> phi+


async def purify_link_pairs(network: Any, keep: Any, sacrifice: Any) -> Any | None:
    """One BBPSSW round on two pairs of one link through ``network.memory(node)``.

    Returns ``keep`` (same modes) as ``phi+`` with its fidelity after the round (Werner
    formula from both pairs' fidelities), or None when the bits disagree, a read failed or
    a half was already gone (the memory's cutoff: QMC-1 error +102 on the Pauli or twirl):
    then every mode of both pairs is emptied. The sacrificed modes are always emptied."""
    if tuple(keep.nodes) != tuple(sacrifice.nodes):
        raise ValueError(f"pairs on different links: {keep.nodes} and {sacrifice.nodes}")
    mems = [network.memory(node) for node in keep.nodes]
    rng = _rng(network)
    try:
        for pair in (keep, sacrifice):
            await _twirl_to_phi_plus(mems, pair, rng)
    except InstrumentError as exc:
        if str(exc.code).lstrip("+") != str(MODE_EMPTY):
            raise
        await _clear(mems, keep, sacrifice)
        return None
    bits = [await mems[end].purify(keep.modes[end], sacrifice.modes[end]) for end in (0, 1)]
    # The ends compare their bits over the classical channel; in one process, here.
    if bits[0] is None or bits[1] is None or bits[0] != bits[1]:
        await _clear(mems, keep)
        return None
    fidelity, _ = bbpssw_werner(float(keep.fidelity), float(sacrifice.fidelity))
    return dataclasses.replace(keep, bell="phi+", fidelity=fidelity)
