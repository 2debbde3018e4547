"""Key confirmation and commit (issue 14 item 1): whatever single message of the
confirmation is dropped, delayed past its timeout or altered, both parties end with the
same usable key or neither has one, and nothing stays pending.

The confirmation exchange itself runs in-process between the two real party objects
(``_Alice.confirm`` / ``_Bob.confirm`` inside ``run_party``, as ``run_alice`` /
``run_bob`` run them), over an authenticated in-memory channel whose sending ends can
drop, delay or flip one chosen message. One end-to-end run shows the original defect
(Bob kept his key when his last message to Alice was lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pytest

from qhil.orchestrator.channel import AuthenticatedChannel, HmacSha256Authenticator
from qhil.orchestrator.channel.transport import InProcessTransport
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.alice import _Alice
from qhil.orchestrator.experiments.bb84.bob import _Bob
from qhil.orchestrator.experiments.bb84.link import PeerLink
from qhil.orchestrator.experiments.bb84.party import FinalKey, PartyBase, run_party
from qhil.orchestrator.experiments.bb84.result import PartyResult
from qhil.records import KeyStore, KeyStoreError

from .conftest import Runner
from .support import TEST_KEY, bb84_world, frame_kind, settings

Action = Literal["drop", "delay", "flip"]
T = 0.25  # message_timeout_s of these runs; a delayed message arrives after 5 T


@dataclass
class Fault:
    """Drop, delay or flip the ``occurrence``-th message of ``kind`` one way."""

    kind: str
    action: Action
    occurrence: int = 0
    delay_s: float = 5 * T
    hits: int = 0
    seen: dict[str, int] = field(default_factory=dict)


class FaultyEnd:
    """The sending end of an in-memory pipe that applies a :class:`Fault`.

    A delayed message holds back every later one in the same direction (as a TCP
    man in the middle does) and is delivered, in order, after ``delay_s``.
    """

    def __init__(self, inner: InProcessTransport, peer: InProcessTransport, fault: Fault | None):
        self._inner, self._peer, self._fault = inner, peer, fault
        self._held: list[bytes] | None = None
        self.release: asyncio.Task[None] | None = None

    @property
    def description(self) -> str:
        return self._inner.description

    async def send_frame(self, frame: bytes) -> None:
        if self._held is not None:
            self._held.append(frame)
            return
        f = self._fault
        if f is not None:
            kind = frame_kind(frame)
            n = f.seen.get(kind, 0)
            f.seen[kind] = n + 1
            if kind == f.kind and n == f.occurrence:
                f.hits += 1
                if f.action == "drop":
                    return
                if f.action == "flip":
                    b = bytearray(frame)
                    b[len(b) // 2] ^= 0x10
                    frame = bytes(b)
                else:
                    self._held = [frame]
                    self.release = asyncio.create_task(self._deliver_later(f.delay_s))
                    return
        await self._inner.send_frame(frame)

    async def _deliver_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        held, self._held = self._held or [], None
        for frame in held:
            self._peer.inject_incoming(frame)

    async def recv_frame(self) -> bytes:
        return await self._inner.recv_frame()

    async def close(self) -> None:
        await self._inner.close()


async def faulty_channels(
    a_to_b: Fault | None = None, b_to_a: Fault | None = None
) -> tuple[AuthenticatedChannel, AuthenticatedChannel, list[FaultyEnd]]:
    ta, tb = InProcessTransport.pair("alice", "bob")
    ea, eb = FaultyEnd(ta, tb, a_to_b), FaultyEnd(tb, ta, b_to_a)
    a, b = (
        AuthenticatedChannel(
            end,
            local=local,
            peer=peer,
            authenticator=HmacSha256Authenticator(TEST_KEY),
            session_id="confirmation",
            timeout_s=60.0,
        )
        for end, local, peer in ((ea, "alice", "bob"), (eb, "bob", "alice"))
    )
    await asyncio.gather(a.open(), b.open())
    return a, b, [ea, eb]


@dataclass
class Outcome:
    alice: PartyResult | BaseException
    bob: PartyResult | BaseException
    state: Literal["both", "neither"]


def both_or_neither(
    ka: KeyStore, kb: KeyStore, *, pending_ok: bool = False
) -> Literal["both", "neither"]:
    """The acceptance condition, read from the two key stores themselves."""
    if not pending_ok:
        assert ka.pending_keys() == [] and kb.pending_keys() == [], "a key was left pending"
    la, lb = ka.list_keys(), kb.list_keys()
    if not la and not lb:
        return "neither"
    assert len(la) == len(lb) == 1, f"usable keys: alice {len(la)}, bob {len(lb)}"
    assert ka.load(la[0].key_id) == kb.load(lb[0].key_id)
    return "both"


def parties(
    tmp_path: Path, a: AuthenticatedChannel, b: AuthenticatedChannel, **store: KeyStore
) -> tuple[_Alice, _Bob]:
    s = settings(message_timeout_s=T)
    common: dict[str, Any] = {"run_id": None, "progress": None, "on_data": None}
    alice = _Alice(
        cast(Any, None),
        s,
        PeerLink(a, "alice", "bob", T),
        key_store=store["alice"] if "alice" in store else KeyStore(tmp_path / "ka"),
        rng=np.random.default_rng(1),
        **common,
    )
    bob = _Bob(
        cast(Any, None),
        s,
        PeerLink(b, "bob", "alice", T),
        key_store=store["bob"] if "bob" in store else KeyStore(tmp_path / "kb"),
        rng=np.random.default_rng(2),
        **common,
    )
    return alice, bob


async def confirm_only(party: PartyBase, final: FinalKey) -> PartyResult:
    """The tail of ``run()``: store the final key pending, confirm, commit."""
    party.store_pending(final.stored)
    await cast(Any, party).confirm(final)
    return party.result()


def amplified(n: int = 3000, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8)


async def confirm(
    tmp_path: Path,
    *,
    a_to_b: Fault | None = None,
    b_to_a: Fault | None = None,
    bob_bits: np.ndarray | None = None,
    pending_ok: bool = False,
    **store: KeyStore,
) -> Outcome:
    a, b, ends = await faulty_channels(a_to_b, b_to_a)
    alice, bob = parties(tmp_path, a, b, **store)
    t = alice.settings.tag_bits
    bits = amplified()
    results = await asyncio.gather(
        run_party(alice, confirm_only(alice, FinalKey(bits, t))),
        run_party(bob, confirm_only(bob, FinalKey(bits if bob_bits is None else bob_bits, t))),
        return_exceptions=True,
    )
    for end in ends:  # let a delayed message land (into a closed or finished party)
        if end.release is not None:
            await end.release
    await asyncio.gather(a.close(), b.close())
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, BB84Aborted):
            raise r
    ra, rb = cast(Sequence[PartyResult | BaseException], results)
    return Outcome(ra, rb, both_or_neither(alice.key_store, bob.key_store, pending_ok=pending_ok))


# (direction, kind): every message of the confirmation, in protocol order.
CONFIRMATION = [
    ("b_to_a", "bb84.KeyConfirm"),
    ("a_to_b", "bb84.KeyConfirm"),
    ("b_to_a", "bb84.KeyCommitted"),
    ("a_to_b", "bb84.Finished"),
]
# Which outcome the commit rules give: before Bob commits (on Alice's tag) neither keeps
# the key; once he has, Alice commits whatever happens to his acknowledgement.
EXPECTED = {"bb84.KeyConfirm": "neither", "bb84.KeyCommitted": "both", "bb84.Finished": "both"}


async def test_without_a_fault_both_commit_the_same_key_acknowledged(tmp_path: Path) -> None:
    out = await confirm(tmp_path)
    assert out.state == "both"
    assert isinstance(out.alice, PartyResult) and isinstance(out.bob, PartyResult)
    assert out.alice.committed and out.bob.committed
    assert out.alice.commit == out.bob.commit == "acknowledged"
    t = settings().tag_bits
    assert out.alice.key is not None and out.alice.key.length_bits == 3000 - 2 * t


@pytest.mark.parametrize("action", ["drop", "delay", "flip"])
@pytest.mark.parametrize(("direction", "kind"), CONFIRMATION, ids=lambda x: str(x))
async def test_one_fault_on_any_confirmation_message_leaves_both_or_neither(
    tmp_path: Path, direction: str, kind: str, action: Action
) -> None:
    fault = Fault(kind, action)
    kw = {"a_to_b": fault} if direction == "a_to_b" else {"b_to_a": fault}
    out = await confirm(tmp_path, **kw)  # type: ignore[arg-type]
    assert fault.hits == 1, fault.seen  # the message really was sent and faulted
    assert out.state == EXPECTED[kind]
    if out.state == "neither":
        assert isinstance(out.alice, BB84Aborted) and isinstance(out.bob, BB84Aborted)
    else:
        assert isinstance(out.alice, PartyResult) and isinstance(out.bob, PartyResult)
        lost_ack = kind == "bb84.KeyCommitted"
        assert out.alice.commit == ("presumed" if lost_ack else "acknowledged")


@pytest.mark.parametrize("action", ["drop", "delay", "flip"])
async def test_a_lost_abort_after_a_confirmation_mismatch_leaves_neither(
    tmp_path: Path, action: Action
) -> None:
    bob_bits = amplified()
    bob_bits[5] ^= 1  # the stored keys differ (what confirmation is for)
    fault = Fault("bb84.Abort", action)
    out = await confirm(tmp_path, a_to_b=fault, bob_bits=bob_bits)
    assert fault.hits == 1
    assert out.state == "neither"
    assert isinstance(out.alice, BB84Aborted)
    assert out.alice.reason is AbortReason.CONFIRMATION_FAILED


async def test_different_keys_fail_confirmation_and_neither_keeps_one(tmp_path: Path) -> None:
    bob_bits = amplified()
    bob_bits[5] ^= 1
    out = await confirm(tmp_path, bob_bits=bob_bits)
    assert out.state == "neither"
    assert isinstance(out.alice, BB84Aborted) and isinstance(out.bob, BB84Aborted)
    assert out.alice.reason is AbortReason.CONFIRMATION_FAILED and not out.alice.from_peer
    assert out.bob.reason is AbortReason.CONFIRMATION_FAILED and out.bob.from_peer


async def test_a_key_store_that_fails_at_bob_is_named_and_alice_keeps_nothing(
    tmp_path: Path,
) -> None:
    kb = KeyStore(tmp_path / "kb")
    kb.directory.rmdir()  # removed mid-run: the final write fails
    out = await confirm(tmp_path, bob=kb)
    assert out.state == "neither"
    assert isinstance(out.bob, BB84Aborted) and isinstance(out.alice, BB84Aborted)
    assert out.bob.reason is AbortReason.KEY_STORE_FAILED
    assert str(kb.directory) in out.bob.detail
    assert out.alice.reason is AbortReason.KEY_STORE_FAILED and out.alice.from_peer
    assert str(kb.directory) in out.alice.detail


class FailingCommit(KeyStore):
    def commit(self, key_id: str) -> Any:
        raise KeyStoreError(f"cannot commit key {key_id} in {self.directory}: No space left")


async def test_a_commit_that_fails_at_bob_leaves_neither(tmp_path: Path) -> None:
    kb = FailingCommit(tmp_path / "kb")
    out = await confirm(tmp_path, bob=kb, pending_ok=True)
    assert out.state == "neither"
    assert isinstance(out.alice, BB84Aborted)
    assert out.alice.reason is AbortReason.KEY_STORE_FAILED
    assert str(kb.directory) in out.alice.detail
    # Bob's copy stays pending (never usable) for resolving by id; Alice's is gone.
    (kept,) = kb.pending_keys()
    assert f"key {kept.key_id} left pending" in out.alice.detail
    assert KeyStore(tmp_path / "ka").pending_keys() == []


def test_confirmation_tags_are_one_time_padded_with_dropped_key_bits() -> None:
    # The tag is hash XOR pad: with the same stored key and seed, each pad bit flips the
    # tag bit it pads, so the published tag is uniform whatever the stored key is.
    t = 32
    bits = amplified(500)
    final = FinalKey(bits, t)
    assert final.stored.size == 500 - 2 * t
    np.testing.assert_array_equal(np.concatenate([final.stored, final.pad_bob]), bits[:-t])
    msg = final.confirm(np.random.default_rng(3), final.pad_bob)
    other = bits.copy()
    other[-2 * t :] ^= 1  # same stored key, complemented pads
    flipped = FinalKey(other, t)
    np.testing.assert_array_equal(flipped.tag(msg.seed, flipped.pad_bob), msg.tag ^ 1)
    assert final.matches(msg, final.pad_bob) is True
    assert final.matches(msg, final.pad_alice) is False  # Alice's pad is not Bob's
    with pytest.raises(ValueError, match="leave nothing"):
        FinalKey(bits[: 2 * t], t)


@pytest.mark.slow
async def test_bobs_lost_last_message_leaves_neither_with_a_key_alone(
    run: Runner, key_store: KeyStore
) -> None:
    """The reported defect: Bob's last message to Alice lost (it was KeyStored, after
    which Bob kept his key and Alice aborted). Now it is his commit acknowledgement."""
    last = {"bb84.KeyStored", "bb84.KeyCommitted"}
    dropped: list[str] = []

    def drop_last(frame: bytes) -> Sequence[bytes]:
        kind = frame_kind(frame)
        if kind in last:
            dropped.append(kind)
            return []
        return [frame]

    world = bb84_world(seed=11)
    try:
        r = await run(world, settings(blocks=4, message_timeout_s=5.0), tamper_b_to_a=drop_last)
        outcome = "both" if r.committed else "aborted"
    except BB84Aborted:
        outcome = "aborted"
    assert dropped  # the message was sent, and lost
    refs = key_store.list_keys()
    labels = sorted(ref.label or "" for ref in refs)
    assert labels in ([], ["alice", "bob"]), labels
    assert key_store.pending_keys() == []
    if labels:
        a, b = (key_store.load(ref.key_id) for ref in sorted(refs, key=lambda x: x.label or ""))
        assert a == b and outcome == "both"
