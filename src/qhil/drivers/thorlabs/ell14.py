"""Thorlabs Elliptec ELL14 rotation mount (serial 9600 8N1, the Elliptec ASCII protocol).

Protocol: docs/protocols/thorlabs-elliptec.md. A command is the device's address
(one hex digit ``0``-``F``), a two-letter lower-case code and fixed-length data, with
no terminator; every command is answered by the addressed device only, with one line
``<address><CODE><data>\\r\\n``: ``PO`` (position) after a move or ``gp``, ``GS``
(status byte, hex) after a setting or on an error, ``IN`` (information) and so on.
Positions are 32-bit two's complement encoder pulses, 8 upper-case hex digits; the
pulses per revolution are in the ``IN`` reply (143360 for an ELL14).

Several devices share one bus (RS-485 multidrop, one serial port): each driver
instance talks to one ``address``; :meth:`ELL14.on_bus` makes a driver for another
address on the same session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.instrument import Instrument
from qhil.drivers.values import Value, ValueTypeError
from qhil.errors import InstrumentError, ProtocolError, ValidationError
from qhil.transport.framing import Framing, SerialSettings
from qhil.transport.session import Session

#: Status codes of the ``GS`` reply (ELLx protocol manual, "GS: status"); 14-255 reserved.
STATUS_TEXT: dict[int, str] = {
    0: "OK, no error",
    1: "Communication time out",
    2: "Mechanical time out",
    3: "Command error or not supported",
    4: "Value out of range",
    5: "Module isolated",
    6: "Module out of isolation",
    7: "Initializing error",
    8: "Thermal error",
    9: "Busy",
    10: "Sensor error",
    11: "Motor error",
    12: "Out of range",
    13: "Over current error",
}
BUSY = 9
#: Commands that move the mount: the reply comes when the motion has ended.
MOVE_CODES = frozenset({"ho", "ma", "mr", "fw", "bw"})
#: A full turn takes the ELL14 ~1 s at full speed; homing up to ~2 s ([S3]).
MOVE_TIMEOUT_S = 10.0


def status_text(code: int) -> str:
    return STATUS_TEXT.get(code, "Reserved")


@dataclass(frozen=True)
class Hex(Value[int]):
    """An integer as a fixed number of upper-case hex digits (two's complement if signed)."""

    digits: int = 8
    signed: bool = True
    lo: int | None = None
    hi: int | None = None

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return f"[0-9A-Fa-f]{{{self.digits}}}"

    @property
    def reply_pattern(self) -> str:
        return f"[0-9A-F]{{{self.digits}}}"

    def _bounds(self) -> tuple[int, int]:
        bits = 4 * self.digits
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)
        )
        return (lo if self.lo is None else self.lo, hi if self.hi is None else self.hi)

    def validate(self, value: Any) -> int:
        lo, hi = self._bounds()
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueTypeError(value, f"an integer in [{lo}, {hi}]")
        return value

    def format(self, value: Any) -> str:
        return self.emit(self.validate(value))

    def emit(self, value: Any) -> str:
        return f"{int(value) & ((1 << (4 * self.digits)) - 1):0{self.digits}X}"

    def parse(self, text: str) -> int:
        if not re.fullmatch(self.pattern, text):
            raise ValueError(f"{text!r} is not {self.digits} hex digits")
        v = int(text, 16)
        bits = 4 * self.digits
        if self.signed and v >= 1 << (bits - 1):
            v -= 1 << bits
        return v

    def describe(self) -> str:
        return f"{self.digits} hex digits"


@dataclass(frozen=True)
class Address(Value[str]):
    """A device address on the bus: one hex digit, ``0``-``F``."""

    pattern: str = "[0-9A-Fa-f]"

    def validate(self, value: Any) -> str:
        text = f"{value:X}" if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not re.fullmatch(self.pattern, text):
            raise ValueTypeError(value, "one hex digit 0-F (or 0..15)")
        return text.upper()

    def parse(self, text: str) -> str:
        return self.validate(text)


@dataclass(frozen=True)
class DeviceInfo:
    """The ``IN`` reply: model (14 for an ELL14), serial, year, firmware, thread, hardware
    release, travel (360 deg for a rotation mount) and encoder pulses over that travel."""

    model: int
    serial: str
    year: int
    firmware: int
    imperial: bool
    hardware: int
    travel: int
    pulses: int


