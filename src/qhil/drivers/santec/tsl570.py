"""Santec TSL-570 tunable laser (SCPI over a LAN socket, port 5000, CR both ways).

Protocol: docs/protocols/santec-tsl570.md. The instrument has two command sets
with the same headers: Legacy (nm, THz, plain decimals) and SCPI (m, Hz,
``+d.ddddddddE+ddd``). This driver selects the SCPI set at connect and keeps
Python-side units in nm, THz and dBm/mW.
"""

from __future__ import annotations

from typing import ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import (
    DB_SUFFIXES,
    FREQUENCY_SUFFIXES,
    LENGTH_SUFFIXES,
    Bool,
    Enum,
    Float,
    Int,
    Keyword,
    Str,
)
from qhil.transport.framing import Framing

#: Band of product code 480640 (C-480640-...): 1480-1640 nm.
BAND_NM = (1480.0, 1640.0)
BAND_THZ = (182.80028, 202.56247)
_LIMIT = Keyword({"min": "MINimum", "max": "MAXimum"})
# Unit suffixes: the SCPI command set takes them (the Legacy set none). Power suffixes
# (DBM, MW, ...) are converted to :POW:UNIT by the instrument, so not declared here.


class TSL570(ScpiInstrument):
    """Santec TSL-570: a CW tunable laser (role: PhotonSource)."""

    framing: ClassVar[Framing] = Framing(write_termination="\r", read_termination="\r")
    model: ClassVar[str] = "TSL-570"

    command_set = Control(
        get=":SYSTem:COMMunicate:CODe?",
        set=":SYSTem:COMMunicate:CODe {value}",
        value=Enum({"legacy": "0", "scpi": "1"}),
        doc="Command set: 'legacy' (nm, THz) or 'scpi' (m, Hz on the wire).",
    )
    output_enabled = Control(
        get=":POWer:STATe?",
        set=":POWer:STATe {value}",
        value=Bool(),
        doc="Laser diode (optical output) on/off.",
    )
    shutter_closed = Control(
        get=":POWer:SHUTter?",
        set=":POWer:SHUTter {value}",
        value=Bool(),
        doc="Internal shutter; inverted sense: True = closed, no light out.",
    )
    power_unit = Control(
        get=":POWer:UNIT?",
        set=":POWer:UNIT {value}",
        value=Enum({"dBm": "0", "mW": "1"}),
        doc="Unit of power setpoint and readback.",
    )
    power_setpoint = Control(
        get=":POWer[:LEVel]?",
        set=":POWer[:LEVel] {value}",
        value=Float(-15.0, 20.0, fmt="{:.8E}", units="dBm or mW"),
        doc="Output power setpoint in power_unit (-15..+13 dBm, 0.04..20 mW).",
    )
    power_limit = Measurement(
        ":POWer[:LEVel]? {which}",
        args={"which": _LIMIT},
        value=Float(units="dBm or mW"),
        doc="Smallest or largest power setpoint in power_unit (SCPI query-parameter syntax).",
    )
    power_min = Measurement(
        ":POWer:MINimum?",
        value=Float(units="dBm or mW"),
        doc="Smallest power setpoint in power_unit (Legacy syntax, answered in both sets).",
    )
    power_max = Measurement(
        ":POWer:MAXimum?",
        value=Float(units="dBm or mW"),
        doc="Largest power setpoint in power_unit (Legacy syntax).",
    )
    power = Measurement(
        ":POWer:ACTual[:LEVel]?",
        value=Float(units="dBm or mW"),
        doc="Monitored optical output power in power_unit.",
    )
    attenuation_db = Control(
        get=":POWer:ATTenuation?",
        set=":POWer:ATTenuation {value}",
        value=Float(0.0, 30.0, fmt="{:.2f}", units="dB", suffixes=DB_SUFFIXES),
        doc="Internal attenuator setting (manual attenuation mode).",
    )
    attenuation_auto = Control(
        get=":POWer:ATTenuation:AUTo?",
        set=":POWer:ATTenuation:AUTo {value}",
        value=Bool(),
        doc="True: power-level control; False: manual attenuator.",
    )
    wavelength_nm = Control(
        get=":WAVelength?",
        set=":WAVelength {value}",
        value=Float(*BAND_NM, fmt="{:.8E}", scale=1e-9, units="nm", suffixes=LENGTH_SUFFIXES),
        doc="Wavelength setpoint (sent in metres in the SCPI command set).",
    )
    wavelength_limit_nm = Measurement(
        ":WAVelength? {which}",
        args={"which": _LIMIT},
        value=Float(scale=1e-9, units="nm"),
        doc="Minimum or maximum settable wavelength (SCPI query-parameter syntax).",
    )
    wavelength_min_nm = Measurement(
        ":WAVelength:MINimum?",
        value=Float(scale=1e-9, units="nm"),
        doc="Minimum settable wavelength (Legacy syntax, answered in both sets).",
    )
    wavelength_max_nm = Measurement(
        ":WAVelength:MAXimum?",
        value=Float(scale=1e-9, units="nm"),
        doc="Maximum settable wavelength (Legacy syntax).",
    )
    frequency_thz = Control(
        get="[:WAVelength]:FREQuency?",
        set="[:WAVelength]:FREQuency {value}",
        value=Float(*BAND_THZ, fmt="{:.8E}", scale=1e12, units="THz", suffixes=FREQUENCY_SUFFIXES),
        doc="Optical frequency setpoint (sent in Hz in the SCPI command set).",
    )
    frequency_limit_thz = Measurement(
        "[:WAVelength]:FREQuency? {which}",
        args={"which": _LIMIT},
        value=Float(scale=1e12, units="THz"),
        doc="Minimum or maximum settable frequency (SCPI query-parameter syntax).",
    )
    frequency_min_thz = Measurement(
        "[:WAVelength]:FREQuency:MINimum?",
        value=Float(scale=1e12, units="THz"),
        doc="Minimum settable frequency (Legacy syntax, answered in both sets).",
    )
    frequency_max_thz = Measurement(
        "[:WAVelength]:FREQuency:MAXimum?",
        value=Float(scale=1e12, units="THz"),
        doc="Maximum settable frequency (Legacy syntax).",
    )
    fine_tuning = Control(
        get=":WAVelength:FINetuning?",
        set=":WAVelength:FINetuning {value}",
        value=Float(-100.0, 100.0, fmt="{:.2f}"),
        doc="Fine tuning, -100..+100 arbitrary units.",
    )
    coherence_control = Control(
        get=":COHCtrl?", set=":COHCtrl {value}", value=Bool(), doc="Coherence control on/off."
    )
    sweep_start_nm = Control(
        get=":WAVelength:SWEep:STARt?",
        set=":WAVelength:SWEep:STARt {value}",
        value=Float(*BAND_NM, fmt="{:.8E}", scale=1e-9, units="nm", suffixes=LENGTH_SUFFIXES),
        doc="Sweep start wavelength.",
    )
    sweep_stop_nm = Control(
        get=":WAVelength:SWEep:STOP?",
        set=":WAVelength:SWEep:STOP {value}",
        value=Float(*BAND_NM, fmt="{:.8E}", scale=1e-9, units="nm", suffixes=LENGTH_SUFFIXES),
        doc="Sweep stop wavelength.",
    )
    sweep_step_nm = Control(
        get=":WAVelength:SWEep:STEP?",
        set=":WAVelength:SWEep:STEP {value}",
        value=Float(0.0001, 160.0, fmt="{:.8E}", scale=1e-9, units="nm", suffixes=LENGTH_SUFFIXES),
        doc="Step of a stepped sweep.",
    )
    sweep_mode = Control(
        get=":WAVelength:SWEep:MODe?",
        set=":WAVelength:SWEep:MODe {value}",
        value=Int(0, 3),
        doc="0 stepped one-way, 1 continuous one-way, 2 stepped two-way, 3 continuous two-way.",
    )
    sweep_speed = Control(
        get=":WAVelength:SWEep:SPEed?",
        set=":WAVelength:SWEep:SPEed {value}",
        value=Enum({s: str(s) for s in (1, 2, 5, 10, 20, 50, 100, 200)}),
        doc="Continuous sweep speed in nm/s: 1, 2, 5, 10, 20, 50, 100 or 200.",
    )
    sweep_dwell_s = Control(
        get=":WAVelength:SWEep:DWELl?",
        set=":WAVelength:SWEep:DWELl {value}",
        value=Float(0.0, 999.9, fmt="{:.1f}", units="s"),
        doc="Dwell per step (stepped sweep).",
    )
    sweep_delay_s = Control(
        get=":WAVelength:SWEep:DELay?",
        set=":WAVelength:SWEep:DELay {value}",
        value=Float(0.0, 999.9, fmt="{:.1f}", units="s"),
        doc="Delay between scans.",
    )
    sweep_cycles = Control(
        get=":WAVelength:SWEep:CYCLes?",
        set=":WAVelength:SWEep:CYCLes {value}",
        value=Int(0, 999),
        doc="Number of sweep repetitions.",
    )
    sweep_count = Measurement(":WAVelength:SWEep:COUNt?", value=Int(), doc="Completed sweeps.")
    sweep_state = Control(
        get=":WAVelength:SWEep[:STATe]?",
        set=":WAVelength:SWEep[:STATe] {value}",
        value=Int(0, 1),
        reply=Int(),
        doc="Set 1 to start a single sweep, 0 to stop; reads 0 stopped, 1 running, "
        "3 standing by trigger, 4 preparing.",
    )
    sweep_repeat = Action(":WAVelength:SWEep[:STATe]:REPeat", doc="Start repeated sweeps.")
    sweep_range_min_nm = Measurement(
        ":WAVelength:SWEep:RANGe:MINimum?",
        value=Float(scale=1e-9, units="nm"),
        doc="Shortest wavelength sweepable at the current speed.",
    )
    sweep_range_max_nm = Measurement(
        ":WAVelength:SWEep:RANGe:MAXimum?",
        value=Float(scale=1e-9, units="nm"),
        doc="Longest wavelength sweepable at the current speed.",
    )
    sweep_range_min_thz = Measurement(
        "[:WAVelength]:FREQuency:SWEep:RANGe:MINimum?",
        value=Float(scale=1e12, units="THz"),
        doc="Lowest frequency sweepable at the current speed.",
    )
    sweep_range_max_thz = Measurement(
        "[:WAVelength]:FREQuency:SWEep:RANGe:MAXimum?",
        value=Float(scale=1e12, units="THz"),
        doc="Highest frequency sweepable at the current speed.",
    )
    alerts = Measurement(":SYSTem:ALERt?", value=Str(), doc="Alert list; 'No alerts.' when none.")
    firmware_version = Measurement(":SYSTem:VERSion?", value=Str(), doc="Firmware version.")
    product_code = Measurement(":SYSTem:CODe?", value=Str(), doc="Product code (gives the band).")

    async def on_connect(self) -> None:
        # Select the SCPI command set, so replies come in SI units with exponents.
        await self.command_set.set("scpi")

    # --- PhotonSource role ---

    async def set_output(self, enabled: bool) -> None:
        await self.output_enabled.set(enabled)

    async def output(self) -> bool:
        return await self.output_enabled.get()

    async def set_wavelength_nm(self, nm: float) -> None:
        await self.wavelength_nm.set(nm)

    async def wavelength(self) -> float:
        return await self.wavelength_nm.get()

    async def power_mw(self) -> float:
        unit = await self.power_unit.get()
        p = await self.power.get()
        return p if unit == "mW" else 10 ** (p / 10)
