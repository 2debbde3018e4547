"""Wegman-Carter over the transcript: tags at checkpoints only, every change caught there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np
import pytest

from qhil.orchestrator.channel import (
    AuthenticationError,
    KeyPool,
    codec,
    frames,
    in_process_channels,
)
from qhil.orchestrator.channel.auth import _LANES, _LANES_MIN_BLOCKS, P127, poly1271
from qhil.orchestrator.channel.channel import HELLO_KIND, AuthenticatedChannel
from qhil.orchestrator.channel.transcript import TranscriptAuthenticator

from .conftest import WC_POOL

CONFIRM = "confirm"


def pair(
    pool: bytes = WC_POOL, pool_b: bytes | None = None, **kw: int
) -> tuple[TranscriptAuthenticator, TranscriptAuthenticator]:
    return (
        TranscriptAuthenticator(
            KeyPool(pool), local="alice", peer="bob", checkpoint_kinds={CONFIRM}, **kw
        ),
        TranscriptAuthenticator(
            KeyPool(pool_b or pool), local="bob", peer="alice", checkpoint_kinds={CONFIRM}, **kw
        ),
    )


async def opened(
    auths: tuple[TranscriptAuthenticator, TranscriptAuthenticator],
    tamper: Callable[[bytes], list[bytes]] | None = None,
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    a, b = in_process_channels(*auths, timeout_s=5.0, tamper_a_to_b=tamper)
    await asyncio.gather(a.open(), b.open())
    return a, b


async def test_only_checkpoints_spend_pads_and_both_sides_agree() -> None:
    auths = pair()
    a, b = await opened(auths)
    for i in range(20):
        await a.send("data", {"x": np.arange(i * 100)})
        assert (await b.recv("data")).payload["x"].size == i * 100
    assert auths[0].pending_messages(("alice", "bob")) == 20
    await a.send(CONFIRM, {})
    await b.recv(CONFIRM)
    # hello each way + one checkpoint alice -> bob: 3 pads of 128 bits, seen alike by both
    assert auths[0].pad_bits_used == auths[1].pad_bits_used == 3 * 128
    assert auths[1].pending_messages(("alice", "bob")) == 0


async def test_periodic_checkpoints_bound_what_one_tag_covers() -> None:
    auths = pair(every_messages=4)
    a, b = await opened(auths)
    for _ in range(8):
        await a.send("data", {})
        await b.recv("data")
    assert auths[1].checkpoints == 2 + 2  # two hellos, then messages 4 and 8
    assert auths[1].pending_messages(("alice", "bob")) == 0


def _nth(n: int, change: Callable[[bytes], list[bytes]]) -> Callable[[bytes], list[bytes]]:
    """Apply ``change`` to frame #n alice -> bob (0 = hello), pass the rest."""
    seen = [0]

    def tamper(frame: bytes) -> list[bytes]:
        i, seen[0] = seen[0], seen[0] + 1
        return change(frame) if i == n else [frame]

    return tamper


def _flip_body(frame: bytes) -> list[bytes]:
    out = bytearray(frame)
    out[-17 - 3] ^= 0x01  # a byte of the array's data, before the tag field
    return [bytes(out)]


def _forge_tag_field_flag(frame: bytes) -> list[bytes]:
    out = bytearray(frame)
    out[-17] = 0  # strip the checkpoint flag
    out[-16:] = bytes(16)
    return [bytes(out)]


class _Replay:
    def __init__(self) -> None:
        self.kept: bytes | None = None
        self.n = 0

    def __call__(self, frame: bytes) -> list[bytes]:
        self.n += 1
        if self.n == 2:
            self.kept = frame
        if self.n == 3:
            assert self.kept is not None
            # replace #2 by a copy of #1 with its sequence number rewritten: only the hash sees it
            out = bytearray(self.kept)
            out[4:12] = (2).to_bytes(8, "big")
            return [bytes(out)]
        return [frame]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda: _nth(2, _flip_body), id="flip"),
        pytest.param(lambda: _nth(2, lambda f: []), id="drop"),
        pytest.param(_Replay, id="replay-renumbered"),
    ],
)
async def test_a_change_between_checkpoints_fails_the_next_checkpoint(
    tamper: Callable[[], Callable[[bytes], list[bytes]]],
) -> None:
    a, b = await opened(pair(), tamper())
    for i in range(4):
        await a.send("data", {"x": np.full(64, i, dtype=np.uint8)})
    await a.send(CONFIRM, {})
    # the frames before the checkpoint are delivered unverified (one may be missing) ...
    with pytest.raises(AuthenticationError) as err:
        for _ in range(5):
            msg = await b.recv()
            if msg.kind == CONFIRM:
                pytest.fail("the checkpoint verified although a frame before it was changed")
    # ... and the checkpoint (or an out-of-place frame) fails for good
    assert not b.is_open
    assert "tag" in str(err.value) or "sequence number" in str(err.value)


async def test_a_stripped_checkpoint_flag_is_refused_for_a_checkpoint_kind() -> None:
    a, b = await opened(pair(), _nth(1, _forge_tag_field_flag))
    await a.send(CONFIRM, {})
    with pytest.raises(AuthenticationError, match="without the checkpoint tag"):
        await b.recv()


