"""Frame transports under the authenticated channel: the protocol, in-process pairs,
and a wrapper that tampers with frames in flight (man-in-the-middle for tests and
fault injection).

A transport moves opaque frames (bytes) in order. ``recv_frame`` is cancel-safe
(a timeout around it never loses or splits a frame) and raises
``ChannelClosedError`` once the peer has closed and every frame before the close
has been delivered. A transport's errors say what happened to the pipe, not whose end
it is: they reach the user through the channel, which names the local party and what it
was doing (naming it here too printed "alice: cannot send 'x' (#1) to bob: alice: ...").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from qhil.orchestrator.channel.errors import ChannelClosedError

Tamper = Callable[[bytes], Sequence[bytes]]
"""Receives each outgoing frame, returns the frames to deliver instead: ``[frame]``
passes it on, ``[]`` drops it, ``[f2]`` replaces it, ``[f, f]`` replays it; a
closure with state can hold frames back to reorder them."""


class FrameTransport(Protocol):
    """What the channel needs from a transport."""

    @property
    def description(self) -> str: ...

    async def send_frame(self, frame: bytes) -> None: ...

    async def recv_frame(self) -> bytes: ...

    async def close(self) -> None: ...


_CLOSED = object()


class InProcessTransport:
    """One end of an in-memory, in-order frame pipe (asyncio queues, same event loop)."""

    def __init__(self, name: str, peer: str) -> None:
        self._name = name
        self._peer_name = peer
        self._inbox: asyncio.Queue[bytes | object] = asyncio.Queue()
        self._other: InProcessTransport | None = None
        self._closed = False
        self._peer_closed = False

    @classmethod
    def pair(
        cls, a: str = "alice", b: str = "bob"
    ) -> tuple[InProcessTransport, InProcessTransport]:
        """Two connected ends, for parties ``a`` and ``b``."""
        ta, tb = cls(a, b), cls(b, a)
        ta._other, tb._other = tb, ta
        return ta, tb

    @property
    def description(self) -> str:
        return f"in-process pipe {self._name} <-> {self._peer_name}"

    def inject_incoming(self, frame: bytes) -> None:
        """Deliver ``frame`` to this end as if the peer had sent it (fault injection)."""
        self._inbox.put_nowait(bytes(frame))

    async def send_frame(self, frame: bytes) -> None:
        if self._closed:
            raise ChannelClosedError("this end of the pipe is closed")
        other = self._other
        if other is None or other._closed:
            raise ChannelClosedError(f"{self._peer_name} closed the pipe")
        other._inbox.put_nowait(bytes(frame))

    async def recv_frame(self) -> bytes:
        if self._peer_closed and self._inbox.empty():
            raise ChannelClosedError(f"{self._peer_name} closed the pipe")
        item = await self._inbox.get()
        if item is _CLOSED:
            if self._closed:
                raise ChannelClosedError("this end of the pipe was closed")
            self._peer_closed = True
            raise ChannelClosedError(f"{self._peer_name} closed the pipe")
        assert isinstance(item, bytes)
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._other is not None:
            self._other._inbox.put_nowait(_CLOSED)
        # Wake our own pending receiver too.
        self._inbox.put_nowait(_CLOSED)


class TamperingTransport:
    """Wraps a transport and passes every outgoing frame through ``tamper`` first."""

    def __init__(self, inner: FrameTransport, tamper: Tamper) -> None:
        self._inner = inner
        self._tamper = tamper

    @property
    def description(self) -> str:
        return f"{self._inner.description} (tampered)"

    async def send_frame(self, frame: bytes) -> None:
        for f in self._tamper(frame):
            await self._inner.send_frame(f)

    async def recv_frame(self) -> bytes:
        return await self._inner.recv_frame()

    async def close(self) -> None:
        await self._inner.close()


def flip_byte(offset: int, mask: int = 0x01) -> Tamper:
    """A tamper that flips bits ``mask`` of byte ``offset`` (negative: from the end)."""

    def tamper(frame: bytes) -> Sequence[bytes]:
        b = bytearray(frame)
        b[offset] ^= mask
        return [bytes(b)]

    return tamper
