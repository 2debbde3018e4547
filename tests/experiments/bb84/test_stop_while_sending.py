"""A continuous run's peer that stops (its ``Abort(stopped)``, then it closes) while Bob is
sending: Bob ends "stopped by alice", not "channel failed".

With the pipeline Bob reads the channel only when a message is due, so Alice's stop can
sit unread while he acquires or processes a block; if Alice has closed by the time he
sends (block 0's discard, or his ``go`` for the next key), the send fails. Before the fix
that was ``channel_failed: ... cannot send ... to alice`` (exit 3 in party mode) although
Alice had said she stopped. Deterministic: Bob's send is held until Alice has closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

import numpy as np

from qhil.orchestrator.channel import AuthenticatedChannel
from qhil.orchestrator.experiments.bb84 import AbortReason, run_bob
from qhil.orchestrator.experiments.bb84.continuous import (
    GO,
    NEXT,
    NO_CAP,
    ContinuousResult,
    KeyRunner,
    StopRequest,
    run_continuous_party,
)
from qhil.orchestrator.experiments.bb84.link import PeerLink
from qhil.orchestrator.experiments.bb84.messages import (
    VERSION,
    Abort,
    AlignmentReveal,
    BlockAcquired,
    BlockLive,
    Hello,
    to_payload,
)
from qhil.orchestrator.experiments.bb84.party import ProgressHook
from qhil.orchestrator.experiments.bb84.result import PartyResult
from qhil.records import KeyStore

from .support import open_channels
from .support import settings as make_settings
from .test_pipeline import DarkTagger

L = 1 << 16
# Guards against a hang only; never reached when the code works.
HANG_GUARD_S = 120.0


class HeldSend:
    """Bob's end of the channel: his send of ``kind`` waits until ``release`` is set (the
    peer stops and closes meanwhile)."""

    def __init__(self, channel: AuthenticatedChannel, kind: str) -> None:
        self.channel = channel
        self.kind = kind
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, kind: str, payload: Mapping[str, Any] | None = None) -> int:
        if kind == self.kind and not self.release.is_set():
            self.sending.set()
            await self.release.wait()
        return await self.channel.send(kind, payload)

    async def recv(self, kind: str | None = None, *, timeout_s: float | None = None) -> Any:
        return await self.channel.recv(kind, timeout_s=timeout_s)


async def _alice_stops(a: AuthenticatedChannel, held: HeldSend) -> None:
    """What a continuous Alice told SIGTERM sends while Bob's send is held: her Abort, then
    her end closes (her linger over)."""
    await held.sending.wait()
    await a.send(*to_payload(Abort(AbortReason.STOPPED.value, "alice stopped (SIGTERM)")))
    await a.close()
    held.release.set()


async def _bob(held: HeldSend, key_store: KeyStore, run_key: KeyRunner) -> ContinuousResult:
    """Bob's continuous run (no inventory exchange: the scripted Alice starts at ``next``)."""
    return await asyncio.wait_for(
        run_continuous_party(
            "bob",
            run_key,
            held,
            key_store=key_store,
            stop=StopRequest(),
            timeout_s=30.0,
            reconcile=False,
        ),
        HANG_GUARD_S,
    )


async def test_alice_stops_while_bob_sends_a_block_message(key_store: KeyStore) -> None:
    """Block 0's discard is Bob's send (his pipeline's finish, block 1 being acquired)."""
    a, b = await open_channels()
    held = HeldSend(b, "bb84.BlockDiscarded")
    s = make_settings(blocks=3, pattern_length=L)
    empty = np.zeros(0, np.uint8)

    async def alice() -> None:
        await a.send(NEXT, {"key": 0, "room": NO_CAP})
        assert (await a.recv(timeout_s=HANG_GUARD_S)).kind == GO
        link = PeerLink(a, "alice", "bob", HANG_GUARD_S)
        await link.send(Hello(VERSION, s.digest()))
        await link.send(BlockLive(0, L, s.rep_rate_hz))
        await link.expect(BlockAcquired, block=0)
        await link.send(AlignmentReveal(0, np.zeros(0, np.int64), empty, empty))
        await link.send(BlockLive(1, L, s.rep_rate_hz))
        await _alice_stops(a, held)

    def run_key(hook: ProgressHook) -> Awaitable[PartyResult]:
        return run_bob(s, DarkTagger(), held, key_store=key_store, progress=hook)

    task = asyncio.ensure_future(alice())
    try:
        out = await _bob(held, key_store, run_key)
    finally:
        await asyncio.wait_for(task, HANG_GUARD_S)
    assert held.release.is_set()  # Bob's discard was sent after Alice had closed
    assert out.aborted is None, out.aborted
    assert out.stopped == "stopped by alice"
    assert out.outcomes == [] and key_store.pending_keys() == []


async def test_alice_stops_while_bob_says_go(key_store: KeyStore) -> None:
    """Between keys: Alice's ``next``, then her stop; Bob's ``go`` finds her closed."""
    a, b = await open_channels()
    held = HeldSend(b, GO)

    async def alice() -> None:
        await a.send(NEXT, {"key": 0, "room": NO_CAP})
        await _alice_stops(a, held)

    task = asyncio.ensure_future(alice())

    async def no_key(hook: ProgressHook) -> PartyResult:
        raise AssertionError("no key is started: Alice stopped before Bob's go")

    try:
        out = await _bob(held, key_store, no_key)
    finally:
        await asyncio.wait_for(task, HANG_GUARD_S)
    assert out.aborted is None, out.aborted
    assert out.stopped == "stopped by alice"
