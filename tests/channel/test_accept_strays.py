"""A stray connection must not abort the accepting party (issue 14 review).

Anyone who can reach the listening port can connect. ``accept_channel`` used to take
the first connection as the peer: an HTTP request made Alice fail at once with an
authentication error, and the real Bob then waited in vain. Now a failed handshake is
logged with the remote address and closed, handshakes run concurrently (a silent
connection cannot hold the port), and the first authenticated hello binds the session.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from qhil.orchestrator.channel import (
    AuthenticatedChannel,
    AuthenticationError,
    Authenticator,
    AuthKey,
    ChannelConnectionError,
    ChannelTimeoutError,
    HmacSha256Authenticator,
    TcpListener,
    TcpTransport,
    accept_channel,
    connect_channel,
)

from .conftest import AuthPair, hmac_pair


def _alice_accepts(
    lst: TcpListener, auth: Authenticator, **kw: float
) -> asyncio.Task[AuthenticatedChannel]:
    return asyncio.create_task(
        accept_channel(
            lst, local="alice", peer="bob", authenticator=auth, session_id="s", timeout_s=30, **kw
        )
    )


async def _bob_connects(port: int, auth: Authenticator) -> AuthenticatedChannel:
    return await connect_channel(
        "127.0.0.1", port, local="bob", peer="alice", authenticator=auth, session_id="s",
        timeout_s=30,
    )  # fmt: skip


async def _garbage(port: int) -> str:
    """Send an HTTP request, read until alice hangs up; returns our address."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    await writer.drain()
    host, p = writer.get_extra_info("sockname")[:2]
    await reader.read()  # EOF: alice closed it
    writer.close()
    return f"{host}:{p}"


async def test_garbage_then_silent_connection_then_the_real_peer_opens(
    auth_pair: AuthPair, caplog: pytest.LogCaptureFixture
) -> None:
    a_auth, b_auth = auth_pair()
    lst = await TcpListener.start("127.0.0.1", 0, local="alice")
    # the silent connection is given 10 s: bob gets in alongside it
    alice_task = _alice_accepts(lst, a_auth)
    with caplog.at_level(logging.WARNING, logger="qhil.orchestrator.channel"):
        stray = await _garbage(lst.port)
        _, silent = await asyncio.open_connection("127.0.0.1", lst.port)
        bob = await _bob_connects(lst.port, b_auth)
        alice = await alice_task
    await bob.send("sift", {"b": np.arange(5, dtype=np.uint8)})
    np.testing.assert_array_equal((await alice.recv("sift")).payload["b"], np.arange(5))
    warned = [r.getMessage() for r in caplog.records if "handshake with bob" in r.getMessage()]
    assert len(warned) == 1, warned
    assert f"at {stray} failed" in warned[0] and "frame length" in warned[0]
    # Bound: no further connection is accepted.
    with pytest.raises(ChannelConnectionError):
        await TcpTransport.connect("127.0.0.1", lst.port, local="x", peer="alice", timeout_s=5)
    silent.close()
    await alice.close()
    await bob.close()
    await lst.close()


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a_auth, b_auth = hmac_pair()
    lst = await TcpListener.start("127.0.0.1", 0, local="alice")
    alice_task = _alice_accepts(lst, a_auth, handshake_timeout_s=0.2)
    with caplog.at_level(logging.WARNING, logger="qhil.orchestrator.channel"):
        reader, writer = await asyncio.open_connection("127.0.0.1", lst.port)
        # alice's hello, then EOF once she gives up on us
        rest = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert rest  # her hello
        bob = await _bob_connects(lst.port, b_auth)
        alice = await alice_task
    assert any("silent for 0.2 s" in r.getMessage() for r in caplog.records)
    await alice.close()
    await bob.close()
    await lst.close()


async def test_a_wrong_key_keeps_alice_listening_then_fails_authentication() -> None:
    """A hello failing its tag is not fatal at once (it could be anyone's), but if no peer
    authenticates in time the failure is reported as an authentication failure."""
    lst = await TcpListener.start("127.0.0.1", 0, local="alice")
    alice_task = _alice_accepts(lst, hmac_pair()[0], accept_timeout_s=1)
    wrong = HmacSha256Authenticator(AuthKey(bytes(32)))
    with pytest.raises(AuthenticationError):  # bob checks alice's hello: fails too
        await _bob_connects(lst.port, wrong)
    with pytest.raises(
        AuthenticationError,
        match=r"alice: message #0 from bob failed authentication: no connection "
        r"authenticated as bob on 127.0.0.1:\d+ within 1 s; 1 connection\(s\) failed",
    ) as info:
        await alice_task
    assert "tag mismatch" in str(info.value)
    await lst.close()


async def test_only_garbage_ends_in_the_no_peer_timeout_naming_it() -> None:
    lst = await TcpListener.start("127.0.0.1", 0, local="alice")
    alice_task = _alice_accepts(lst, hmac_pair()[0], accept_timeout_s=1)
    stray = await _garbage(lst.port)
    with pytest.raises(
        ChannelTimeoutError,
        match=rf"alice: no connection from bob on 127.0.0.1:\d+ within 1 s; 1 connection\(s\) "
        rf"failed the handshake, the last from {stray}: .*frame length",
    ):
        await alice_task
    await lst.close()
