"""A peer host that never answers the TCP connect (silent, firewalled) is retried until
the peer timeout, like a refused connection; it gave up after one message timeout."""

from __future__ import annotations

import asyncio

import pytest

import qhil.orchestrator.channel.tcp as tcp
from qhil.orchestrator.channel import ChannelConnectionError, HmacSha256Authenticator
from qhil.orchestrator.channel.keys import AuthKey
from qhil.orchestrator.jobs import _connect_when_listening


async def test_a_silent_host_is_retried_until_the_peer_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = 0

    async def never_connects(host: str, port: int) -> tuple[object, object]:
        nonlocal attempts
        attempts += 1
        await asyncio.Event().wait()  # the SYN goes unanswered
        raise AssertionError("unreachable")

    monkeypatch.setattr(tcp.asyncio, "open_connection", never_connects)
    with pytest.raises(ChannelConnectionError) as caught:
        await _connect_when_listening(
            "192.0.2.1",  # never contacted: open_connection is replaced
            7000,
            timeout_s=0.05,
            peer_timeout_s=0.6,
            local="bob",
            peer="alice",
            authenticator=HmacSha256Authenticator(AuthKey.generate()),
            session_id="s",
        )
    text = str(caught.value)
    assert "no TCP connection to alice at 192.0.2.1:7000" in text
    assert "gave up after 0.6 s (--peer-timeout)" in text
    assert attempts >= 2  # tried again after the first connect timed out
