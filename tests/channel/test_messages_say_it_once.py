"""A channel error names the local party once and says "the channel is closed" once.

The transports prefixed their errors with the local party and the channel, which wraps
them, did too ("alice: cannot send 'x' (#1) to bob: alice: cannot send: bob closed the
pipe"); a listener whose last stray failed its tag repeated that failure's whole message
("...; the channel is closed" twice) in its own authentication error.
"""

from __future__ import annotations

import asyncio

import pytest

from qhil.orchestrator.channel import (
    AuthenticationError,
    AuthKey,
    ChannelClosedError,
    HmacSha256Authenticator,
    TcpListener,
    accept_channel,
    connect_channel,
    in_process_channels,
)

from .conftest import hmac_pair


async def test_send_to_a_closed_peer_names_alice_once() -> None:
    key = AuthKey.generate()
    alice, bob = in_process_channels(HmacSha256Authenticator(key), HmacSha256Authenticator(key))
    await asyncio.gather(alice.open(), bob.open())
    await bob.close()
    with pytest.raises(ChannelClosedError) as sent:
        await alice.send("x", {})
    assert str(sent.value) == "alice: cannot send 'x' (#1) to bob: bob closed the pipe"
    with pytest.raises(ChannelClosedError) as got:
        await alice.recv("y")
    assert str(got.value).count("alice:") == 1, str(got.value)
    assert str(got.value).startswith("alice: bob closed the channel while alice awaited")


async def test_a_listener_failing_a_wrong_key_says_the_channel_is_closed_once() -> None:
    lst = await TcpListener.start("127.0.0.1", 0, local="alice")
    alice_task = asyncio.create_task(
        accept_channel(
            lst, local="alice", peer="bob", authenticator=hmac_pair()[0], session_id="s",
            timeout_s=30, accept_timeout_s=1,
        )
    )  # fmt: skip
    wrong = HmacSha256Authenticator(AuthKey(bytes(32)))
    with pytest.raises(AuthenticationError):
        await connect_channel(
            "127.0.0.1", lst.port, local="bob", peer="alice", authenticator=wrong,
            session_id="s", timeout_s=30,
        )  # fmt: skip
    with pytest.raises(AuthenticationError) as info:
        await alice_task
    text = str(info.value)
    assert text.count("the channel is closed") == 1, text
    assert text.count("alice:") == 1 and "tag mismatch" in text, text
    await lst.close()
