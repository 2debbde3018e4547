"""Emulators bound their input as the instruments' input buffers do (issue 14, item 11).

A command longer than the input buffer, or a block header that promises more than the
instrument takes, is answered with the instrument's own error at once and dropped up to
its terminator; the emulator keeps answering afterwards, and never holds more than its
buffer (plus one read) of the flood.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from qhil.emulators.base import Emulator
from qhil.emulators.framer import Overrun
from qhil.emulators.hp.hp8156a import HP8156AEmulator
from qhil.emulators.keysight.ks33500b import Keysight33500BEmulator
from qhil.emulators.ozoptics.epc400 import EPC400Emulator
from qhil.emulators.qhil.qmc import QMCEmulator
from qhil.emulators.qubitekk.cc1 import CC1Emulator
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.sfifteen.spd import SPDEmulator
from qhil.emulators.sfifteen.spdc import SPDCSourceEmulator
from qhil.emulators.sfifteen.tdc1 import TDC1Emulator
from qhil.emulators.singlequantum.eos import EosEmulator
from qhil.testing import run_on_emulator

#: Per emulator: a probe command and how the instrument reports the overrun (None: SCPI,
#: nothing sent back, -363 queued).
KINDS: dict[str, tuple[Callable[[], Emulator], bytes, bytes | None]] = {
    "tsl570-scpi-cr": (TSL570Emulator, b"*IDN?\r", None),
    "hp8156a-scpi-lf": (HP8156AEmulator, b"*IDN?\n", None),
    "qmc-scpi-lf": (QMCEmulator, b"*IDN?\n", None),
    "epc400-crlf": (EPC400Emulator, b"V?\r\n", b"Error!\r\n"),
    "cc1-lf": (CC1Emulator, b"FIRM?\n", b"Unknown Command\n"),
    "spd-semicolon": (SPDEmulator, b"*idn?;", b"Unknown command\r\n"),
    "spdc-semicolon": (SPDCSourceEmulator, b"*IDN?;", b"Unknown command\r\n"),
    "tdc1-semicolon": (TDC1Emulator, b"*IDN?;", b""),  # it ignores what it does not know
    "eos-json": (
        EosEmulator,
        b'{"request": "labelProps", "value": "None"}',
        b'{"label": "Error", "value": "Input buffer overrun"}\x17',
    ),
}


def _flood(emu: Emulator, size: int) -> tuple[bytes, bytes]:
    """``size`` bytes of one unterminated command, and what ends it."""
    if isinstance(emu, EosEmulator):  # one JSON object that never closes (until its end)
        return b'{"request": "' + b"x" * size, b'"}'
    return b"A" * size, (emu.input_terminators or emu.framing.write_term_bytes)[:1]


class _Flood:
    """A reader that delivers the flood in 64 KiB reads and watches how much the framer
    holds at every read."""

    def __init__(self, parts: list[bytes], framer_buf: Callable[[], int]) -> None:
        self.parts = parts
        self.framer_buf = framer_buf
        self.most_held = 0

    async def read(self, n: int = -1) -> bytes:
        self.most_held = max(self.most_held, self.framer_buf())
        while self.parts and not self.parts[0]:
            self.parts.pop(0)
        if not self.parts:
            return b""
        part = self.parts[0]
        n = len(part) if n < 0 else n
        self.parts[0] = part[n:]
        return part[:n]


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_flood_without_terminator_is_held_within_the_input_buffer(kind: str) -> None:
    make, probe, _ = KINDS[kind]
    emu = make()
    bound = emu.input_buffer_bytes
    head, end = _flood(emu, 16 << 20)  # 16 MiB, 4096 times the buffer
    framer: Any = None
    flood = _Flood([head, end + probe], lambda: len(framer.buf))
    framer = emu.framer(cast(asyncio.StreamReader, flood))
    first = await framer.next()
    assert isinstance(first, Overrun) and first.what == "line"
    assert (await framer.next()) == probe.strip(b"\r\n;")
    assert (await framer.next()) is None
    assert flood.most_held <= bound + (1 << 16)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_an_overrun_is_the_instruments_error_and_it_answers_afterwards(kind: str) -> None:
    make, probe, reply = KINDS[kind]
    expected = await make().respond(probe.strip(b"\r\n;"))
    assert expected
    emu = make()
    head, end = _flood(emu, 4 * emu.input_buffer_bytes)
    exchanges = [(head + end, reply or b""), (probe, expected)]
    if reply is None:  # SCPI: the error is queued, in the standard's words
        term = emu.framing.write_term_bytes
        exchanges += [
            (b"SYST:ERR?" + term, b'-363,"Input buffer overrun"' + term),
            (b"SYST:ERR?" + term, b'0,"No error"' + term),
        ]
    await run_on_emulator(emu, exchanges, timeout_s=10)


async def test_a_command_just_within_the_buffer_is_taken() -> None:
    emu = TSL570Emulator()
    pad = b" " * (emu.input_buffer_bytes - len(b"*IDN?"))  # whitespace counts, as it would
    await run_on_emulator(emu, [(pad + b"*IDN?\r", await emu.respond(b"*IDN?"))])


@pytest.mark.parametrize(
    ("make", "declared"),
    [
        (TSL570Emulator, b"#9999999999"),  # a laser takes no blocks beyond its buffer
        (Keysight33500BEmulator, b"#9" + str(4 * (16 << 20) + 1).rjust(9, "0").encode()),
    ],
)
async def test_a_block_header_promising_too_much_is_refused_at_once(
    make: Callable[[], Emulator], declared: bytes
) -> None:
    """-223 Too much data, without waiting for the bytes the header promises."""
    emu = make()
    term = emu.framing.write_term_bytes
    no_error = await make().respond(b"SYST:ERR?")
    await run_on_emulator(
        emu,
        [
            (b"DATA:ARB:DAC x," + declared + b"\x00\x01" + term, b""),
            (b"SYST:ERR?" + term, b'-223,"Too much data"' + term),
            (b"SYST:ERR?" + term, no_error),
        ],
        timeout_s=10,
    )


async def test_eos_leading_separators_do_not_count_against_the_object() -> None:
    from qhil.emulators.singlequantum.eos import JsonObjectFramer

    reader = asyncio.StreamReader()
    reader.feed_data(b" " * 20 + b'{"b":1}')
    reader.feed_eof()
    framer = JsonObjectFramer(reader, max_bytes=10)
    assert await framer.next() == b'{"b":1}'


async def test_a_whole_buffered_block_over_max_block_is_refused() -> None:
    from qhil.emulators.framer import MessageFramer

    reader = asyncio.StreamReader()
    reader.feed_data(b"X #210" + b"0123456789" + b"\nY\n")
    reader.feed_eof()
    framer = MessageFramer(reader, b"\n", blocks=True, max_line=100, max_block=5)
    assert await framer.next() == Overrun("block", 10)
    assert await framer.next() == b"Y"
