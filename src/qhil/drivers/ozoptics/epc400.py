"""OZ Optics EPC-400 four-channel polarization controller (serial 9600 8N1, CRLF).

Protocol: docs/protocols/ozoptics-epc400.md. Every command is answered by one
content line and then ``Done``; a failure ends with a line ending ``Error!``
instead. The device does *not* echo commands: INSTRUMENTS.md says it does,
but QMI's driver (used with the hardware at QuTech) reads exactly one content
line and ``Done`` and would fail on an echo, and two independent user drivers
parse the first line as the content; pyLabLib merely tolerates an echo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.instrument import Instrument
from qhil.drivers.values import Bool, ChannelList, Enum, Int, Str, Value
from qhil.errors import InstrumentError
from qhil.transport.framing import Framing, SerialSettings

_CHANNEL = {"channel": Int(1, 4)}
DONE = "Done"
ERROR = "Error!"
#: Soft reset: answered by two lines and no Done ([S4] reads two after RST, [S5] after RESET).
RESET_COMMANDS = ("RESET", "RST")


@dataclass(frozen=True)
class ChannelOutputs:
    """``VF?``: whether DC output in AC mode is enabled, and per channel V (True) or F."""

    dc_in_ac_mode: bool
    volt: tuple[bool, ...]


@dataclass(frozen=True)
class ChannelOutputsValue(Value[ChannelOutputs]):
    """``enabled: CH1-V,CH2-V,CH3-F,CH4-F`` (QMI's test, from a real session)."""

    count: int = 4

    @property
    def pattern(self) -> str:  # type: ignore[override]
        channels = ",".join(rf"CH{i + 1}-[VF]" for i in range(self.count))
        return rf"(?:enabled|disabled): {channels}"

    def emit(self, value: Any) -> str:
        state = "enabled" if value.dc_in_ac_mode else "disabled"
        flags = ",".join(f"CH{i + 1}-{'V' if v else 'F'}" for i, v in enumerate(value.volt))
        return f"{state}: {flags}"

    def parse(self, text: str) -> ChannelOutputs:
        if not re.fullmatch(self.pattern, text.strip(), re.IGNORECASE):
            raise ValueError(f"{text!r} is not 'enabled|disabled: CH1-V|F,...'")
        flags = re.findall(r"CH\d-([VF])", text, re.IGNORECASE)
        return ChannelOutputs(
            text.strip().lower().startswith("enabled"), tuple(f.upper() == "V" for f in flags)
        )


class EPC400(Instrument):
    """OZ Optics EPC-400 (role: PolarizationController)."""

    framing: ClassVar[Framing] = Framing("\r\n", "\r\n", serial=SerialSettings(baudrate=9600))
    model: ClassVar[str] = "EPC-400"
    timeout_s: ClassVar[float] = 1.0
    channels: int = 4

    voltages = Measurement(
        "V?",
        value=ChannelList(fmt="{:+d}"),
        reply="Voltage(mV): {value}",
        doc="DC set voltages of the four channels, mV.",
    )
    voltage = Control(
        set="V{channel},{value}",
        args=_CHANNEL,
        value=Int(-5000, 5000, units="mV"),
        doc="DC voltage of one channel, -5000..+5000 mV.",
    )
    voltage_high = Action("VH{channel}", args=_CHANNEL, doc="Channel to +5000 mV.")
    voltage_low = Action("VL{channel}", args=_CHANNEL, doc="Channel to -5000 mV.")
    voltage_zero = Action("VZ{channel}", args=_CHANNEL, doc="Channel to 0 mV.")
    frequencies = Measurement(
        "F?",
        value=ChannelList(fmt="{:03d}"),
        reply="Frequency(Hz): {value}",
        doc="AC (scrambling) frequencies of the four channels, Hz.",
    )
    frequency = Control(
        set="F{channel},{value}",
        args=_CHANNEL,
        value=Int(0, 100, units="Hz"),
        doc="AC scrambling frequency of one channel, 0..100 Hz.",
    )
    mode = Control(
        get="M?",
        set="M{value}",
        value=Enum({"dc": "DC", "ac": "AC"}),
        reply="Work Mode: {value}",
        reply_value=Enum({"dc": "DC", "ac": "AC(Sine)", "ac_triangle": "AC(Triangle)"}),
        doc="Operating mode: DC (fixed voltages) or AC (scrambling).",
    )
    waveform = Control(
        get="WF?",
        set="WF{value}",
        value=Enum({"sine": "1", "triangle": "2"}),
        reply="AC Waveform: {value}",
        reply_value=Enum({"sine": "Sine", "triangle": "Triangle"}),
        doc="AC scrambling waveform.",
    )
    dc_in_ac_mode = Control(
        set="ENVF{value}", value=Bool(), doc="Allow per-channel DC output while in AC mode."
    )
    toggle_channel_ac_dc = Action("VF{channel}", args=_CHANNEL, doc="Toggle a channel V <-> F.")
    channel_outputs = Measurement(
        "VF?",
        value=ChannelOutputsValue(),
        reply="Hz<->Volt at AC Mode is {value}",
        doc="DC-in-AC switch (ENVF) and, per channel, V (DC) or F (AC) output.",
    )
    save = Action("SAVE", doc="Store the current settings as the power-up preset.")
    reset = Action("RESET", doc="Soft reset: back to the power-up preset (SAVE).")
    restart = Action("RST", doc="The same soft reset, as [S4] (and pyLabLib's OZ base) spell it.")
    # The labels of the SN?/VER? lines are not documented anywhere we could find
    # (one user driver shows only "label: value"); these are our choice.
    serial_number = Measurement("SN?", value=Str(), reply="Serial Number: {value}", doc="Serial.")
    firmware = Measurement("VER?", value=Str(), reply="Version: {value}", doc="Firmware.")

    async def _exchange(self, command: str) -> str:
        if command in RESET_COMMANDS:
            return "\n".join(await self.session.query_lines(command, 2))
        lines = await self.session.query_until(
            command, lambda line: line == DONE or line.endswith(ERROR)
        )
        if lines[-1].endswith(ERROR):
            text = " / ".join(lines)
            raise InstrumentError(self.resource, ERROR, text, command)
        return "\n".join(lines[:-1])

    async def ask(self, command: str) -> str:
        return await self._exchange(command)

    async def command(self, command: str, *, check_errors: bool = True) -> None:
        # The acknowledgement line is the instrument's error report: always read it.
        await self._exchange(command)

    async def identity(self) -> str:
        return f"OZ Optics,EPC-400,{await self.serial_number.get()},{await self.firmware.get()}"

    # --- PolarizationController role ---

    async def set_voltages_mv(self, mv: list[int]) -> None:
        if len(mv) != self.channels:
            raise ValueError(f"EPC-400 has {self.channels} channels, got {len(mv)} voltages")
        template = type(self).voltage.set_template
        assert template is not None
        # Render (and so validate) all four before sending any.
        commands = [template.render(value=v, channel=ch) for ch, v in enumerate(mv, start=1)]
        async with self.session.locked():
            for c in commands:
                await self.command(c)

    async def voltages_mv(self) -> list[int]:
        return list(await self.voltages.get())
