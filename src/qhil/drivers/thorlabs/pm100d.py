"""Thorlabs PM100D / PM100USB optical power meter console (SCPI over USBTMC, ``\\n``).

Command set from Thorlabs' PM100D SCPI reference (the console's "Remote control"
chapter) as open-source clients use it: PyMeasure's ``ThorlabsPM100USB``
(``SYST:SENS:IDN?``, ``SENS:CORR:WAV?`` with ``MIN``/``MAX``, ``MEAS:POW?``) and the
``ThorlabsPM100`` package (``CONF:POW``, ``INIT``, ``FETC?``, ``READ?``,
``SENS:AVER:COUN``, ``SENS:POW:RANG:AUTO``, ``SENS:CORR:COLL:ZERO``). ``*IDN?`` reads
``Thorlabs,PM100D,<serial>,<firmware>``. Lab profiles address it as
``USB0::0x1313::0x8078::<serial>::INSTR`` (PM100D; 0x8072 is the PM100USB); the
emulator serves the same messages on a TCP socket. Reply number formats
(``1.234567E-06``) are UNVERIFIED against a unit; the driver parses any real.
"""

from __future__ import annotations

from typing import ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import Bool, Enum, Float, Int, Keyword, Str
from qhil.transport.framing import Framing

#: Largest averaging count the console accepts (UNVERIFIED: the manual gives none).
MAX_AVERAGE = 100000
_LIMIT = Keyword({"min": "MINimum", "max": "MAXimum"})


class PM100D(ScpiInstrument):
    """Thorlabs PM100D power meter with a photodiode sensor (role: PowerMeter)."""

    framing: ClassVar[Framing] = Framing("\n", "\n")
    model: ClassVar[str] = "PM100D"
    timeout_s: ClassVar[float] = 3.0

    sensor_idn = Measurement(
        ":SYSTem:SENSor:IDN?",
        value=Str(),
        doc="Sensor head: name, serial, calibration date, type, subtype, flags "
        "(e.g. S155C,...), or 'no sensor'.",
    )
    wavelength_nm = Control(
        get=":SENSe:CORRection:WAVelength?",
        set=":SENSe:CORRection:WAVelength {value}",
        value=Float(100.0, 20000.0, fmt="{:.1f}", units="nm"),
        doc="Wavelength the sensor's responsivity is corrected for, nm.",
    )
    wavelength_limit_nm = Measurement(
        ":SENSe:CORRection:WAVelength? {which}",
        args={"which": _LIMIT},
        value=Float(units="nm"),
        doc="Smallest or largest wavelength of the sensor's calibration, nm.",
    )
    average_count = Control(
        get=":SENSe:AVERage:COUNt?",
        set=":SENSe:AVERage:COUNt {value}",
        value=Int(1, MAX_AVERAGE),
        doc="Samples averaged into one reading.",
    )
    auto_range = Control(
        get=":SENSe:POWer[:DC]:RANGe:AUTO?",
        set=":SENSe:POWer[:DC]:RANGe:AUTO {value}",
        value=Bool(),
        doc="Automatic power range.",
    )
    power_unit = Control(
        get=":SENSe:POWer[:DC]:UNIT?",
        set=":SENSe:POWer[:DC]:UNIT {value}",
        value=Enum({"W": "W", "dBm": "DBM"}),
        doc="Unit of power readings: W or dBm.",
    )
    zero = Action(
        ":SENSe:CORRection:COLLect:ZERO[:INITiate]",
        doc="Dark zeroing: the present reading becomes the zero (cover the sensor first).",
    )
    zero_w = Measurement(
        ":SENSe:CORRection:COLLect:ZERO:MAGNitude?",
        value=Float(units="W"),
        doc="The zero subtracted from readings, W.",
    )
    configure_power = Action(":CONFigure[:SCALar]:POWer", doc="Measure power from now on.")
    measure_power = Measurement(
        ":MEASure[:SCALar]:POWer?",
        value=Float(units="W or dBm"),
        doc="Configure for power, measure and return one reading (power_unit).",
    )
    initiate = Action(":INITiate[:IMMediate]", doc="Start one measurement.")
    fetch = Measurement(":FETCh?", value=Float(), doc="The last measurement's reading.")
    read = Measurement(":READ?", value=Float(), doc="Start a measurement and return its reading.")

    async def on_connect(self) -> None:
        # Readings in watts whatever the front panel was left at.
        await self.power_unit.set("W")

    # --- PowerMeter role ---

    async def set_wavelength_nm(self, nm: float) -> None:
        await self.wavelength_nm.set(nm)

    async def set_averaging(self, samples: int) -> None:
        await self.average_count.set(samples)

    async def zero_dark(self) -> None:
        await self.zero()

    async def power_w(self) -> float:
        return await self.measure_power.get()
