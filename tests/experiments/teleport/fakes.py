"""A small numpy stand-in for the repeater bench's end memories: Werner pairs in a Bell
state, the sender's Bell measurement with a prepared input, the receiver's Pauli and
measurement (the QMC-1 commands teleportation uses), for unit tests of the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qhil.numerics.tomography import bloch_vector, density_matrix
from qhil.orchestrator.experiments.teleport.protocol import _KETS, _OPS, TeleportLink

_BASIS_AXIS = {"X": 0, "Y": 1, "Z": 2}


def werner(fidelity: float, bell: str) -> np.ndarray:
    proj = np.outer(_KETS[bell], _KETS[bell].conj())
    return fidelity * proj + (1 - fidelity) / 3 * (np.eye(4) - proj)


@dataclass
class FakePair:
    modes: tuple[int, int]
    bell: str
    estimated_fidelity: float
    delivered_at_s: float = 0.0
    latency_s: float = 1e-3


@dataclass
class FakeWorld:
    fidelity: float
    rng: np.random.Generator
    bells: tuple[str, ...] = ("psi+", "psi-")
    fail_bell: float = 0.0  # probability the sender's Bell measurement fails
    pair: np.ndarray | None = None
    bob: np.ndarray | None = None
    psi: np.ndarray = field(default_factory=lambda: density_matrix(bloch_vector("H")))
    released: int = 0
    delivered: int = 0

    async def deliver(self) -> FakePair:
        bell = self.bells[int(self.rng.integers(len(self.bells)))]
        self.pair = werner(self.fidelity, bell)
        self.delivered += 1
        return FakePair((0, 0), bell, self.fidelity)

    async def release(self, pair: FakePair) -> None:
        self.bob = None
        self.released += 1

    # sender's memory
    async def set_input(self, state: str) -> None:
        self.psi = density_matrix(bloch_vector(state))

    async def teleport(self, mode: int) -> str | None:
        assert self.pair is not None
        rho = np.kron(self.psi, self.pair).reshape(2, 2, 2, 2, 2, 2)  # (in, a, b) x 2
        if self.rng.random() < self.fail_bell:
            self.pair = None
            return None
        probs, posts = [], []
        for name in ("phi+", "phi-", "psi+", "psi-"):
            bra = _KETS[name].conj().reshape(2, 2)
            post = np.einsum("ij,ijbklc,kl->bc", bra, rho, bra.conj())
            probs.append(np.trace(post).real)
            posts.append(post / max(np.trace(post).real, 1e-300))
        k = int(self.rng.choice(4, p=np.array(probs) / sum(probs)))
        self.bob = posts[k]
        self.pair = None
        return ("phi+", "phi-", "psi+", "psi-")[k]

    # receiver's memory
    async def pauli(self, mode: int, op: str) -> None:
        assert self.bob is not None
        self.bob = _OPS[op] @ self.bob @ _OPS[op].conj().T

    async def measure(self, mode: int, basis: str) -> int | None:
        assert self.bob is not None
        axis = _BASIS_AXIS[basis]
        pauli = _OPS["XYZ"[axis]]
        p0 = (1 + np.trace(pauli @ self.bob).real) / 2
        self.bob = None
        return int(self.rng.random() >= p0)


def fake_link(world: FakeWorld, to_rx: Any, at_rx: Any) -> TeleportLink:
    return TeleportLink(world.deliver, world.release, world, world, to_rx, at_rx)
