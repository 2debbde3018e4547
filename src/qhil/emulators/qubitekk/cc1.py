"""Emulated Qubitekk CC1 coincidence counter (protocol: docs/protocols/qubitekk-cc1.md).

Two firmware dialects, chosen by the ``firmware`` option: ``"2.010"`` (default,
new dialect: ``:GATE:ON``, ``MODE CONT``, dwell read back in seconds, command echo
on at power-up until ``:ACKN OF``) and e.g. ``"2.001"`` (old dialect: ``:GATE 1``,
``TRIG?`` -> ``0``/``1``, dwell read back in ms, ``:ACKN OF`` -> ``Unknown Command``).
Each dialect answers the other's setter syntax with ``Unknown Command`` (our choice;
the sources only show each client speaking its own dialect).

Counting: the instrument latches its counters at the end of every dwell period;
``COUN:C1?``/``C2?``/``CO?`` read the last complete period. Input clicks come from
the world's detectors wired to the two inputs (``inputs`` option); a coincidence is
``|t2 - (t1 + delay)| <= window``. In realtime mode the periods follow the clock.
In fast mode time only moves when someone acquires, so a period is acquired when a
client asks for a register it has already read from the latched period (or for the
first time): reading C1, C2, CO gives one consistent period, reading C1 again the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from qhil.drivers.qubitekk.cc1 import (
    CC1,
    FIRMWARE_PREFIX,
    NEW_DIALECT_FROM,
    UNABLE_TO_COMPLY,
    UNKNOWN_COMMAND,
    parse_firmware,
)
from qhil.drivers.values import ValueTypeError
from qhil.emulators.base import Emulator, Raw, on
from qhil.emulators.framer import Overrun
from qhil.numerics.timing.coincidences import count_coincidences

_REGISTERS = {1: 0, 2: 1, "coincidences": 2}
#: A gap between the reader's cursor and a wanted period longer than this is skipped
#: (re-aligning the periods) instead of being generated and thrown away.
_MAX_SKIP_S = 2.0


class CommandRefused(Exception):
    """The command is not understood (``Unknown Command``) or not possible now."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class CC1Emulator(Emulator):
    driver = CC1
    transport = "serial"
    input_terminators = b"\n"

    def __init__(
        self,
        *,
        firmware: str = "2.010",
        inputs: Sequence[str] | None = None,
        **kw: Any,
    ) -> None:
        self.firmware = firmware
        self.version = parse_firmware(FIRMWARE_PREFIX + firmware)
        component = str(kw.get("component", ""))
        if inputs is None and "," in component:
            inputs = [c.strip() for c in component.split(",")]
        if inputs is not None and len(inputs) != 2:
            raise ValueError(f"CC1 has two inputs; got {list(inputs)!r}")
        self.inputs = list(inputs) if inputs is not None else []
        self._reader: Any = None
        super().__init__(**kw)

    @property
    def new_dialect(self) -> bool:
        return self.version[:2] >= NEW_DIALECT_FROM

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["identity"] = f"Qubitekk,CC1,,{self.firmware}"
        return d

    def power_on_state(self) -> None:
        # UNVERIFIED defaults (no manual): window 7 ns, delay 0, dwell 1 s, all off.
        self.ack = self.new_dialect
        self.window_ns = 7
        self.delay_ns = 0
        self.dwell_s = 1.0
        self.gate = False
        self.subtract = False
        self.trigger_start_stop = False
        self._restart_periods()

    # --- the wire ---

    def error_reply(self, message: bytes, code: int | str, text: str) -> bytes:
        return self._frame(message.decode("ascii", "replace").strip(), [str(code)])

    def input_overrun(self, overrun: Overrun) -> bytes:
        # Our choice (no source says): the cut-off line is refused as an unknown command.
        return self._frame("", [UNKNOWN_COMMAND], echo=False)

    def _frame(self, command: str, lines: list[str], *, echo: bool | None = None) -> bytes:
        if self.ack if echo is None else echo:
            lines = [command, *lines]
        return "".join(line + "\n" for line in lines).encode("ascii")

    async def respond(self, message: bytes) -> bytes:
        command = message.decode("ascii", errors="replace").strip()
        echo = self.ack  # an ACKN change takes effect after this exchange
        found = self.find_route(command)
        try:
            if found is None:
                raise CommandRefused(UNKNOWN_COMMAND)
            route, raw = found
            parsed = {}
            for k, v in raw.items():
                vt = route.decl.value if k == "value" else route.decl.args[k]  # type: ignore[attr-defined]
                try:
                    parsed[k] = vt.validate(vt.parse(v))
                except (ValueTypeError, ValueError):
                    raise CommandRefused(UNABLE_TO_COMPLY) from None
            result = route.handler(self, **parsed)
            if hasattr(result, "__await__"):
                result = await result
        except CommandRefused as exc:
            return self._frame(command, [exc.line], echo=echo)
        if route.kind != "get":
            return self._frame(command, [], echo=echo)
        if not isinstance(result, Raw):
            result = route.decl.reply_template.emit(value=result)  # type: ignore[attr-defined]
        return self._frame(command, [str(result)], echo=echo)

    def _need(self, new: bool) -> None:
        if new != self.new_dialect:
            raise CommandRefused(UNKNOWN_COMMAND)

    # --- handlers ---

    @on("acknowledge.set")
    def _ackn(self, value: bool) -> None:
        self._need(True)
        self.ack = value

    @on("firmware.get")
    def _firm(self) -> str:
        return self.firmware

    @on("window_ns.get")
    def _wind_q(self) -> int:
        return self.window_ns

    @on("window_ns.set")
    def _wind(self, value: int) -> None:
        self.window_ns = value

    @on("delay_ns.get")
    def _dela_q(self) -> int:
        return self.delay_ns

    @on("delay_ns.set")
    def _dela(self, value: int) -> None:
        self.delay_ns = value

    @on("dwell_s.get")
    def _dwel_q(self) -> Raw:
        # Old firmware reports milliseconds although the setting is in seconds.
        value = self.dwell_s if self.new_dialect else self.dwell_s * 1000.0
        return Raw(f"{value:g}")

    @on("dwell_s.set")
    def _dwel(self, value: float) -> None:
        self.dwell_s = value
        self._restart_periods()

    @on("gate.get")
    def _gate_q(self) -> Raw:
        return self._bool(self.gate)

    @on("gate.set")
    def _gate(self, value: bool) -> None:
        self._need(True)
        self.gate = value

    @on("gate_legacy.set")
    def _gate_old(self, value: bool) -> None:
        self._need(False)
        self.gate = value

    @on("subtract.get")
    def _subt_q(self) -> Raw:
        return self._bool(self.subtract)

    @on("subtract.set")
    def _subt(self, value: bool) -> None:
        self._need(True)
        self.subtract = value

    @on("subtract_legacy.set")
    def _subt_old(self, value: bool) -> None:
        self._need(False)
        self.subtract = value

    @on("trigger_mode.get")
    def _trig_q(self) -> Raw:
        if self.new_dialect:
            return Raw("MODE STOP" if self.trigger_start_stop else "MODE CONT")
        return Raw("1" if self.trigger_start_stop else "0")

    @on("trigger_mode.set")
    def _trig(self, value: str) -> None:
        self._need(True)
        self.trigger_start_stop = value == "start_stop"

    @on("trigger_mode_legacy.set")
    def _trig_old(self, value: str) -> None:
        self._need(False)
        self.trigger_start_stop = value == "start_stop"

    @on("clear_counts")
    def _clea(self) -> None:
        self._restart_periods()

    @on("count.get")
    async def _count(self, channel: Any) -> int:
        return await self._register(_REGISTERS[channel])

    def _bool(self, value: bool) -> Raw:
        if self.new_dialect:
            return Raw("ON" if value else "OFF")
        return Raw("1" if value else "0")

    # --- counting against the world ---

    def _restart_periods(self) -> None:
        """Counters cleared: a new run of dwell periods starts now."""
        self.latched = (0, 0, 0)
        self.latched_index = -1
        self.read_since_latch: set[int] = set()
        self.origin_s = 0.0
        if self.world is None or len(self.inputs) != 2:
            return
        if self._reader is None:
            self._reader = self.world.click_reader(self.inputs)
        self._reader.seek_now()
        self.origin_s = self._cursor_s = float(self.world.clock.now_s)

    async def _register(self, index: int) -> int:
        if self.world is None or self._reader is None:
            return 0  # nothing wired to the inputs
        d = self.dwell_s
        k_done = math.floor((self.world.clock.now_s - self.origin_s) / d + 1e-9) - 1
        if self.world.clock.mode == "realtime":
            target = k_done
        elif self.latched_index < 0:
            target = max(k_done, 0)
        elif index in self.read_since_latch:  # a re-read means the client waited a period
            target = max(k_done, self.latched_index + 1)
        else:
            target = max(k_done, self.latched_index)
        if target > self.latched_index:
            await self._latch(target)
        self.read_since_latch.add(index)
        return self.latched[index]

    async def _latch(self, k: int) -> None:
        d = self.dwell_s
        start = self.origin_s + k * d
        gap = start - self._cursor_s
        if gap > _MAX_SKIP_S:
            # Long idle: re-align the periods so that period k starts now.
            self._reader.seek_now()
            self._cursor_s = float(self.world.clock.now_s)
            self.origin_s = self._cursor_s - k * d
        elif gap > 1e-12:
            await self._reader.read_async(gap)
            self._cursor_s += gap
        block = await self._reader.read_async(d)
        self._cursor_s += d
        t1, t2 = _input_times(block, 2)
        s1, s2 = int(t1.size), int(t2.size)
        co = 0
        if self.window_ns > 0:
            co = count_coincidences(
                t1, t2, 2 * self.window_ns * 1000, self.delay_ns * 1000, check_sorted=False
            )
            if self.subtract:
                # Accidentals of two independent streams in a window of full width 2w.
                acc = s1 * s2 * 2 * self.window_ns * 1e-9 / d
                co = max(0, round(co - acc))
        self.latched = (s1, s2, co)
        self.latched_index = k
        self.read_since_latch = set()


def _input_times(block: Any, n: int) -> list[np.ndarray[Any, np.dtype[np.int64]]]:
    """Sorted click times (ps) of each input from a click-reader block."""
    ts = np.asarray(block.timestamps_ps, dtype=np.int64)
    idx = np.asarray(block.channels)
    return [np.sort(ts[idx == i]) for i in range(n)]