@dataclass(frozen=True)
class DeviceInfoValue(Value[DeviceInfo]):
    """``0E`` model, 8-digit serial, 4-digit year, 2 hex firmware, thread + hardware
    (2 hex), 4 hex travel, 8 hex pulses: 30 characters."""

    pattern: str = r"[0-9A-F]{2}\d{8}\d{4}[0-9A-F]{2}[0-9A-F]{2}[0-9A-F]{4}[0-9A-F]{8}"

    def emit(self, value: Any) -> str:
        v: DeviceInfo = value
        hw = (0x80 if v.imperial else 0) | v.hardware
        return (
            f"{v.model:02X}{v.serial:>08}{v.year:04d}{v.firmware:02X}{hw:02X}"
            f"{v.travel:04X}{v.pulses:08X}"
        )

    def format(self, value: Any) -> str:
        return self.emit(value)

    def parse(self, text: str) -> DeviceInfo:
        if not re.fullmatch(self.pattern, text):
            raise ValueError(f"{text!r} is not a 30-character IN record")
        hw = int(text[16:18], 16)
        return DeviceInfo(
            model=int(text[0:2], 16),
            serial=text[2:10],
            year=int(text[10:14]),
            firmware=int(text[14:16], 16),
            imperial=bool(hw & 0x80),
            hardware=hw & 0x7F,
            travel=int(text[18:22], 16),
            pulses=int(text[22:30], 16),
        )


_ADDR = {"address": Address()}
_PULSES = Hex(8)
_GS = re.compile(r"([0-9A-F])GS([0-9A-F]{2})")


def _setting(get: str, set: str, reply: str, value: Value[int], doc: str) -> Control[int]:
    """A setting read by ``get`` (reply ``<address><reply><value>``), set by ``set`` (GS)."""
    return Control(
        get=f"{{address}}{get}",
        set=f"{{address}}{set}{{value}}",
        args=_ADDR,
        value=value,
        reply=f"{{address}}{reply}{{value}}",
        doc=doc,
    )


