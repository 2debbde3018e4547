"""The pipelined block protocol (protocol version 6, README "Pipeline"): the message order
per block, a peer's message out of that order refused with the block it named, and an
abort while a block is in flight stopping the other tasks with the transmitter dark."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from qhil.drivers.roles import TagBlock
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted, run_alice, run_bob
from qhil.orchestrator.experiments.bb84.link import PeerLink
from qhil.orchestrator.experiments.bb84.messages import (
    VERSION,
    AlignmentReveal,
    Announcement,
    BlockAcquired,
    BlockLive,
    Hello,
    SiftReplyMsg,
)
from qhil.records import KeyStore

from .conftest import Runner
from .support import WorldPatternGenerator, WorldTagger, bb84_world, frame_kind, open_channels
from .support import settings as make_settings

L = 1 << 16
# Guards against a hang only (a party that never stops); never reached when the code works.
HANG_GUARD_S = 120.0


class RecordingGenerator:
    """PatternGenerator double without a world: remembers its output switching."""

    name = "alice.pattern_generator"

    def __init__(self) -> None:
        self.outputs: list[bool] = []
        self.uploads = 0

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "qhil,RecordingGenerator,test-double,0"

    async def load_pattern(self, symbols: np.ndarray, symbol_rate_hz: float) -> None:
        self.uploads += 1

    async def set_output(self, enabled: bool) -> None:
        self.outputs.append(bool(enabled))


class DarkTagger:
    """TimeTagger double that sees nothing (every block is discarded: no light)."""

    name = "bob.tagger"

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "qhil,DarkTagger,test-double,0"

    async def acquire(self, duration_s: float) -> TagBlock:
        return TagBlock(np.zeros(0, np.int64), np.zeros(0, np.int16))


def recording(kinds: list[str]) -> Any:
    def tap(frame: bytes) -> Sequence[bytes]:
        kinds.append(frame_kind(frame))
        return [frame]

    return tap


async def test_three_blocks_follow_the_pipelined_order(run: Runner) -> None:
    a_to_b: list[str] = []
    b_to_a: list[str] = []
    await run(
        bb84_world(seed=4),
        make_settings(blocks=3, pattern_length=1 << 18),
        tamper_a_to_b=recording(a_to_b),
        tamper_b_to_a=recording(b_to_a),
    )
    per_block_a = [k[5:] for k in a_to_b if k.startswith("bb84.") and k != "bb84.Hello"]
    per_block_b = [k[5:] for k in b_to_a if k.startswith("bb84.")]
    # Alice: block b + 1 goes live before block b's sifting; block b's reply comes while
    # block b + 1 is acquired (README "Pipeline").
    assert per_block_a[:7] == [
        "BlockLive",  # 0
        "AlignmentReveal",  # 0
        "BlockLive",  # 1
        "SiftReplyMsg",  # 0, during block 1's acquisition
        "AlignmentReveal",  # 1
        "BlockLive",  # 2
        "SiftReplyMsg",  # 1
    ]
    assert per_block_a[7:9] == ["AlignmentReveal", "SiftReplyMsg"]  # block 2, the last
    assert per_block_b[:7] == [
        "BlockAcquired",  # 0
        "Announcement",  # 0, while block 1 is acquired
        "BlockTally",  # 0
        "BlockAcquired",  # 1
        "Announcement",  # 1
        "BlockTally",  # 1
        "BlockAcquired",  # 2
    ]
    assert per_block_b[7:9] == ["Announcement", "BlockTally"]


async def _scripted_bob(link: PeerLink, misbehave: str, settings_n: int, rate: float) -> None:
    await link.expect(Hello)
    await link.expect(BlockLive, block=0)
    await link.send(BlockAcquired(0, 0, 0))
    await link.expect(AlignmentReveal, block=0)
    await link.expect(BlockLive, block=1)  # block 1 is live: Alice's output is on
    if misbehave == "block 1 acquired before block 0's announcement":
        await link.send(BlockAcquired(1, 0, 0))
    else:  # block 1's announcement where block 0's is due
        empty = np.zeros(0, np.int64)
        await link.send(Announcement(1, 0, settings_n - 1, empty, np.zeros(0, np.uint8)))
    await asyncio.sleep(HANG_GUARD_S)  # Alice must stop by herself


@pytest.mark.parametrize(
    ("misbehave", "got"),
    [
        ("block 1 acquired before block 0's announcement", "got BlockAcquired for block 1"),
        ("block 1 announced before block 0", "got Announcement for block 1"),
    ],
)
async def test_alice_refuses_a_message_of_the_next_block_out_of_order(
    key_store: KeyStore, misbehave: str, got: str
) -> None:
    s = make_settings(blocks=3, pattern_length=L)
    a, b = await open_channels()
    gen = RecordingGenerator()
    bob = asyncio.ensure_future(
        _scripted_bob(PeerLink(b, "bob", "alice", 30.0), misbehave, L, s.rep_rate_hz)
    )
    try:
        with pytest.raises(BB84Aborted) as err:
            await asyncio.wait_for(
                run_alice(s, gen, a, key_store=key_store, rng=np.random.default_rng(3)),
                HANG_GUARD_S,
            )
    finally:
        bob.cancel()
        await asyncio.gather(bob, return_exceptions=True)
    exc = err.value
    assert exc.reason is AbortReason.PROTOCOL_ERROR and not exc.from_peer
    assert "expected Announcement or BlockDiscarded for block 0 from bob" in exc.detail
    assert got in exc.detail and "out of order" in exc.detail
    # Block 1 was live when the refusal came; the transmitter is dark after it.
    assert gen.uploads == 2 and gen.outputs[-1] is False and gen.outputs.count(True) == 2
    assert key_store.list_keys() == []


async def test_bob_refuses_a_reply_before_the_next_block_goes_live(key_store: KeyStore) -> None:
    s = make_settings(blocks=3, pattern_length=L)
    a, b = await open_channels()
    alice = PeerLink(a, "alice", "bob", 30.0)
    empty = np.zeros(0, np.uint8)

    async def scripted_alice() -> None:
        await alice.send(Hello(VERSION, s.digest()))
        await alice.send(BlockLive(0, L, s.rep_rate_hz))
        await alice.expect(BlockAcquired, block=0)
        await alice.send(AlignmentReveal(0, np.zeros(0, np.int64), empty, empty))
        # Block 0's reply where block 1's BlockLive is due (Bob has announced nothing yet).
        await alice.send(SiftReplyMsg(0, empty, empty, empty, np.zeros(3, np.int64)))
        await asyncio.sleep(HANG_GUARD_S)

    task = asyncio.ensure_future(scripted_alice())
    try:
        with pytest.raises(BB84Aborted) as err:
            await asyncio.wait_for(run_bob(s, DarkTagger(), b, key_store=key_store), HANG_GUARD_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    exc = err.value
    assert exc.reason is AbortReason.PROTOCOL_ERROR
    assert "expected BlockLive from alice, got SiftReplyMsg for block 0 (out of order)" in (
        exc.detail
    )


class WatchedGenerator(WorldPatternGenerator):
    """The world's generator, remembering its output switching."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.outputs: list[bool] = []

    async def set_output(self, enabled: bool) -> None:
        self.outputs.append(enabled)
        await super().set_output(enabled)


