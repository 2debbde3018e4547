"""Byte-exact protocol tests, in the spirit of InstrumentKit's ``expected_protocol``.

A :class:`ProtocolCase` is a driver call and the exact bytes it must exchange.
The same case runs two ways: against the driver (a replay peer checks every
byte the driver writes and answers with the documented reply) and against the
emulator (sent the documented command bytes through its own framer, as on the
wire, it must answer the documented reply bytes). So driver and emulator are
held to one written protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from qhil.drivers.instrument import Instrument
from qhil.emulators.base import Emulator
from qhil.transport.replay import ReplayIO

D = TypeVar("D", bound=Instrument)


@dataclass(frozen=True)
class ProtocolCase:
    """One documented exchange: what the driver call sends and what comes back."""

    id: str
    call: Callable[[Any], Awaitable[Any]]
    exchanges: Sequence[tuple[bytes, bytes]]
    result: Any = None
    #: False where the reply depends on the emulated physics (noise), not the protocol.
    emulator_exact: bool = True


@contextlib.asynccontextmanager
async def expected_protocol(
    driver_cls: type[D], exchanges: Sequence[tuple[bytes, bytes]], *, connect: bool = False
) -> AsyncIterator[D]:
    """A driver whose peer insists on exactly ``exchanges``; checked on exit."""
    io = ReplayIO(exchanges)
    drv = driver_cls.open("REPLAY::INSTR", io=io)
    if connect:
        await drv.connect()
    else:
        await drv.session.open()
    try:
        yield drv
    finally:
        await drv.close()
    io.assert_complete()


async def run_on_emulator(
    emulator: Emulator, exchanges: Sequence[tuple[bytes, bytes]], *, timeout_s: float = 30.0
) -> None:
    """Send each documented command on one connection to the emulator; the bytes that come
    back must be the documented reply, byte for byte.

    The commands go through the emulator's own framer and serve loop, as on the wire, so
    framing (terminators, binary blocks, whitespace) is tested too; faults set on the
    emulator take effect. A command without its terminator gets the driver's. A reply
    is complete when the emulator waits for input again and has sent at least as many
    bytes as documented (a stream may arrive after its command was read).
    """
    name = type(emulator).__name__
    wire = _Wire()
    sink = _Sink()
    serving = asyncio.create_task(emulator.serve(wire.as_reader(), sink))
    try:
        for out, expected in exchanges:
            if serving.done():
                serving.result()  # an exception in the emulator surfaces here
                raise AssertionError(f"{name} closed the connection before {out!r}")
            wire.feed(_terminated(emulator, out))
            await _settle(wire, sink, serving, len(expected), timeout_s)
            reply = sink.take()
            if reply != expected:
                raise AssertionError(
                    f"{name} answered {out!r} with {reply!r}, documented {expected!r}"
                )
        wire.feed_eof()  # hang up; the emulator's serve loop must end cleanly
        await asyncio.wait_for(serving, timeout_s)
    finally:
        if not serving.done():
            serving.cancel()
            with contextlib.suppress(BaseException):
                await serving


def _terminated(emulator: Emulator, out: bytes) -> bytes:
    terms = emulator.input_terminators or emulator.framing.write_term_bytes[-1:]
    if not out or out[-1] in terms:
        return out
    own = emulator.framing.write_term_bytes
    return out + (own if own and own[-1] in terms else terms[:1])


async def _settle(wire: _Wire, sink: _Sink, serving: asyncio.Task[None], size: int,
                  timeout_s: float) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = asyncio.ensure_future(wire.waiting.wait())
    try:
        await asyncio.wait({waiting, serving}, timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        waiting.cancel()
    while len(sink.data) < size and not serving.done():
        sink.grew.clear()
        try:
            await asyncio.wait_for(sink.grew.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return


class _Wire:
    """The emulator's end of a test connection: bytes fed by the test, read on demand.

    ``waiting`` is set while the emulator has read everything fed and asks for more.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._more = asyncio.Event()
        self.waiting = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self._buf += data
        self.waiting.clear()
        self._more.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._more.set()

    async def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            self._more.clear()
            self.waiting.set()
            await self._more.wait()
        self.waiting.clear()
        n = len(self._buf) if n < 0 else n
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def as_reader(self) -> asyncio.StreamReader:
        return cast(asyncio.StreamReader, self)


class _Sink:
    """The emulator's output on a test connection."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.grew = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data
        self.grew.set()

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out