class ELL14(Instrument):
    """Thorlabs Elliptec ELL14 rotation mount (role: RotationMount)."""

    framing: ClassVar[Framing] = Framing("", "\r\n", serial=SerialSettings(baudrate=9600))
    model: ClassVar[str] = "ELL14"
    timeout_s: ClassVar[float] = 1.0

    info = Measurement(
        "{address}in",
        args=_ADDR,
        value=DeviceInfoValue(),
        reply="{address}IN{value}",
        doc="Model, serial, year, firmware, travel and pulses over the travel.",
    )
    status = Measurement(
        "{address}gs",
        args=_ADDR,
        value=Hex(2, signed=False),
        reply="{address}GS{value}",
        doc="Status byte (0 = OK; see STATUS_TEXT); reading it clears a reported error.",
    )
    position = Measurement(
        "{address}gp",
        args=_ADDR,
        value=_PULSES,
        reply="{address}PO{value}",
        doc="Position, encoder pulses from home.",
    )
    home_offset = _setting(
        "go", "so", "HO", _PULSES, "Home offset, pulses (the manual advises against changing it)."
    )
    jog_step = _setting(
        "gj", "sj", "GJ", _PULSES, "Step of fw/bw moves, pulses (0: continuous jog)."
    )
    velocity = _setting(
        "gv",
        "sv",
        "GV",
        Hex(2, signed=False, lo=0, hi=100),
        "Velocity, percent of the maximum (hex).",
    )
    go_home = Action(
        "{address}ho{direction}",
        args={**_ADDR, "direction": Hex(1, signed=False, hi=1)},
        doc="Home (rotation mounts: 0 clockwise, 1 counter-clockwise); replies PO.",
    )
    move_absolute = Action(
        "{address}ma{value}", args={**_ADDR, "value": _PULSES}, doc="Move to pulses; replies PO."
    )
    move_relative = Action(
        "{address}mr{value}", args={**_ADDR, "value": _PULSES}, doc="Move by pulses; replies PO."
    )
    forward = Action("{address}fw", args=_ADDR, doc="Move forward by the jog step; replies PO.")
    backward = Action("{address}bw", args=_ADDR, doc="Move backward by the jog step; replies PO.")
    save_user_data = Action("{address}us", args=_ADDR, doc="Store settings in flash; GS.")
    change_address = Action(
        "{address}ca{new}",
        args={**_ADDR, "new": Address()},
        doc="Change the device's address; the new address answers GS.",
    )

    def __init__(self, session: Session, *, name: str | None = None, address: str = "0") -> None:
        super().__init__(session, name=name)
        self.address = Address().validate(address)
        self._info: DeviceInfo | None = None

    def on_bus(self, address: str, *, name: str | None = None) -> Self:
        """A driver for the device at ``address`` on this driver's bus (the same session)."""
        return type(self)(self.session, name=name, address=address)

    async def set_address(self, address: str) -> None:
        """Talk to the device at ``address`` from now on (a profile setting; sends nothing)."""
        self.address = Address().validate(address)
        self._info = None

    # --- the wire: one reply line per command; GS with a non-zero code is an error ---

    def _check(self, command: str, reply: str, *, status_query: bool = False) -> str:
        """The reply, unless it is a non-zero status (the device's error) or another
        device's (``ca`` is answered from the new address)."""
        m = _GS.fullmatch(reply)
        if m is not None and not status_query and (code := int(m.group(2), 16)) != 0:
            raise InstrumentError(self.resource, code, status_text(code), command)
        if reply[:1] != command[:1] and command[1:3] != "ca":
            raise ProtocolError(self.resource, command, reply, f"a reply from address {command[0]}")
        return reply

    async def ask(self, command: str) -> str:
        timeout = MOVE_TIMEOUT_S if command[1:3] in MOVE_CODES else None
        reply = await self.session.query(command, timeout_s=timeout)
        return self._check(command, reply, status_query=command[1:3] == "gs")

    async def command(self, command: str, *, check_errors: bool = True) -> None:
        if command[1:3] in MOVE_CODES:
            reply = await self.ask(command)
            if reply[1:3] != "PO":
                raise ProtocolError(self.resource, command, reply, "a PO position reply")
            return
        reply = await self.session.query(command)
        self._check(command, reply)
        if _GS.fullmatch(reply) is None:
            raise ProtocolError(self.resource, command, reply, "a GS status reply")

    async def _move(self, command: str) -> int:
        """Send a move; return the position it reports when the motion has ended."""
        reply = await self.ask(command)
        parsed = type(self).position.reply_template.parse(reply)
        if parsed is None:
            raise ProtocolError(self.resource, command, reply, "'<address>PO<8 hex digits>'")
        return int(parsed["value"])

    # --- units ---

    async def device_info(self) -> DeviceInfo:
        if self._info is None:
            self._info = await self.info.get(address=self.address)
        return self._info

    async def pulses_per_degree(self) -> float:
        info = await self.device_info()
        if info.pulses <= 0 or info.travel <= 0:
            raise ProtocolError(
                self.resource, f"{self.address}in", str(info), "travel and pulses > 0"
            )
        return info.pulses / info.travel

    async def identity(self) -> str:
        info = await self.device_info()
        return f"Thorlabs,ELL{info.model},{info.serial},{info.firmware:X}"

    # --- RotationMount role ---

    async def home_deg(self, direction: int = 0) -> float:
        """Home; the angle it reports there (0 unless a home offset is set)."""
        per_deg = await self.pulses_per_degree()
        template = type(self).go_home.template
        pulses = await self._move(template.render(address=self.address, direction=direction))
        return pulses / per_deg

    async def home(self) -> None:
        await self.home_deg()

    async def move_to_deg(self, angle_deg: float) -> None:
        """Absolute move to ``angle_deg`` (mod 360), to the nearest encoder pulse."""
        per_deg = await self.pulses_per_degree()
        info = await self.device_info()
        try:
            target = round((float(angle_deg) % info.travel) * per_deg) % info.pulses
        except (TypeError, ValueError, ArithmeticError):
            raise ValidationError(
                "<address>ma<pulses>", angle_deg, "a finite angle in deg"
            ) from None
        template = type(self).move_absolute.template
        await self._move(template.render(address=self.address, value=target))

    async def move_by_deg(self, delta_deg: float) -> float:
        """Relative move; returns the angle reached."""
        per_deg = await self.pulses_per_degree()
        template = type(self).move_relative.template
        pulses = await self._move(
            template.render(address=self.address, value=round(float(delta_deg) * per_deg))
        )
        return pulses / per_deg

    async def position_deg(self) -> float:
        per_deg = await self.pulses_per_degree()
        pulses = await self.position.get(address=self.address)
        info = await self.device_info()
        return (pulses / per_deg) % info.travel
