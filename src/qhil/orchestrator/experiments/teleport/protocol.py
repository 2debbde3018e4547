"""Teleportation of a qubit from one node to another over delivered Bell pairs.

Per shot: a pair is delivered between ``sender`` and ``receiver`` (the network's request
API, frame tracked: the pair's Bell state is known); the sender's memory prepares the
input (``input_state``) and makes the Bell-state measurement of it with its half
(``teleport(mode)``); the outcome goes to the receiver over the classical channel; the
receiver applies the Pauli correction that the pair's Bell state and the outcome call for
(``pauli``) and measures in X, Y or Z (``measure``; the bases in turn, so each gets a third
of the shots). Tomography (:mod:`qhil.numerics.tomography`) of the receiver's outcomes per
input gives its state and the fidelity with the input.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qhil.numerics.tomography import BASES, PAULI_STATES
from qhil.orchestrator.channel import (
    AuthenticatedChannel,
    AuthKey,
    HmacSha256Authenticator,
    in_process_channels,
)

BELL_STATES: tuple[str, str, str, str] = ("phi+", "phi-", "psi+", "psi-")
PAULIS: tuple[str, str, str, str] = ("I", "X", "Y", "Z")
#: The six Pauli eigenstates a teleportation run sends by default (a 2-design: their mean
#: fidelity is the Bloch-sphere average).
INPUTS: tuple[str, ...] = tuple(PAULI_STATES)

#: One row per shot, as recorded (``shots`` array of a ``teleport`` run).
SHOT_DTYPE = np.dtype(
    [
        ("input", np.int8),  # index into the run's ``inputs`` result (comma-separated)
        ("basis", np.int8),  # 0 X, 1 Y, 2 Z (tomography.BASES)
        ("outcome", np.int8),  # 0 (+1 eigenstate: D/R/H), 1, or -1 when nothing came back
        ("pair_bell", np.int8),  # index into BELL_STATES
        ("bell_outcome", np.int8),  # sender's Bell outcome, -1 when it failed
        ("correction", np.int8),  # index into PAULIS, -1 when none was applied
        ("pair_fidelity", np.float64),  # the network's estimate for the delivered pair
        ("latency_s", np.float64),  # request to delivery, bench s
        ("delivered_at_s", np.float64),  # network clock, bench s
    ]
)

_SQ = np.sqrt(0.5)
_KETS = {
    "phi+": np.array([1, 0, 0, 1]) * _SQ,
    "phi-": np.array([1, 0, 0, -1]) * _SQ,
    "psi+": np.array([0, 1, 1, 0]) * _SQ,
    "psi-": np.array([0, 1, -1, 0]) * _SQ,
}
_OPS = {
    "I": np.eye(2),
    "X": np.array([[0, 1], [1, 0]]),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.array([[1, 0], [0, -1]]),
}


def _correction_table() -> dict[tuple[str, str], str]:
    """(pair's Bell state, sender's Bell outcome) -> receiver's Pauli, from the algebra:
    the receiver holds ``(<B_m| x 1)(|psi> x |B_r>)``, which one Pauli maps back to
    ``|psi>`` up to a phase for every ``psi`` (checked on three states not in one plane)."""
    probes = [np.array([1, 0]), np.array([1, 1]) * _SQ, np.array([1, 1j]) * _SQ]
    table: dict[tuple[str, str], str] = {}
    for r, m in itertools.product(BELL_STATES, BELL_STATES):
        bra = _KETS[m].reshape(2, 2).conj()  # (input, sender's half)
        res = _KETS[r].reshape(2, 2)  # (sender's half, receiver's half)
        for op in PAULIS:
            ok = True
            for psi in probes:
                out = _OPS[op] @ np.einsum("ab,a,bc->c", bra, psi, res)
                out = out / np.linalg.norm(out)
                ok &= bool(abs(np.vdot(psi, out)) > 1 - 1e-9)
            if ok:
                table[(r, m)] = op
                break
    return table


#: Receiver's Pauli correction per (pair's Bell state, sender's outcome).
CORRECTIONS: dict[tuple[str, str], str] = _correction_table()


class SendingMemory(Protocol):
    """What teleportation needs of the sender's memory controller (QMC-1's commands)."""

    async def set_input(self, state: str) -> None: ...

    async def teleport(self, mode: int) -> str | None: ...


class ReceivingMemory(Protocol):
    """What teleportation needs of the receiver's memory controller."""

    async def pauli(self, mode: int, op: str) -> None: ...

    async def measure(self, mode: int, basis: str) -> int | None: ...


