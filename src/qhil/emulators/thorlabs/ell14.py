"""Emulated Thorlabs Elliptec ELL14 rotation mounts on one bus (docs/protocols/thorlabs-elliptec.md).

One emulator is one serial bus (RS-485 multidrop behind one USB adapter) with one or
more ELL14s at their addresses; each may turn a world ``waveplate`` (its ``angle_deg``
is the mount's angle from its mechanical home). Commands have no terminator: a message
is the address, a two-letter code and the code's fixed number of data characters
(``DATA_LENGTH``); only the addressed device answers, a command to an address nobody
has is met with silence. A move takes emulated time (the world's clock: instant in fast
mode, as long on the wall in realtime mode) at the ELL14's speed, and its ``PO`` reply
comes when the move has ended; the plate's new angle then applies to photons generated
from then on. An unknown command is answered ``GS03``; a value out of range ``GS04``;
an error status stays reported by ``gs`` until read once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from qhil.drivers.thorlabs.ell14 import ELL14, Address, DeviceInfo
from qhil.drivers.values import ValueTypeError
from qhil.emulators.base import Emulator, on
from qhil.emulators.framer import MessageFramer, Overrun

CRLF = "\r\n"
#: Pulses over the travel and the travel (deg) an ELL14 reports in IN ([S1] [S2]).
PULSES_PER_REV = 143360
TRAVEL_DEG = 360
#: Thorlabs ELL14 specification: maximum speed 430 deg/s; plus a settling time per move.
MAX_SPEED_DEG_S = 430.0
SETTLE_S = 0.05
#: Data characters after the address and code (none: a bare three-character command).
DATA_LENGTH = {"ma": 8, "mr": 8, "so": 8, "sj": 8, "sv": 2, "ca": 1, "ho": 1}
KNOWN_CODES = frozenset({"in", "gs", "gp", "go", "gj", "gv", "fw", "bw", "us", *DATA_LENGTH})
HEX = b"0123456789ABCDEFabcdef"
COMMAND_ERROR, OUT_OF_RANGE = 3, 4


class ElliptecFramer(MessageFramer):
    """Splits the command stream into messages. A message ends at a CR or LF that came
    with it (clients that terminate their commands: thorlabs-elliptec, tl-elliptec), else
    after its code's data length (clients that do not: pyLabLib, elliptec). Blanks and
    CR/LF between messages are skipped; after an unknown code the rest of what arrived with
    it is dropped (the device resynchronises on the next message)."""

    async def next(self) -> bytes | Overrun | None:
        while True:
            while self.buf and self.buf[0] in b" \t\r\n":
                del self.buf[0]
            if len(self.buf) < 3:
                if not await self._fill():
                    return None
                continue
            code = bytes(self.buf[1:3]).decode("ascii", "replace")
            if code not in KNOWN_CODES:
                msg = bytes(self.buf[:3])
                self.buf.clear()
                return msg
            ends = [i for i in (self.buf.find(b"\r"), self.buf.find(b"\n")) if i >= 0]
            need = min(ends) if ends else 3 + DATA_LENGTH.get(code, 0)
            if not ends and code == "ho" and (len(self.buf) < 4 or self.buf[3] not in b"01"):
                need = 3  # the direction is optional (linear stages home without one)
            if len(self.buf) < need:
                if not await self._fill():
                    return None
                continue
            msg = bytes(self.buf[:need])
            del self.buf[:need]
            return msg


@dataclass
class Mount:
    """One ELL14 on the bus."""

    serial: str
    component: str
    position: int = 0  # the encoder counter, pulses from home
    zero: int = 0  # where the counter reads 0, pulses from the mechanical index
    home_offset: int = 0
    jog_step: int = 398  # ~1 deg (our choice: the manual gives no power-on value)
    velocity: int = 100  # percent
    error: int = 0  # status still to report by gs


class ELL14Emulator(Emulator):
    driver = ELL14
    transport = "serial"

    def __init__(
        self, *, address: str = "0", devices: dict[str, str] | None = None, **kw: Any
    ) -> None:
        """``address``: the device wired to ``component``; ``devices``: further
        ``{address: component}`` on the same bus ("" for a mount turning nothing)."""
        addr = Address().validate
        self._layout = {addr(address): None, **{addr(a): c for a, c in (devices or {}).items()}}
        if len(self._layout) != 1 + len(devices or {}):
            raise ValueError(f"two devices at one address on the bus: {address!r}, {devices!r}")
        super().__init__(**kw)

    def power_on_state(self) -> None:
        self.mounts: dict[str, Mount] = {}
        for i, (addr, comp) in enumerate(self._layout.items()):
            component = self.component if comp is None else comp
            if self.world is not None and component:
                self.world.waveplate(component)  # a wrong name fails here, at bring-up
            self.mounts[addr] = Mount(serial=f"{11400500 + i}", component=component)
            self.mounts[addr].position = round(self._world_angle(addr) * self.pulses_per_deg)

    @property
    def pulses_per_deg(self) -> float:
        return PULSES_PER_REV / TRAVEL_DEG

    def _world_angle(self, addr: str) -> float:
        m = self.mounts[addr]
        if self.world is None or not m.component:
            return 0.0
        return float(self.world.waveplate(m.component).angle_deg)

    def framer(self, reader: asyncio.StreamReader) -> MessageFramer:
        return ElliptecFramer(reader, b"\r\n")

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        first = next(iter(self.mounts.values()))
        d["identity"] = f"Thorlabs,ELL14,{first.serial},17"
        d["addresses"] = sorted(self.mounts)
        return d

    def error_reply(self, message: bytes, code: int | str, text: str) -> bytes:
        addr = message[:1].decode("ascii", "replace").upper() or "0"
        value = code if isinstance(code, int) else COMMAND_ERROR
        if addr in self.mounts:
            self.mounts[addr].error = value
        return f"{addr}GS{value:02X}{CRLF}".encode()

    async def respond(self, message: bytes) -> bytes:
        text = message.decode("ascii", errors="replace")
        addr = text[:1].upper()
        if addr not in self.mounts:
            return b""  # nobody at that address: the bus stays silent
        if text[1:3] == "ho":
            # The direction: none (the default), one digit, or a byte as tl-elliptec sends it.
            direction = text[3:] or "0"
            text = text[:3] + (direction[-1] if direction in ("0", "1", "00", "01") else direction)
        found = self.find_route(text)
        if found is None:
            return self._fail(addr, COMMAND_ERROR)
        route, raw = found
        decl: Any = route.decl
        try:
            args = {k: route.template.fields[k].parse(v) for k, v in raw.items() if k != "address"}
            for k, v in args.items():
                route.template.fields[k].validate(v)
            reply = route.handler(self, self.mounts[addr], **args)
            if asyncio.iscoroutine(reply):
                reply = await reply
        except (ValueTypeError, ValueError):
            return self._fail(addr, OUT_OF_RANGE)
        if route.kind == "get":
            reply = decl.reply_template.emit(address=addr, value=reply)
        elif reply is None:  # a setting: status OK
            reply = f"{addr}GS00"
        return (reply + CRLF).encode()

    def _fail(self, addr: str, code: int) -> bytes:
        self.mounts[addr].error = code
        return f"{addr}GS{code:02X}{CRLF}".encode()

    # --- motion ---

    async def _move_to(self, m: Mount, target: int, zero: int | None = None) -> str:
        """Turn until the counter reads ``target`` pulses (counted from ``zero``, the
        physical pulses of counter 0: home), taking the move's emulated time; ``PO``."""
        addr = next(a for a, x in self.mounts.items() if x is m)
        zero = m.zero if zero is None else zero
        target = max(min(target, 2**31 - 1), -(2**31))
        distance_deg = abs(zero + target - m.zero - m.position) / self.pulses_per_deg
        if self.world is not None:
            speed = MAX_SPEED_DEG_S * max(m.velocity, 1) / 100.0
            await self.world.clock.elapse(SETTLE_S + distance_deg / speed)
        m.zero, m.position = zero, target
        if self.world is not None and m.component:
            angle = ((m.zero + m.position) / self.pulses_per_deg) % TRAVEL_DEG
            self.world.waveplate(m.component).angle_deg = angle
        return f"{addr}PO{m.position & 0xFFFFFFFF:08X}"

    # --- handlers: a get returns the value; a setting None (GS00); a move its PO line ---

    @on("info.get")
    def _in(self, m: Mount) -> DeviceInfo:
        return DeviceInfo(14, m.serial, 2024, 0x17, False, 1, TRAVEL_DEG, PULSES_PER_REV)

    @on("status.get")
    def _gs(self, m: Mount) -> int:
        code, m.error = m.error, 0
        return code

    @on("position.get")
    def _gp(self, m: Mount) -> int:
        return m.position

    @on("home_offset.get")
    def _go(self, m: Mount) -> int:
        return m.home_offset

    @on("home_offset.set")
    def _so(self, m: Mount, value: int) -> None:
        m.home_offset = value

    @on("jog_step.get")
    def _gj(self, m: Mount) -> int:
        return m.jog_step

    @on("jog_step.set")
    def _sj(self, m: Mount, value: int) -> None:
        m.jog_step = value

    @on("velocity.get")
    def _gv(self, m: Mount) -> int:
        return m.velocity

    @on("velocity.set")
    def _sv(self, m: Mount, value: int) -> None:
        m.velocity = value

    @on("go_home")
    async def _ho(self, m: Mount, direction: int) -> str:
        # Home is the mechanical index plus the home offset; the counter reads 0 there.
        return await self._move_to(m, 0, zero=m.home_offset)

    @on("move_absolute")
    async def _ma(self, m: Mount, value: int) -> str:
        return await self._move_to(m, value)

    @on("move_relative")
    async def _mr(self, m: Mount, value: int) -> str:
        return await self._move_to(m, m.position + value)

    @on("forward")
    async def _fw(self, m: Mount) -> str:
        return await self._move_to(m, m.position + m.jog_step)

    @on("backward")
    async def _bw(self, m: Mount) -> str:
        return await self._move_to(m, m.position - m.jog_step)

    @on("save_user_data")
    def _us(self, m: Mount) -> None:
        return None

    @on("change_address")
    def _ca(self, m: Mount, new: str) -> str:
        old = next(a for a, x in self.mounts.items() if x is m)
        if new != old and new in self.mounts:
            raise ValueError(f"address {new} is taken")
        self.mounts = {(new if a == old else a): x for a, x in self.mounts.items()}
        return f"{new}GS00"
