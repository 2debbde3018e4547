"""Qubitekk CC1 two-channel coincidence counter (USB serial 19200 8N1, ``\\n`` both ways).

Protocol: docs/protocols/qubitekk-cc1.md. Two firmware dialects exist; the driver
asks ``FIRM?`` at connect and picks one:

* firmware >= 2.2 ("new"): ``:GATE:ON``, ``:SUBT:OFF``, ``:TRIG:MODE CONT``;
  ``GATE?`` answers ``ON``/``OFF``, ``DWEL?`` answers seconds; ``:ACKN OF``
  switches the command echo (acknowledgement) off.
* older firmware: ``:GATE 1``, ``:TRIG 0``; ``GATE?`` answers ``1``/``0`` and
  ``DWEL?`` answers milliseconds although it is set in seconds; ``:ACKN OF`` is
  answered ``Unknown Command``.

Setters are never acknowledged (echo off), so the instrument's error lines
(``Unknown Command``, ``Unable to comply``) are collected by a ``FIRM?``
round trip after each setting: every line before the firmware line is an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.instrument import Instrument
from qhil.drivers.values import Bool, Enum, Float, Int, Str
from qhil.errors import InstrumentError, ProtocolError
from qhil.transport.framing import Framing, SerialSettings
from qhil.transport.session import Reader, Session

UNKNOWN_COMMAND = "Unknown Command"
UNABLE_TO_COMPLY = "Unable to comply"
#: Error lines the CC1 prints instead of a reply (spelling varies between sources).
ERROR_LINES = (UNKNOWN_COMMAND.lower(), UNABLE_TO_COMPLY.lower())
FIRMWARE_PREFIX = "Firmware v"
#: First firmware with the new dialect (InstrumentKit: major >= 2 and minor > 1).
NEW_DIALECT_FROM = (2, 2)
#: Lines read at most while looking for the firmware line (echo, error lines).
_MAX_PRELUDE_LINES = 8


def parse_firmware(reply: str) -> tuple[int, int, int]:
    """``Firmware v2.010`` -> (2, 10, 0), padded to three numbers as InstrumentKit does."""
    if not reply.startswith(FIRMWARE_PREFIX):
        raise ValueError(f"{reply!r} is not a firmware line")
    parts = [int(p) for p in reply[len(FIRMWARE_PREFIX) :].split(".")]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def is_error_line(line: str) -> bool:
    return line.strip().lower() in ERROR_LINES


@dataclass(frozen=True)
class CoincidenceCounts:
    """One dwell period of the CC1: singles of inputs 1 and 2 and their coincidences."""

    singles: tuple[int, int]
    coincidences: int
    dwell_s: float


class CC1(Instrument):
    """Qubitekk CC1 coincidence counter (role: a two-channel counter with coincidences)."""

    framing: ClassVar[Framing] = Framing("\n", "\n", serial=SerialSettings(baudrate=19200))
    model: ClassVar[str] = "CC1"
    timeout_s: ClassVar[float] = 1.0
    channels: int = 2

    acknowledge = Control(
        set=":ACKN {value}",
        value=Bool(true="ON", false="OF"),
        doc="Command echo (firmware >= 2.2): every command is echoed before its reply.",
        check_errors=False,
    )
    firmware = Measurement(
        "FIRM?",
        value=Str(r"\d+(?:\.\d+)*"),
        reply=FIRMWARE_PREFIX + "{value}",
        doc="Firmware version text, e.g. '2.010'.",
    )
    count = Measurement(
        "COUN:{channel}?",
        args={"channel": Enum({1: "C1", 2: "C2", "coincidences": "CO"})},
        value=Int(0),
        doc="Counts of input 1, input 2 or coincidences over the last complete dwell period.",
    )
    window_ns = Control(
        get="WIND?",
        set=":WIND {value}",
        value=Int(0, 7, units="ns"),
        doc="Coincidence window: the largest |t2 - (t1 + delay)| counted, 0..7 ns.",
    )
    delay_ns = Control(
        get="DELA?",
        set=":DELA {value}",
        value=Int(0, 14, step=2, units="ns"),
        doc="Delay added to input 1, 0..14 ns in steps of 2 ns.",
    )
    dwell_s = Control(
        get="DWEL?",
        set=":DWEL {value}",
        # 1 ms resolution (old firmware reports ms); the upper bound is our choice (UNVERIFIED).
        value=Float(0.001, 3600.0, fmt="{:g}", units="s"),
        doc="Dwell time: counters are latched and cleared at the end of every period. "
        "Old firmware reports it in ms (see dwell_time_s()).",
    )
    gate = Control(
        get="GATE?",
        set=":GATE:{value}",
        value=Bool(true="ON", false="OFF"),
        doc="Gate counting with the third input (firmware >= 2.2 syntax).",
    )
    gate_legacy = Control(
        set=":GATE {value}", value=Bool(), doc="Gate counting (firmware < 2.2 syntax)."
    )
    subtract = Control(
        get="SUBT?",
        set=":SUBT:{value}",
        value=Bool(true="ON", false="OFF"),
        doc="Subtract estimated accidental coincidences (firmware >= 2.2 syntax).",
    )
    subtract_legacy = Control(
        set=":SUBT {value}", value=Bool(), doc="Accidental subtraction (firmware < 2.2 syntax)."
    )
    trigger_mode = Control(
        get="TRIG?",
        set=":TRIG:{value}",
        value=Enum({"continuous": "MODE CONT", "start_stop": "MODE STOP"}),
        doc="Continuous counting or start/stop on the trigger input (firmware >= 2.2).",
    )
    trigger_mode_legacy = Control(
        set=":TRIG {value}",
        value=Enum({"continuous": "0", "start_stop": "1"}),
        doc="Trigger mode, firmware < 2.2 syntax (TRIG? answers 0/1 there).",
    )
    clear_counts = Action("CLEA", doc="Clear the counters; a new dwell period starts.")

    def __init__(self, session: Session, *, name: str | None = None) -> None:
        super().__init__(session, name=name)
        self.firmware_version: tuple[int, int, int] = (0, 0, 0)
        self._dwell_cache: float | None = None

    @property
    def new_dialect(self) -> bool:
        # Unlike InstrumentKit's test (minor > 1 for any major), firmware 3.0 counts as new.
        return self.firmware_version[:2] >= NEW_DIALECT_FROM

    # --- connection and the CC1's message conventions ---

    async def on_connect(self) -> None:
        """``:ACKN OF`` then ``FIRM?``, as InstrumentKit does, without waiting on a timeout.

        ``:ACKN OF`` is answered by its own echo (acks were on), by ``Unknown Command``
        (firmware < 2.2) or by nothing (acks already off), so both commands go out
        together and every line before the firmware line is skipped.
        """
        ack_off = _template(self, "acknowledge", "set").render(value=False)
        firm = _template(self, "firmware", "get").render()
        payload = (firm + self.framing.write_termination).encode(self.framing.encoding)
        lines = await self.session.transaction(ack_off, _until_firmware, payload=payload)
        assert lines is not None
        self._set_firmware(lines[-1])
        self._dwell_cache = None

    def _set_firmware(self, line: str) -> None:
        try:
            self.firmware_version = parse_firmware(line)
        except ValueError:
            raise ProtocolError(self.resource, "FIRM?", line, "'Firmware v<n>.<m>'") from None

    async def ask(self, command: str) -> str:
        def read(r: Reader) -> str:
            line = r.line()
            if line == command:  # acknowledgements were switched back on: skip the echo
                line = r.line()
            return line

        reply = await self.session.transaction(command, read)
        assert reply is not None
        if is_error_line(reply):
            raise InstrumentError(self.resource, reply.strip(), reply.strip(), command)
        return reply

    async def check_errors(self, command: str | None = None) -> None:
        """Synchronise with ``FIRM?``; error lines printed before its reply are raised."""
        firm = _template(self, "firmware", "get").render()
        lines = await self.session.transaction(firm, _until_firmware)
        assert lines is not None
        errors = [line.strip() for line in lines[:-1] if is_error_line(line)]
        if errors:
            raise InstrumentError(self.resource, errors[0], " / ".join(errors), command)

    async def identity(self) -> str:
        version = await self.firmware.get()
        return f"Qubitekk,CC1,,{version}"

    # --- dialect-aware settings ---

    async def set_gate(self, enabled: bool) -> None:
        await (self.gate if self.new_dialect else self.gate_legacy).set(enabled)

    async def set_subtract_accidentals(self, enabled: bool) -> None:
        await (self.subtract if self.new_dialect else self.subtract_legacy).set(enabled)

    async def set_trigger_mode(self, mode: str) -> None:
        await (self.trigger_mode if self.new_dialect else self.trigger_mode_legacy).set(mode)

    async def trigger_mode_setting(self) -> str:
        if self.new_dialect:
            return str(await self.trigger_mode.get())
        reply = await self.ask(_template(self, "trigger_mode", "get").render())
        try:
            return str(type(self).trigger_mode_legacy.value.parse(reply))
        except ValueError:
            raise ProtocolError(self.resource, "TRIG?", reply, "0 or 1") from None

    async def dwell_time_s(self) -> float:
        """Dwell time in seconds (old firmware reports milliseconds)."""
        value = await self.dwell_s.get()
        return value if self.new_dialect else value / 1000.0

    async def set_dwell_time_s(self, seconds: float) -> None:
        await self.dwell_s.set(seconds)
        self._dwell_cache = float(seconds)

    # --- counting ---

    async def acquire(self, integration_s: float) -> CoincidenceCounts:
        """Counts of one fresh dwell period of ``integration_s``.

        Sets the dwell time (if it changed), clears the counters, which starts a new
        period (UNVERIFIED: the protocol sources do not say whether CLEA restarts the
        period; we assume so), waits one period and reads the three latched registers
        as one locked unit.
        """
        _template(self, "dwell_s", "set").render(value=integration_s)  # validate before sending
        seconds = float(integration_s)
        if self._dwell_cache != seconds:
            await self.set_dwell_time_s(seconds)
        async with self.session.locked():
            await self.clear_counts()
            await asyncio.sleep(seconds * 1.02 + 0.01)
            c1 = await self.count.get(channel=1)
            c2 = await self.count.get(channel=2)
            co = await self.count.get(channel="coincidences")
        return CoincidenceCounts((c1, c2), co, seconds)

    async def counts(self, integration_s: float) -> list[int]:
        """Singles of inputs 1 and 2 over one dwell period of ``integration_s``."""
        return list((await self.acquire(integration_s)).singles)

    async def coincidences(self, integration_s: float) -> int:
        """Coincidences between inputs 1 and 2 over one dwell period of ``integration_s``."""
        return (await self.acquire(integration_s)).coincidences


def _until_firmware(r: Reader) -> list[str]:
    lines: list[str] = []
    for _ in range(_MAX_PRELUDE_LINES):
        lines.append(r.line())
        if lines[-1].startswith(FIRMWARE_PREFIX):
            return lines
    raise ProtocolError("CC1", "FIRM?", " / ".join(lines), f"a line starting {FIRMWARE_PREFIX!r}")


def _template(drv: Instrument, name: str, kind: str) -> Any:
    decl = getattr(type(drv), name)
    t = decl.get_template if kind == "get" else decl.set_template
    assert t is not None
    return t