async def test_a_forged_frame_inserted_between_checkpoints_fails_the_checkpoint() -> None:
    # Anyone can build a well-formed deferred frame: no key is needed for that.
    a, b = await opened(pair())
    header, buffers = codec.encode("data", {"evil": True})
    framed, _ = frames.build(1, header, buffers)
    b._t.inject_incoming(bytes(framed) + bytes(17))  # type: ignore[attr-defined]
    assert (await b.recv("data")).payload == {"evil": True}  # accepted for now, unverified
    await a.send("data", {})  # the genuine #1 now arrives where #2 is due
    with pytest.raises(AuthenticationError, match="sequence number"):
        await b.recv()


async def test_a_wrong_pool_fails_the_handshake_at_both() -> None:
    other = bytes(b ^ 0x5A for b in WC_POOL)
    a, b = in_process_channels(*pair(WC_POOL, other), timeout_s=5.0)
    results = await asyncio.gather(a.open(), b.open(), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results), results


async def test_hmac_frames_are_unchanged_by_the_transcript_mode() -> None:
    # the HMAC path keeps its frame: the tag is 32 bytes of HMAC-SHA256 over mac_input
    import hashlib
    import hmac as _hmac

    from qhil.orchestrator.channel import AuthKey, HmacSha256Authenticator, frames

    key = AuthKey(bytes(range(32)))
    captured: list[bytes] = []
    a, b = in_process_channels(
        HmacSha256Authenticator(key),
        HmacSha256Authenticator(key),
        tamper_a_to_b=lambda f: (captured.append(f), [f])[1],
    )
    await asyncio.gather(a.open(), b.open())
    await a.send("data", {"x": 1})
    await b.recv("data")
    parsed = frames.parse(captured[1], 32)
    assert isinstance(parsed, frames.ParsedFrame)
    data = frames.mac_input(a._context, "alice", "bob", 1, parsed.authenticated_part)
    assert parsed.tag == _hmac.new(key.reveal(), data, hashlib.sha256).digest()


async def test_an_untagged_hello_is_refused_without_touching_the_transcript() -> None:
    auths = pair()
    # a stray's hello without a tag, then the genuine peer: the genuine one still verifies
    header, buffers = codec.encode(HELLO_KIND, {})
    framed, _ = frames.build(0, header, buffers)
    data = frames.mac_input(b"hello:in-process", "alice", "bob", 0, framed)
    assert auths[1].check(("alice", "bob"), data, bytes(17), checkpoint=True) == "failed"
    a, b = await opened(auths)
    await a.send(CONFIRM, {})
    assert (await b.recv(CONFIRM)).kind == CONFIRM


def _horner(data: bytes, r: int, h: int = 0) -> int:
    """poly1271 as the definition says, block by block (the reference)."""
    for i in range(0, len(data), 15):
        h = ((h + int.from_bytes(data[i : i + 15] + b"\x01", "little")) * r) % P127
    return h


@pytest.mark.parametrize("extra", [0, 7, 14])
@pytest.mark.parametrize("blocks", [_LANES_MIN_BLOCKS, _LANES_MIN_BLOCKS + 1, 5 * _LANES + 3])
def test_numpy_poly1271_equals_horners_rule(blocks: int, extra: int) -> None:
    rng = np.random.default_rng(blocks + extra)
    data = rng.integers(0, 256, 15 * blocks + extra, dtype=np.uint8).tobytes()
    r, h0 = int(rng.integers(1, 1 << 62)) ** 2 % P127, int(rng.integers(0, 1 << 62))
    assert poly1271(data, r, h0) == _horner(data, r, h0)
    # the largest limbs and point: every carry and fold at its extreme
    ones = b"\xff" * (15 * blocks + extra)
    assert poly1271(ones, P127 - 1, P127 - 1) == _horner(ones, P127 - 1, P127 - 1)


async def test_no_pool_bytes_in_reprs_logs_or_errors_and_no_pickling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pickle

    from .test_key_hygiene import leaks

    caplog.set_level(logging.DEBUG)
    auths = pair()
    auths[0].stage_replenishment(WC_POOL[:32])
    a, b = await opened(auths, _nth(2, _flip_body))
    for _ in range(2):
        await a.send("data", {"x": np.zeros(64, dtype=np.uint8)})
    await a.send(CONFIRM, {})
    with pytest.raises(AuthenticationError) as err:
        for _ in range(3):
            await b.recv()
    text = " ".join([caplog.text, str(err.value), repr(auths[0]), repr(auths[1]), repr(a)])
    assert leaks(text) == []
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(auths[0])


async def test_a_deferred_frame_from_another_session_fails_the_checkpoint() -> None:
    # Same pool, same session id, same sequence number: only the nonces in the hashed
    # session context differ, and the checkpoint sees it.
    recorded: list[bytes] = []
    a2, b2 = await opened(pair(), lambda f: (recorded.append(f), [f])[1])
    await a2.send("data", {"x": 1})
    await b2.recv("data")
    other = recorded[1]

    a, b = await opened(pair(), _nth(1, lambda f: [other]))
    await a.send("data", {"x": 2})
    assert (await b.recv("data")).payload == {"x": 1}  # unverified for now
    await a.send(CONFIRM, {})
    with pytest.raises(AuthenticationError, match="tag mismatch"):
        await b.recv()