class Pair(Protocol):
    """A delivered pair as the network's request API hands it over."""

    @property
    def modes(self) -> tuple[int, int]: ...

    @property
    def bell(self) -> str: ...

    @property
    def estimated_fidelity(self) -> float: ...

    @property
    def delivered_at_s(self) -> float: ...

    @property
    def latency_s(self) -> float: ...


class Messenger(Protocol):
    """The classical channel, sender to receiver (qhil.orchestrator.channel)."""

    async def send(self, kind: str, payload: dict[str, Any]) -> Any: ...


class Receiver(Protocol):
    async def recv(self, kind: str | None = None, *, timeout_s: float | None = None) -> Any: ...


@asynccontextmanager
async def classical_channel(
    sender: str, receiver: str, session_id: str
) -> AsyncIterator[tuple[AuthenticatedChannel, AuthenticatedChannel]]:
    """The sender's and the receiver's ends of an authenticated in-process channel (one
    process drives both ends' memories), opened together, closed on leaving."""
    key = AuthKey.generate()
    ends = in_process_channels(
        HmacSha256Authenticator(key),
        HmacSha256Authenticator(key),
        names=(sender, receiver),
        session_id=session_id,
    )
    await asyncio.gather(*(end.open() for end in ends))
    try:
        yield ends
    finally:
        for end in ends:
            await end.close()


@dataclass(frozen=True)
class TeleportLink:
    """The two ends: a pair source (``deliver()`` -> a pair with the sender's half first),
    each end's memory and the classical channel from sender to receiver."""

    deliver: Callable[[], Awaitable[Pair]]
    release: Callable[[Any], Awaitable[None]]
    sender: SendingMemory
    receiver: ReceivingMemory
    to_receiver: Messenger
    at_receiver: Receiver
    message_timeout_s: float = 10.0


async def teleport_shot(link: TeleportLink, input_index: int, shot: int) -> np.ndarray:
    """One shot (the input already prepared at the sender): pair, Bell measurement,
    message, correction, measurement in basis ``shot % 3``."""
    pair = await link.deliver()
    mode_s, mode_r = pair.modes
    row = np.zeros((), dtype=SHOT_DTYPE)
    row["input"], row["basis"] = input_index, shot % 3
    row["pair_bell"] = BELL_STATES.index(pair.bell)
    row["pair_fidelity"] = pair.estimated_fidelity
    row["latency_s"], row["delivered_at_s"] = pair.latency_s, pair.delivered_at_s
    row["outcome"] = row["bell_outcome"] = row["correction"] = -1
    outcome = await link.sender.teleport(mode_s)
    await link.to_receiver.send("teleport.bell", {"shot": shot, "bell": outcome or ""})
    msg = await link.at_receiver.recv("teleport.bell", timeout_s=link.message_timeout_s)
    bell = str(msg.payload["bell"]) or None
    if bell is None:  # the sender's measurement failed: nothing to correct, free the half
        await link.release(pair)
        return row
    row["bell_outcome"] = BELL_STATES.index(bell)
    op = CORRECTIONS[(pair.bell, bell)]
    row["correction"] = PAULIS.index(op)
    if op != "I":
        await link.receiver.pauli(mode_r, op)
    got = await link.receiver.measure(mode_r, BASES[shot % 3])
    if got is not None:
        row["outcome"] = got
    return row


async def teleport_input(
    link: TeleportLink,
    state: str,
    input_index: int,
    shots: int,
    on_shots: Callable[[np.ndarray], Awaitable[None]] | None = None,
    chunk: int = 60,
) -> np.ndarray:
    """``shots`` shots of one input; rows handed to ``on_shots`` every ``chunk`` shots."""
    await link.sender.set_input(state)
    rows: list[np.ndarray] = []
    block: list[np.ndarray] = []
    for shot in range(shots):
        block.append(await teleport_shot(link, input_index, shot))
        if len(block) == chunk or shot == shots - 1:
            arr = np.array(block, dtype=SHOT_DTYPE)
            rows.append(arr)
            block = []
            if on_shots is not None:
                await on_shots(arr)
    return np.concatenate(rows) if rows else np.zeros(0, dtype=SHOT_DTYPE)


async def teleport_inputs(
    link: TeleportLink,
    states: Sequence[str],
    shots: int,
    on_shots: Callable[[np.ndarray], Awaitable[None]] | None = None,
) -> np.ndarray:
    """Every input in turn, ``shots`` each: all shot rows."""
    out = [await teleport_input(link, s, k, shots, on_shots) for k, s in enumerate(states)]
    return np.concatenate(out) if out else np.zeros(0, dtype=SHOT_DTYPE)