class HangingTagger(WorldTagger):
    """The world's tagger for block 0; block 1's acquisition never ends unless cancelled."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.cancelled = False

    async def acquire(self, duration_s: float) -> TagBlock:
        if not self.blocks:
            return await super().acquire(duration_s)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


async def test_a_failure_mid_pipeline_cancels_the_acquisition_and_darkens_the_output(
    key_store: KeyStore,
) -> None:
    """Block 0's sift reply is altered in flight while block 1 is being acquired: Bob stops
    his acquisition (it would never end) and aborts, Alice's transmitter goes dark."""
    world = bb84_world(seed=4)
    s = make_settings(blocks=3, pattern_length=1 << 18)
    altered: list[str] = []

    def alter_sift_reply(frame: bytes) -> Sequence[bytes]:
        if frame_kind(frame) != "bb84.SiftReplyMsg" or altered:
            return [frame]
        altered.append("SiftReplyMsg")
        b = bytearray(frame)
        b[-1] ^= 0x40
        return [bytes(b)]

    a, b = await open_channels(tamper_a_to_b=alter_sift_reply)
    gen = WatchedGenerator(world)
    tagger = HangingTagger(world)
    results = await asyncio.wait_for(
        asyncio.gather(
            run_alice(s, gen, a, key_store=key_store, rng=np.random.default_rng(1)),
            run_bob(s, tagger, b, key_store=key_store, rng=np.random.default_rng(2)),
            return_exceptions=True,
        ),
        HANG_GUARD_S,
    )
    alice_exc, bob_exc = results
    assert altered == ["SiftReplyMsg"]
    assert isinstance(bob_exc, BB84Aborted)
    assert bob_exc.reason is AbortReason.AUTHENTICATION_FAILED and not bob_exc.from_peer
    assert tagger.cancelled  # block 1's acquisition was stopped, not waited for
    # The authentication failure closes Bob's end: Alice, waiting for block 0's tally, stops.
    assert isinstance(alice_exc, BB84Aborted)
    assert alice_exc.reason is AbortReason.CHANNEL_FAILED and "BlockTally for block 0" in (
        alice_exc.detail
    )
    # Block 1 went live (output on) before the failure; the last switch turned it off.
    assert gen.outputs.count(True) == 2 and gen.outputs[-1] is False
    assert not world.transmitter("alice.tx").enabled
    assert key_store.list_keys() == []
