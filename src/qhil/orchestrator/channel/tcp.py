"""TCP transport: length-prefixed frames over asyncio streams, so Alice and Bob can
run in different processes or hosts.

Each frame travels as an 8-byte big-endian length followed by the frame. A
background task reads whole frames into a queue, which makes ``recv_frame``
cancel-safe (a timeout never leaves half a frame in the stream).

The length prefix is not authenticated (the tag is inside the frame), so it is
checked before any byte it promises is awaited: against the maximum, and against
the lengths in the frame's own fixed head (:func:`frames.check_head`). A tampered
prefix is then reported at once as a corrupt stream (an authentication failure),
not after a timeout spent waiting for bytes the peer never sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from qhil.orchestrator.channel import frames
from qhil.orchestrator.channel.errors import (
    ChannelClosedError,
    ChannelConnectionError,
    ChannelConnectTimeoutError,
    ChannelTimeoutError,
    CorruptStreamError,
)

_LEN = struct.Struct(">Q")
#: The largest legitimate frame, with room to spare: BB84's largest message is the sift
#: reply of a block (per detected pulse an i64 position, a u8 intensity and two bits),
#: which for a block of 16 Mi pulses (the 33500B's pattern memory) all detected is
#: ~148 MiB; the frame adds a JSON header and the tag. Anything longer is forged.
DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024


class _Failure:
    def __init__(self, error: Exception) -> None:
        self.error = error


class TcpTransport:
    """One end of a TCP connection carrying channel frames."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        local: str,
        peer: str,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        tag_size: int | None = None,
    ) -> None:
        self._reader = reader
        self._tag_size = tag_size
        self._writer = writer
        self._local = local
        self._peer = peer
        self._max = max_frame_bytes
        self._inbox: asyncio.Queue[bytes | _Failure] = asyncio.Queue()
        self._closed = False
        self._final: _Failure | None = None
        sock = writer.get_extra_info("peername")
        self._address = f"{sock[0]}:{sock[1]}" if isinstance(sock, tuple) else str(sock)
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        local: str,
        peer: str,
        timeout_s: float = 10.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        tag_size: int | None = None,
    ) -> TcpTransport:
        """Connect to ``peer`` listening at ``host:port``; ``tag_size`` (the authenticator's)
        lets the transport check each length prefix exactly."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except TimeoutError:
            raise ChannelConnectTimeoutError(
                f"{local}: no TCP connection to {peer} at {host}:{port} within {timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise ChannelConnectionError(
                f"{local}: cannot connect to {peer} at {host}:{port}: {exc.strerror or exc}"
            ) from None
        return cls(
            reader,
            writer,
            local=local,
            peer=peer,
            max_frame_bytes=max_frame_bytes,
            tag_size=tag_size,
        )

    @property
    def description(self) -> str:
        return f"TCP {self._local} <-> {self._peer} at {self._address}"

    @property
    def address(self) -> str:
        """The remote end as ``host:port`` (named in warnings about a failed handshake)."""
        return self._address

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    head = await self._reader.readexactly(_LEN.size)
                except asyncio.IncompleteReadError as exc:
                    how = "closed the connection" if not exc.partial else "closed mid-frame"
                    self._inbox.put_nowait(_Failure(ChannelClosedError(f"{self._peer} {how}")))
                    return
                (n,) = _LEN.unpack(head)
                why: str | None = (
                    f"frame length {n} exceeds the {self._max}-byte limit"
                    if n > self._max
                    else f"frame of {n} bytes is shorter than the minimum {frames.FIXED_SIZE}"
                    if n < frames.FIXED_SIZE
                    else None
                )
                try:
                    fixed = b"" if why else await self._reader.readexactly(frames.FIXED_SIZE)
                    why = why or frames.check_head(fixed, n, self._tag_size)
                    if why:
                        self._inbox.put_nowait(
                            _Failure(
                                CorruptStreamError(
                                    f"{why} (length prefix from {self._peer} corrupted or forged)"
                                )
                            )
                        )
                        return
                    frame = fixed + await self._reader.readexactly(n - frames.FIXED_SIZE)
                except asyncio.IncompleteReadError:
                    self._inbox.put_nowait(
                        _Failure(ChannelClosedError(f"{self._peer} closed mid-frame"))
                    )
                    return
                self._inbox.put_nowait(frame)
        except (ConnectionError, OSError) as exc:
            self._inbox.put_nowait(
                _Failure(ChannelClosedError(f"connection to {self._peer} lost: {exc}"))
            )

    async def send_frame(self, frame: bytes) -> None:
        if self._closed:
            raise ChannelClosedError("transport closed")
        if len(frame) > self._max:
            raise ChannelClosedError(
                f"frame of {len(frame)} bytes exceeds the {self._max}-byte limit"
            )
        try:
            self._writer.write(_LEN.pack(len(frame)))
            self._writer.write(frame)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelClosedError(
                f"connection to {self._peer} lost while sending: {exc}"
            ) from None

    async def recv_frame(self) -> bytes:
        if self._final is not None and self._inbox.empty():
            raise self._final.error
        item = await self._inbox.get()
        if isinstance(item, _Failure):
            self._final = item
            raise item.error
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        self._inbox.put_nowait(_Failure(ChannelClosedError("transport closed")))


class TcpListener:
    """Listens on ``host:port`` (port 0 picks a free one) and accepts peers' connections."""

    def __init__(self, local: str, max_frame_bytes: int) -> None:
        self._local = local
        self._max = max_frame_bytes
        self._pending: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] = ("", 0)

    @classmethod
    async def start(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        local: str,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> TcpListener:
        self = cls(local, max_frame_bytes)

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self._pending.put_nowait((r, w))

        try:
            self._server = await asyncio.start_server(on_connect, host, port)
        except OSError as exc:
            raise ChannelConnectionError(
                f"{local}: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        sockname = self._server.sockets[0].getsockname()
        self._address = str(sockname[0]), int(sockname[1])
        return self

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (or listened: still known after it stopped accepting)."""
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    async def accept(
        self, *, peer: str, timeout_s: float = 30.0, tag_size: int | None = None
    ) -> TcpTransport:
        """The next incoming connection, as a transport to ``peer``."""
        try:
            r, w = await asyncio.wait_for(self._pending.get(), timeout_s)
        except TimeoutError:
            host, port = self.address
            raise ChannelTimeoutError(
                f"{self._local}: no connection from {peer} on {host}:{port} within {timeout_s:g} s"
            ) from None
        return TcpTransport(
            r, w, local=self._local, peer=peer, max_frame_bytes=self._max, tag_size=tag_size
        )

    def stop_accepting(self) -> None:
        """Stop listening and close connections not yet accepted (the session is bound)."""
        if self._server is not None:
            self._server.close()  # no wait_closed(): it would wait for the bound connection
        while not self._pending.empty():
            _, w = self._pending.get_nowait()
            w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        while not self._pending.empty():
            _, w = self._pending.get_nowait()
            w.close()

    async def __aenter__(self) -> TcpListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
