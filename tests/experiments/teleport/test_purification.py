"""BBPSSW rounds through a numpy fake of one link's two end memories: the frame
correction, the per-pair twirl at both ends and the bit comparison reproduce the Werner
formula 0.9 -> 0.9264 with p = 0.8756 (PHYSICS.md case 6), also from non-Werner pairs."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np
import pytest

from qhil.emulators.world.quantum.network import TWIRL_UNITARIES
from qhil.errors import InstrumentError
from qhil.orchestrator.experiments.teleport.protocol import _KETS, _OPS
from qhil.orchestrator.experiments.teleport.purification import (
    TWIRL_ELEMENTS,
    bbpssw_werner,
    purify_link_pairs,
)

Z99_9 = 3.2905  # two-sided 99.9 %

# QMC-1's twirl: the world's element table, the same U at both ends of a pair.
_GROUP = list(TWIRL_UNITARIES)


def _on(u: np.ndarray, q: int) -> np.ndarray:
    mats = [np.eye(2)] * 4
    mats[q] = u
    out = mats[0]
    for m in mats[1:]:
        out = np.kron(out, m)
    return out


def _cnot(c: int, t: int) -> np.ndarray:
    p0, p1 = np.diag([1, 0]), np.diag([0, 1])
    return _on(p0, c) + _on(p1, c) @ _on(_OPS["X"], t)


def bell_diagonal(bell: str, errors: tuple[float, float, float, float]) -> np.ndarray:
    """Nominal ``bell`` with Pauli errors [I, X, Z, Y] on its second qubit."""
    base = np.outer(_KETS[bell], _KETS[bell].conj())
    ops = [_OPS["I"], _OPS["X"], _OPS["Z"], _OPS["Y"]]
    return sum(
        w * np.kron(np.eye(2), o) @ base @ np.kron(np.eye(2), o).conj().T
        for w, o in zip(errors, ops, strict=True)
    )


@dataclass(frozen=True)
class Pair:
    nodes: tuple[str, str]
    modes: tuple[int, int]
    bell: str
    fidelity: float


class Link:
    """Qubits: (mode 0 at a, mode 0 at b, mode 1 at a, mode 1 at b)."""

    def __init__(self, rho_keep: np.ndarray, rho_sac: np.ndarray, rng: np.random.Generator):
        self.rho = np.kron(rho_keep, rho_sac)
        self.rng = rng
        self.cleared: list[tuple[int, int]] = []
        self.lost: set[tuple[int, int]] = set()  # (end, mode) whose qubit is gone

    def apply(self, u: np.ndarray) -> None:
        self.rho = u @ self.rho @ u.conj().T

    def memory(self, node: str) -> End:
        return End(self, 0 if node == "a" else 1)

    def kept_fidelity(self) -> float:
        r = self.rho.reshape([2] * 8)
        kept = np.einsum("abcdefcd->abef", r).reshape(4, 4)
        kept = kept / np.trace(kept).real
        return float(np.real(_KETS["phi+"] @ kept @ _KETS["phi+"]))


@dataclass
class End:
    link: Link
    end: int

    def q(self, mode: int) -> int:
        return 2 * mode + self.end

    async def pauli(self, mode: int, op: str) -> None:
        self.link.apply(_on(_OPS[op], self.q(mode)))

    async def twirl(self, mode: int, element: int) -> None:
        if (self.end, mode) in self.link.lost:
            raise InstrumentError("FAKE", 102, "Mode empty", f"QMEMory:TWIRl {mode},{element}")
        u = _GROUP[element]
        self.link.apply(_on(u, self.q(mode)))

    async def purify(self, keep: int, sacrifice: int) -> int | None:
        t = self.q(sacrifice)
        self.link.apply(_cnot(self.q(keep), t))
        p1 = _on(np.diag([0, 1]), t)
        prob1 = float(np.real(np.trace(p1 @ self.link.rho)))
        bit = int(self.link.rng.random() < prob1)
        proj = p1 if bit else np.eye(16) - p1
        rho = proj @ self.link.rho @ proj
        self.link.rho = rho / np.trace(rho).real
        return bit

    async def clear_mode(self, mode: int) -> None:
        self.link.cleared.append((self.end, mode))


def _rounds(rho: np.ndarray, bell: str, f: float, n: int, seed: int) -> tuple[int, list[float]]:
    rng = np.random.default_rng(seed)
    kept: list[float] = []

    async def go() -> None:
        for _ in range(n):
            link = Link(rho, rho, rng)
            out = await purify_link_pairs(
                link, Pair(("a", "b"), (0, 0), bell, f), Pair(("a", "b"), (1, 1), bell, f)
            )
            if out is None:
                assert sorted(link.cleared) == [(0, 0), (1, 0)]
            else:
                assert out.bell == "phi+" and out.modes == (0, 0) and not link.cleared
                assert out.fidelity == pytest.approx(0.92640, abs=5e-5)
                kept.append(link.kept_fidelity())

    asyncio.run(go())
    return n, kept


def test_twirl_group_keeps_the_singlet() -> None:
    assert len(_GROUP) == TWIRL_ELEMENTS
    psi = np.outer(_KETS["psi-"], _KETS["psi-"])
    for u in _GROUP:
        v = np.kron(u, u)
        assert np.allclose(v @ psi @ v.conj().T, psi)


def test_werner_formula() -> None:
    f, p = bbpssw_werner(0.9)
    assert f == pytest.approx(0.9264, abs=5e-5)
    assert p == pytest.approx(0.8756, abs=5e-5)
    assert bbpssw_werner(0.9, 0.8) == bbpssw_werner(0.8, 0.9)


@pytest.mark.parametrize(
    ("bell", "errors"),
    [
        ("psi-", (0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3)),  # Werner, heralded psi-
        ("psi+", (0.9, 0.0, 0.1, 0.0)),  # dephased only: the twirl makes it Werner
        ("phi-", (0.9, 0.1, 0.0, 0.0)),  # bit-flipped only
    ],
)
def test_round_statistics_match_bbpssw(bell: str, errors: tuple[float, ...]) -> None:
    """400 rounds: success fraction vs p = 0.8756 (binomial) and the kept pairs' mean exact
    fidelity vs 0.9264 (its sample standard error), both two-sided 99.9 %, seeds fixed.
    Without the twirl the dephased pairs would always agree (p = 1, F' = 0.9)."""
    rho = bell_diagonal(bell, errors)  # type: ignore[arg-type]
    n, kept = _rounds(rho, bell, 0.9, 400, seed=4)
    f_want, p_want = bbpssw_werner(0.9)
    assert abs(len(kept) / n - p_want) < Z99_9 * math.sqrt(p_want * (1 - p_want) / n)
    mean, se = float(np.mean(kept)), float(np.std(kept, ddof=1) / math.sqrt(len(kept)))
    assert abs(mean - f_want) < Z99_9 * se + 1e-9


def test_a_half_lost_before_the_round_fails_it_and_empties_every_mode() -> None:
    rho = bell_diagonal("psi+", (0.9, 0.0, 0.1, 0.0))
    link = Link(rho, rho, np.random.default_rng(0))
    link.lost.add((0, 1))  # the sacrificed pair's first half expired

    async def go() -> object:
        pair = Pair(("a", "b"), (0, 0), "psi+", 0.9), Pair(("a", "b"), (1, 1), "psi+", 0.9)
        return await purify_link_pairs(link, *pair)

    assert asyncio.run(go()) is None
    assert sorted(link.cleared) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_pairs_of_different_links_refused() -> None:
    with pytest.raises(ValueError, match="different links"):
        asyncio.run(
            purify_link_pairs(
                None, Pair(("a", "b"), (0, 0), "phi+", 0.9), Pair(("b", "c"), (1, 1), "phi+", 0.9)
            )
        )
