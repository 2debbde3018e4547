"""An event-loop-driven backend for raw-socket instruments (``TCPIP::host::port::SOCKET``).

pyvisa-py's SOCKET session is itself a plain TCP socket; driving that socket
from the asyncio loop instead of a worker thread saves a thread hop (two thread
wake-ups) per query, which dominates a LAN instrument's round trip. INSTR
(VXI-11 / HiSLIP), GPIB, USB and serial resources stay on pyvisa / pyserial.

Reader functions stay synchronous: they run on the bytes already received and
raise :class:`NeedMore` when those end too soon; the session then awaits more
bytes and runs the reader again from the start of the reply. Readers are pure
functions of the byte stream, so running one twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from qhil.transport.rawio import LinkDown, OpenFailed, ReadTimeout

#: Bytes handed to the transport at a time (see :meth:`AsyncSocketIO.awrite`).
_WRITE_PIECE = 1 << 18

_SOCKET = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>\d+)::SOCKET$", re.IGNORECASE)


def parse_socket_resource(resource: str) -> tuple[str, int] | None:
    m = _SOCKET.match(resource)
    return (m.group("host"), int(m.group("port"))) if m else None


class NeedMore(Exception):
    """The reply has not fully arrived yet."""


class AsyncSocketIO:
    """TCP socket I/O on the running event loop (no worker thread)."""

    async_native = True

    def __init__(self, resource: str) -> None:
        parsed = parse_socket_resource(resource)
        if parsed is None:
            raise ValueError(f"{resource!r} is not a TCPIP::host::port::SOCKET resource")
        self.host, self.port = parsed
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.buf = bytearray()
        self.pos = 0  # read cursor of the reader function being run

    # --- async side (the session awaits these) ---

    async def aopen(self, timeout_s: float) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout_s
            )
        except TimeoutError:
            raise OpenFailed(
                f"no TCP connection to {self.host}:{self.port} within {timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise OpenFailed(
                f"TCP connection to {self.host}:{self.port} failed: {exc.strerror or exc}"
            ) from None
        self.buf.clear()

    async def aclose(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def awrite(self, data: bytes | memoryview) -> None:
        if self._writer is None:
            raise LinkDown("not open")
        try:
            if len(data) <= _WRITE_PIECE:
                self._writer.write(data)
                await self._writer.drain()
                return
            # A 16 MB upload in pieces of a view, each once the last is all out: the socket
            # takes a piece straight from the caller's buffer and the transport copies only
            # what it leaves, instead of slicing and buffering the whole unsent rest (two
            # copies of ~16 MB, fresh pages each).
            transport = self._writer.transport
            low, high = transport.get_write_buffer_limits()
            transport.set_write_buffer_limits(high=0)  # drain() waits until all is sent
            try:
                view = memoryview(data)
                for start in range(0, len(view), _WRITE_PIECE):
                    self._writer.write(view[start : start + _WRITE_PIECE])
                    await self._writer.drain()
            finally:
                transport.set_write_buffer_limits(high=high, low=low)
        except (ConnectionError, OSError) as exc:
            raise LinkDown(str(exc) or type(exc).__name__) from None

    async def fill(self, deadline: float) -> None:
        """Await more bytes until the loop time ``deadline``."""
        if self._reader is None:
            raise LinkDown("not open")
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise ReadTimeout(bytes(self.buf))
        try:
            # timeout_at, not wait_for: wait_for wraps the read in a new task (3.11).
            async with asyncio.timeout_at(deadline):
                chunk = await self._reader.read(1 << 16)
        except TimeoutError:
            raise ReadTimeout(bytes(self.buf)) from None
        except (ConnectionError, OSError) as exc:
            raise LinkDown(str(exc) or type(exc).__name__) from None
        if not chunk:
            raise LinkDown("peer closed the connection")
        self.buf += chunk

    def consume(self) -> None:
        """The reader succeeded: drop the bytes it read."""
        del self.buf[: self.pos]
        self.pos = 0

    # --- sync side (reader functions call these on buffered bytes) ---

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        i = self.buf.find(terminator, self.pos)
        if i < 0:
            raise NeedMore
        end = i + len(terminator)
        out = bytes(self.buf[self.pos : end])
        self.pos = end
        return out

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        if len(self.buf) - self.pos < count:
            raise NeedMore
        out = bytes(self.buf[self.pos : self.pos + count])
        self.pos += count
        return out

    def discard_input(self) -> None:
        self.buf.clear()
        self.pos = 0
        if self._reader is not None:
            # Bytes of a late reply already received by the loop are dropped too.
            buffered = getattr(self._reader, "_buffer", None)
            if isinstance(buffered, bytearray):
                buffered.clear()

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        """Not used: the session reconnects an async socket to resynchronise."""
        return 0

    # RawIO's blocking open/close/write are not used for an async-native backend.
    def open(self, timeout_s: float) -> None:
        raise NotImplementedError("AsyncSocketIO is opened with aopen()")

    def close(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        raise NotImplementedError("AsyncSocketIO is written with awrite()")
