"""The channel over an in-process pipe: messages, and every attack a man in the
middle can mount ends in AuthenticationError (then the channel stays closed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from qhil.orchestrator.channel import (
    AuthenticatedChannel,
    AuthenticationError,
    ChannelClosedError,
    ChannelError,
    ChannelTimeoutError,
    InProcessTransport,
    MessageFormatError,
    UnexpectedMessageError,
    flip_byte,
    in_process_channels,
)
from qhil.orchestrator.channel.frames import FIXED_SIZE

from .conftest import AuthPair, hmac_pair


async def opened(
    auth_pair: AuthPair, **kw: object
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    a_auth, b_auth = auth_pair()
    a, b = in_process_channels(a_auth, b_auth, **kw)  # type: ignore[arg-type]
    await asyncio.gather(a.open(), b.open())
    return a, b


async def test_messages_flow_both_ways_concurrently(auth_pair: AuthPair) -> None:
    a, b = await opened(auth_pair, session_id="run-7")
    bases = np.random.default_rng(1).integers(0, 2, 10_000).astype(np.uint8)

    async def alice() -> None:
        for i in range(5):
            await a.send("sift", {"round": i, "bases": bases[i::5], "note": b"\x00x"})
        reply = await a.recv("ack")
        assert reply.payload == {"rounds": 5}

    async def bob() -> None:
        got = [await b.recv("sift") for _ in range(5)]
        assert [m.seq for m in got] == [1, 2, 3, 4, 5]
        for i, m in enumerate(got):
            assert m.sender == "alice" and m.payload["round"] == i
            np.testing.assert_array_equal(m.payload["bases"], bases[i::5])
        await b.send("ack", {"rounds": 5})

    await asyncio.gather(alice(), bob())
    assert (a.messages_sent, b.messages_received, b.messages_sent) == (5, 5, 1)
    await a.close()
    with pytest.raises(
        ChannelClosedError, match=r"bob: alice closed the channel while bob awaited message #6"
    ):
        await b.recv()


# Byte positions in a message frame: magic, seq field, header, body, tag.
@pytest.mark.parametrize("offset", [0, 5, FIXED_SIZE + 3, -40, -1])
async def test_flipping_any_byte_in_flight_fails_authentication(
    auth_pair: AuthPair, offset: int
) -> None:
    count = {"n": 0}
    flip = flip_byte(offset)

    def tamper_second_message(frame: bytes) -> Sequence[bytes]:
        count["n"] += 1
        return flip(frame) if count["n"] == 2 else [frame]  # leave the hello alone

    a, b = await opened(auth_pair, tamper_a_to_b=tamper_second_message)
    await a.send("parity", {"blocks": np.arange(64, dtype=np.uint8)})
    with pytest.raises(AuthenticationError) as info:
        await b.recv("parity")
    assert (info.value.local, info.value.peer, info.value.seq) == ("bob", "alice", 1)
    with pytest.raises(ChannelClosedError, match="failed"):
        await b.send("anything")


async def test_replayed_frame_fails(auth_pair: AuthPair) -> None:
    a, b = await opened(auth_pair, tamper_a_to_b=lambda f: [f, f])  # every frame twice
    # The duplicated hello is still waiting; the open already consumed one copy.
    await a.send("x", {})
    with pytest.raises(AuthenticationError, match="claims sequence number 0 where 1 was due"):
        await b.recv()


async def test_reordered_frames_fail(auth_pair: AuthPair) -> None:
    held: list[bytes] = []

    def swap_messages_1_and_2(frame: bytes) -> Sequence[bytes]:
        held.append(frame)
        if len(held) == 2:
            return []  # hold message #1
        if len(held) == 3:
            return [held[2], held[1]]  # deliver #2 before #1
        return [frame]

    a, b = await opened(auth_pair, tamper_a_to_b=swap_messages_1_and_2)
    await a.send("one", {})
    await a.send("two", {})
    with pytest.raises(AuthenticationError, match="claims sequence number 2 where 1 was due"):
        await b.recv()


async def test_dropped_frame_times_out_then_the_next_one_fails(auth_pair: AuthPair) -> None:
    count = {"n": 0}

    def drop_first_message(frame: bytes) -> Sequence[bytes]:
        count["n"] += 1
        return [] if count["n"] == 2 else [frame]

    a, b = await opened(auth_pair, tamper_a_to_b=drop_first_message)
    await a.send("syndrome", {})
    with pytest.raises(
        ChannelTimeoutError,
        match=r"bob: timed out after 0.05 s waiting for message #1 \('syndrome'\) from alice",
    ):
        await b.recv("syndrome", timeout_s=0.05)
    await a.send("syndrome", {})
    with pytest.raises(AuthenticationError, match="2 where 1 was due"):
        await b.recv("syndrome")


async def test_reflected_frame_fails(auth_pair: AuthPair) -> None:
    a_auth, b_auth = auth_pair()
    ta, tb = InProcessTransport.pair()
    sent: list[bytes] = []

    orig_send = ta.send_frame

    async def record(frame: bytes) -> None:
        sent.append(frame)
        await orig_send(frame)

    ta.send_frame = record  # type: ignore[method-assign]
    a = AuthenticatedChannel(ta, local="alice", peer="bob", authenticator=a_auth, session_id="s")
    b = AuthenticatedChannel(tb, local="bob", peer="alice", authenticator=b_auth, session_id="s")
    await asyncio.gather(a.open(), b.open())
    await a.send("x", {"v": 1})
    ta.inject_incoming(sent[-1])  # alice's own message #1 comes back to her as bob's #1
    with pytest.raises(AuthenticationError, match="alice: message #1 from bob"):
        await a.recv()


async def test_frame_from_another_session_fails_even_with_same_id_and_key() -> None:
    captured: list[bytes] = []
    a1, b1 = await opened(
        hmac_pair, session_id="same", tamper_a_to_b=lambda f: captured.append(f) or [f]
    )
    await a1.send("x", {"secret_plan": 1})
    await b1.recv("x")
    _a2, b2 = await opened(hmac_pair, session_id="same")
    # Inject session 1's message #1 into session 2 as alice's message #1.
    b2._t.inject_incoming(captured[1])  # type: ignore[attr-defined]
    with pytest.raises(AuthenticationError, match="tag mismatch"):
        await b2.recv()


async def test_wrong_key_fails_at_open() -> None:
    from qhil.orchestrator.channel import AuthKey, HmacSha256Authenticator

    a, b = in_process_channels(
        HmacSha256Authenticator(AuthKey(b"k" * 32)), HmacSha256Authenticator(AuthKey(b"K" * 32))
    )
    results = await asyncio.gather(a.open(), b.open(), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results), results
    assert all(r.seq == 0 for r in results if isinstance(r, AuthenticationError))


async def test_unexpected_kind_and_misuse_are_clear(auth_pair: AuthPair) -> None:
    a, b = await opened(auth_pair)
    await a.send("estimate", {})
    with pytest.raises(
        UnexpectedMessageError, match="message #1 from alice is 'estimate', expected 'sift'"
    ):
        await b.recv("sift")
    with pytest.raises(MessageFormatError, match="reserved"):
        await a.send("qhil.channel.hello", {})
    c, _ = in_process_channels(*auth_pair())
    with pytest.raises(ChannelError, match=r"open\(\) the channel to bob first"):
        await c.send("x", {})


async def test_open_times_out_naming_the_peer() -> None:
    a, _b = in_process_channels(*hmac_pair(), timeout_s=0.05)
    with pytest.raises(
        ChannelTimeoutError,
        match=r"alice: timed out after 0.05 s waiting for message #0 \('qhil.channel.hello'\) from bob",
    ):
        await a.open()
    with pytest.raises(ChannelClosedError):
        await a.send("x", {})


async def test_send_after_peer_closed_names_both() -> None:
    a, b = await opened(hmac_pair)
    await b.close()
    with pytest.raises(ChannelClosedError, match=r"alice: cannot send 'x' \(#1\) to bob"):
        await a.send("x", {})


async def test_close_after_peer_closed_still_releases_this_end() -> None:
    a, b = await opened(hmac_pair)
    closes = {"n": 0}
    inner_close = a._t.close  # type: ignore[attr-defined]

    async def counting_close() -> None:
        closes["n"] += 1
        await inner_close()

    a._t.close = counting_close  # type: ignore[attr-defined]
    await b.close()
    with pytest.raises(ChannelClosedError):
        await a.recv(timeout_s=1)
    await a.close()
    await a.close()
    assert closes["n"] == 1
    assert not a.is_open
