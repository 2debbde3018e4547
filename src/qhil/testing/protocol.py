"""Byte-exact protocol tests, in the spirit of InstrumentKit's ``expected_protocol``.

A :class:`ProtocolCase` is a driver call and the exact bytes it must exchange.
The same case runs two ways: against the driver (a replay peer checks every
byte the driver writes and answers with the documented reply) and against the
emulator (fed the documented command bytes, it must answer the documented
reply bytes). So driver and emulator are held to one written protocol.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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


async def run_on_emulator(emulator: Emulator, exchanges: Sequence[tuple[bytes, bytes]]) -> None:
    """Feed each documented command to the emulator; its reply must be byte-identical."""
    terms = emulator.input_terminators or emulator.framing.write_term_bytes[-1:]
    for out, expected in exchanges:
        command = (
            out.rstrip(b"\r\n")
            if terms in (b"\r\n", b"\n\r")
            else out[: -len(terms)]
            if out.endswith(terms)
            else out
        )
        reply = await emulator.respond(command)
        if reply != expected:
            raise AssertionError(
                f"{type(emulator).__name__} answered {out!r} with {reply!r}, documented {expected!r}"
            )
