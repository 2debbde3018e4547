"""S-Fifteen Instruments SPD avalanche-photodiode module.

Protocol: docs/protocols/s-fifteen-spd.md, from the vendor's S15lib
``SinglePhotonDetector``: lower-case commands; queries end with ``;``
(``hvolt?;``), setters with CR LF (``hvolt 120.0\\r\\n``, the number as Python's
``str(float)``); setters are silent unless they fail. ``counts?`` answers after
one counting gate (``time``, in ms) has elapsed.

Value ranges are not published (UNVERIFIED): the limits below are the
emulator's physical limits and generous for a Si APD module.
"""

from __future__ import annotations

from typing import ClassVar

from qhil.drivers.declarations import Control, Measurement
from qhil.drivers.sfifteen.common import S15Instrument
from qhil.drivers.values import Bool, Float, Int, Str

#: Longest counting gate accepted, ms (UNVERIFIED; the TDC1 sibling's 16-bit limit).
MAX_GATE_MS = 65535.0
#: Extra time allowed for a count reply beyond its gate (S15lib: 0.1 s).
COUNT_REPLY_MARGIN_S = 2.0  # see sfifteen.tdc1: a unit answers within ms


def _f(lo: float | None, hi: float | None, units: str) -> Float:
    # S15lib formats setter values with str(float): 120.0, 1000.0
    return Float(lo, hi, fmt="{!r}", units=units)


#: Replies: number format not documented (UNVERIFIED); the emulator prints %.3f.
_REPLY = Float(fmt="{:.3f}")


class SPD(S15Instrument):
    """S-Fifteen SPD single-photon avalanche-photodiode module (role: Detector)."""

    model: ClassVar[str] = "S-Fifteen SPD"
    setter_termination: ClassVar[str | None] = "\r\n"
    error_probe: ClassVar[str | None] = "loop"

    idn = Measurement("*idn?", value=Str(), doc="Identity; contains 'SPD'.")
    help_text = Measurement("help", value=Str(), doc="Command summary (several lines).")
    save_reply = Measurement("save", value=Str(), doc="Store the settings; answers a message.")
    high_voltage_v = Control(
        get="hvolt?",
        set="hvolt {value}",
        value=_f(0.0, 250.0, "V"),
        reply=_REPLY,
        doc="APD bias (high voltage), V.",
    )
    threshold_v = Control(
        get="threshvolt?",
        set="threshvolt {value}",
        value=_f(0.0, 3.3, "V"),
        reply=_REPLY,
        doc="Discriminator threshold, V.",
    )
    gate_ms = Control(
        get="time?",
        set="time {value}",
        value=_f(1.0, MAX_GATE_MS, "ms"),
        reply=_REPLY,
        doc="Counting gate, ms.",
    )
    gate_counts = Measurement(
        "counts?", value=Int(0), doc="Counts in one gate; the reply comes when the gate ends."
    )
    temperature_c = Measurement(
        "temp?", value=Float(fmt="{:.3f}", units="C"), doc="APD temperature."
    )
    temperature_setpoint_c = Control(
        get="settemp?",
        set="settemp {value}",
        value=_f(-50.0, 40.0, "C"),
        reply=_REPLY,
        doc="APD temperature setpoint (thermo-electric cooler).",
    )
    loop = Control(
        get="loop?", set="loop {value}", value=Bool(), doc="Temperature-stabilisation loop on/off."
    )
    peltier_voltage = Control(
        get="pvolt?",
        set="pvolt {value}",
        value=_f(-5.0, 5.0, "V"),
        reply=_REPLY,
        doc="Peltier voltage (manual control when the loop is off).",
    )
    loop_p = Control(
        get="constp?",
        set="constp {value}",
        value=_f(0.0, 100.0, ""),
        reply=_REPLY,
        doc="Loop P constant.",
    )
    loop_i = Control(
        get="consti?",
        set="consti {value}",
        value=_f(0.0, 100.0, ""),
        reply=_REPLY,
        doc="Loop I constant.",
    )
    delay = Control(
        get="delay?",
        set="delay {value}",
        value=_f(0.0, 1000.0, "(UNVERIFIED units)"),
        reply=_REPLY,
        doc="Output delay; units not documented (UNVERIFIED).",
    )

    async def identity(self) -> str:
        return await self.idn.get()

    async def help(self) -> list[str]:
        return await self.read_multiline(type(self).help_text)

    async def save(self) -> str:
        template = type(self).save_reply.get_template
        assert template is not None
        return await self.ask(template.render(), timeout_s=2.0)

    async def count(self, integration_s: float) -> int:
        """Counts in one gate of ``integration_s`` (set as ``time`` in ms, then ``counts?``)."""
        ms = integration_s * 1000.0
        template = type(self).gate_counts.get_template
        assert template is not None
        async with self.session.locked():
            await self.gate_ms.set(ms)
            reply = await self.ask(
                template.render(), timeout_s=integration_s + COUNT_REPLY_MARGIN_S
            )
        return int(type(self).gate_counts.reply_template.parse(reply)["value"])  # type: ignore[index]

    # --- Detector role ---

    async def set_bias(self, value: float) -> None:
        """APD bias voltage, V."""
        await self.high_voltage_v.set(value)

    async def bias(self) -> float:
        return await self.high_voltage_v.get()

    async def counts(self, integration_s: float) -> list[int]:
        return [await self.count(integration_s)]
