"""HP / Agilent 8156A variable optical attenuator (GPIB, SCPI-style, ``\\n`` terminated).

Protocol: docs/protocols/hp-8156a.md (Operating and Programming Guide 08156-91011).
The attenuation factor ``α`` the instrument shows and reports includes the
calibration offset: the filter attenuates ``α_filter = α - offset``. MIN/DEF of
``α`` are the offset (filter at 0 dB), MAX is the offset plus the filter's range.
Lab profiles address it as ``GPIB0::28::INSTR`` (factory address 28); the
emulator serves the same messages on a TCP socket.
"""

from __future__ import annotations

from typing import ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import DB_SUFFIXES, LENGTH_SUFFIXES, Bool, Enum, Float, Keyword, Str
from qhil.transport.framing import Framing

#: Calibration wavelength range (nm) of the standard 8156A.
WAVELENGTH_NM = (1200.0, 1650.0)
#: Range of the filter attenuation α_filter (dB).
FILTER_RANGE_DB = 60.0
#: Range of the offset (calibration factor), dB.
OFFSET_RANGE_DB = 99.999
_WHICH = Keyword({"min": "MINimum", "max": "MAXimum", "default": "DEFault"})


class HP8156A(ScpiInstrument):
    """HP 8156A optical attenuator (role: Attenuator)."""

    framing: ClassVar[Framing] = Framing("\n", "\n")
    model: ClassVar[str] = "HP8156A"
    timeout_s: ClassVar[float] = 2.0

    attenuation = Control(
        get=":INPut:ATTenuation?",
        set=":INPut:ATTenuation {value}",
        # α = α_filter + offset: the admissible α moves with the offset, so the driver
        # only rules out what no offset allows; the instrument answers -222 for the rest.
        value=Float(
            -OFFSET_RANGE_DB,
            FILTER_RANGE_DB + OFFSET_RANGE_DB,
            fmt="{:.3f}",
            units="dB",
            suffixes=DB_SUFFIXES,
        ),
        doc="Attenuation factor α in dB (filter attenuation plus offset).",
    )
    attenuation_limit = Measurement(
        ":INPut:ATTenuation? {which}",
        args={"which": _WHICH},
        value=Float(units="dB"),
        doc="Smallest, default or largest attenuation factor possible now.",
    )
    offset = Control(
        get=":INPut:OFFSet?",
        set=":INPut:OFFSet {value}",
        value=Float(
            -OFFSET_RANGE_DB, OFFSET_RANGE_DB, fmt="{:.3f}", units="dB", suffixes=DB_SUFFIXES
        ),
        doc="Calibration factor (offset) in dB; α_filter = α - offset.",
    )
    offset_from_display = Action(
        ":INPut:OFFSet:DISPlay", doc="Make the displayed attenuation the offset (α_filter kept)."
    )
    wavelength_nm = Control(
        get=":INPut:WAVelength?",
        set=":INPut:WAVelength {value}",
        # Metres by default; a length suffix may say otherwise (1550NM, 1.55UM).
        value=Float(*WAVELENGTH_NM, fmt="{:.6E}", scale=1e-9, units="nm", suffixes=LENGTH_SUFFIXES),
        doc="Wavelength the attenuation is calibrated for (sent in metres).",
    )
    lambda_calibration = Control(
        get=":INPut:LCMode?",
        set=":INPut:LCMode {value}",
        value=Bool(),
        doc="Lambda-calibration mode (wavelength-dependent correction).",
    )
    shutter_open = Control(
        get=":OUTPut[:STATe]?",
        set=":OUTPut[:STATe] {value}",
        value=Bool(),
        doc="Optical output: True opens the shutter, False blocks all light.",
    )
    shutter_at_power_on = Control(
        get=":OUTPut[:STATe]:APOWeron?",
        set=":OUTPut[:STATe]:APOWeron {value}",
        value=Enum({"closed": "0", "last": "1"}),
        doc="Shutter state at power-on: closed, or as it was when switched off.",
    )
    display_enabled = Control(
        set=":DISPlay:ENABle {value}", value=Bool(), doc="Front-panel display on/off."
    )
    display_brightness = Control(
        set=":DISPlay:BRIGhtness {value}",
        value=Float(0.0, 1.0, fmt="{:.2f}"),
        doc="Display brightness, 0..1.",
    )
    options = Measurement("*OPT?", value=Str(), doc="Installed options.")

    # --- Attenuator role ---

    async def set_attenuation_db(self, db: float) -> None:
        await self.attenuation.set(db)

    async def attenuation_db(self) -> float:
        return await self.attenuation.get()

    async def set_output(self, enabled: bool) -> None:
        await self.shutter_open.set(enabled)

    async def output(self) -> bool:
        return await self.shutter_open.get()
