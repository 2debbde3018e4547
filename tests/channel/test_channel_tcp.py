"""The channel over TCP on loopback: a session, a man in the middle, two OS
processes, and clear errors for refused connections, timeouts and closed peers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qhil.orchestrator.channel import (
    AuthenticatedChannel,
    AuthenticationError,
    ChannelClosedError,
    ChannelConnectionError,
    ChannelTimeoutError,
    TcpListener,
    TcpTransport,
    accept_channel,
    connect_channel,
)

from .conftest import HMAC_KEY, AuthPair, hmac_pair


async def tcp_pair(
    auth_pair: AuthPair, port_override: int | None = None, listener: TcpListener | None = None
) -> tuple[AuthenticatedChannel, AuthenticatedChannel, TcpListener]:
    a_auth, b_auth = auth_pair()
    lst = listener or await TcpListener.start("127.0.0.1", 0, local="bob")
    port = port_override or lst.port
    bob_task = asyncio.create_task(
        accept_channel(
            lst, local="bob", peer="alice", authenticator=b_auth, session_id="tcp", timeout_s=5
        )
    )
    alice = await connect_channel(
        "127.0.0.1",
        port,
        local="alice",
        peer="bob",
        authenticator=a_auth,
        session_id="tcp",
        timeout_s=5,
    )
    bob = await bob_task
    return alice, bob, lst


async def test_session_over_loopback(auth_pair: AuthPair) -> None:
    alice, bob, lst = await tcp_pair(auth_pair)
    big = np.random.default_rng(2).integers(0, 2**63, 200_000, dtype=np.int64)  # 1.6 MB
    await alice.send("timestamps", {"t": big})
    got = await bob.recv("timestamps")
    np.testing.assert_array_equal(got.payload["t"], big)
    await bob.send("ok", {"n": int(big.size)})
    assert (await alice.recv("ok")).payload["n"] == big.size
    await bob.close()
    with pytest.raises(
        ChannelClosedError, match=r"alice: bob closed the channel while alice awaited message #2"
    ):
        await alice.recv(timeout_s=5)
    await alice.close()
    await lst.close()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    edit: Callable[[int, bytes, bytes], tuple[bytes, bytes]] | None,
) -> None:
    """Forward length-prefixed frames; ``edit(index, prefix, frame)`` may alter them."""
    index = 0
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            prefix = await reader.readexactly(8)
            frame = await reader.readexactly(struct.unpack(">Q", prefix)[0])
            if edit is not None:
                prefix, frame = edit(index, prefix, frame)
            writer.write(prefix + frame)
            await writer.drain()
            index += 1
    writer.close()


class MitmProxy:
    """A TCP man in the middle: forwards Alice's frames to Bob through ``edit``."""

    def __init__(self, target_port: int, edit: Callable[[int, bytes, bytes], tuple[bytes, bytes]]):
        self._target = target_port
        self._edit = edit
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        async def on_client(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            sr, sw = await asyncio.open_connection("127.0.0.1", self._target)
            self._writers += [cw, sw]
            self._tasks += [
                asyncio.create_task(_pump(cr, sw, self._edit)),
                asyncio.create_task(_pump(sr, cw, None)),
            ]

        self._server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._writers:
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()
        await self._server.wait_closed()


def flip_in_frame(index: int, pos: int) -> Callable[[int, bytes, bytes], tuple[bytes, bytes]]:
    def edit(i: int, prefix: bytes, frame: bytes) -> tuple[bytes, bytes]:
        if i != index:
            return prefix, frame
        b = bytearray(frame)
        b[pos] ^= 0x04
        return prefix, bytes(b)

    return edit


@pytest.mark.parametrize("pos", [30, -5])
async def test_mitm_flipping_a_byte_on_the_wire_fails_authentication(
    auth_pair: AuthPair, pos: int
) -> None:
    lst = await TcpListener.start("127.0.0.1", 0, local="bob")
    proxy = MitmProxy(lst.port, flip_in_frame(1, pos))  # frame 0 is the hello
    alice, bob, _ = await tcp_pair(auth_pair, await proxy.start(), lst)
    await alice.send("parity", {"p": np.ones(100, dtype=np.uint8)})
    with pytest.raises(
        AuthenticationError, match="bob: message #1 from alice failed authentication"
    ):
        await bob.recv("parity")
    await alice.close()
    await proxy.close()
    await lst.close()


async def test_mitm_corrupting_a_length_prefix_fails_authentication() -> None:
    def huge_length(i: int, prefix: bytes, frame: bytes) -> tuple[bytes, bytes]:
        return (bytes([prefix[0] ^ 0x01]) + prefix[1:], frame) if i == 1 else (prefix, frame)

    lst = await TcpListener.start("127.0.0.1", 0, local="bob")
    proxy = MitmProxy(lst.port, huge_length)
    alice, bob, _ = await tcp_pair(hmac_pair, await proxy.start(), lst)
    await alice.send("x", {})
    with pytest.raises(AuthenticationError, match="exceeds the .*-byte limit"):
        await bob.recv()
    await alice.close()
    await proxy.close()
    await lst.close()


def _grow_prefix(by: int) -> Callable[[int, bytes, bytes], tuple[bytes, bytes]]:
    def edit(i: int, prefix: bytes, frame: bytes) -> tuple[bytes, bytes]:
        if i != 1:
            return prefix, frame
        return struct.pack(">Q", struct.unpack(">Q", prefix)[0] + by), frame

    return edit


@pytest.mark.parametrize("by", [1, 40, 1 << 16, 1 << 27])  # all within the frame limit
async def test_a_tampered_length_prefix_fails_authentication_at_once(
    auth_pair: AuthPair, by: int
) -> None:
    """The prefix promises bytes the peer never sends: reported as tampering, not awaited
    until the receive timeout (30 s here, 120 s in a run)."""
    lst = await TcpListener.start("127.0.0.1", 0, local="bob")
    proxy = MitmProxy(lst.port, _grow_prefix(by))
    alice, bob, _ = await tcp_pair(auth_pair, await proxy.start(), lst)
    await alice.send("x", {"p": np.ones(10, dtype=np.uint8)})
    with pytest.raises(
        AuthenticationError, match=r"message #1 from alice .*length prefix .*corrupted or forged"
    ):
        await bob.recv(timeout_s=30)
    await alice.close()
    await proxy.close()
    await lst.close()


async def test_refused_connection_names_peer_and_address() -> None:
    lst = await TcpListener.start("127.0.0.1", 0, local="bob")
    port = lst.port
    await lst.close()
    with pytest.raises(
        ChannelConnectionError, match=rf"alice: cannot connect to bob at 127.0.0.1:{port}"
    ):
        await TcpTransport.connect("127.0.0.1", port, local="alice", peer="bob", timeout_s=2)


async def test_accept_timeout_names_the_peer() -> None:
    async with await TcpListener.start("127.0.0.1", 0, local="alice") as lst:
        with pytest.raises(
            ChannelTimeoutError,
            match=r"alice: no connection from bob on 127.0.0.1:\d+ within 0.05 s",
        ):
            await lst.accept(peer="bob", timeout_s=0.05)


async def test_peer_that_never_says_hello_times_out() -> None:
    lst = await TcpListener.start("127.0.0.1", 0, local="bob")
    silent = asyncio.create_task(lst.accept(peer="alice"))
    with pytest.raises(
        ChannelTimeoutError, match=r"alice: timed out after 0.1 s waiting for message #0"
    ):
        await connect_channel(
            "127.0.0.1",
            lst.port,
            local="alice",
            peer="bob",
            authenticator=hmac_pair()[0],
            session_id="s",
            timeout_s=0.1,
        )
    await (await silent).close()
    await lst.close()


async def test_two_os_processes_exchange_messages() -> None:
    rng = np.random.default_rng(3)
    alice_bases = rng.integers(0, 2, 64).astype(np.uint8)
    bob_bases = rng.integers(0, 2, 64).astype(np.uint8)
    async with await TcpListener.start("127.0.0.1", 0, local="alice") as lst:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("_bob_process.py")),
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None
        cfg = {
            "host": "127.0.0.1",
            "port": lst.port,
            "session": "two-proc",
            "key_hex": HMAC_KEY.hex(),
            "bob_bases": bob_bases.tolist(),
        }
        proc.stdin.write(json.dumps(cfg).encode() + b"\n")
        await proc.stdin.drain()
        proc.stdin.close()
        ch = await accept_channel(
            lst,
            local="alice",
            peer="bob",
            authenticator=hmac_pair()[0],
            session_id="two-proc",
            timeout_s=30,
        )
        await ch.send("sift", {"bases": alice_bases, "tag": b"abc"})
        reply = await ch.recv("sift_reply", timeout_s=30)
        np.testing.assert_array_equal(
            reply.payload["keep"], np.flatnonzero(alice_bases == bob_bases)
        )
        assert reply.payload["echo"] == b"cba"
        await ch.send("bye", {})
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        await ch.close()
