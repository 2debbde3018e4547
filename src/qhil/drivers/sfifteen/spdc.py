"""S-Fifteen Instruments SPDC source driver board (CPPS / EPPS pair sources).

Protocol: docs/protocols/s-fifteen-spdc-driver.md, from the vendor's S15lib
``SPDCDriver``: commands end with ``;``, upper case; setters are silent unless
they fail; numbers are sent as ``{:.3f}``. The board drives the pump laser
(current, peltier) and the crystal heater whose temperature sets the phase
matching, and so the pair rate.

Ranges are the ones S15lib hard-codes "based on firmware". The laser current is
ramped in 1 mA steps every 50 ms, as S15lib does to protect the laser diode.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.sfifteen.common import S15Instrument
from qhil.drivers.values import Bool, Float, Int, Str
from qhil.errors import ValidationError

#: POWER bits (power-converter enable lines).
POWER_HEATER = 0b01  # heater and peltier supplies
POWER_LASER = 0b10  # laser supply
#: Laser current the firmware accepts, mA (S15lib).
LASER_CURRENT_RANGE_MA = (0.0, 97.0)
#: STATUS bits.
STATUS_HLOOP = 1
STATUS_PLOOP = 2
STATUS_LASER_ON = 4
STATUS_POWER_HEATER = 256
STATUS_POWER_LASER = 512


def _f(lo: float, hi: float, units: str) -> Float:
    return Float(lo, hi, fmt="{:.3f}", units=units)


def _pid(prefix: str, letter: str, units: str, what: str) -> Control[float]:
    return Control(
        get=f"{prefix}CONST{letter}?",
        set=f"{prefix}CONST{letter} {{value}}",
        value=_f(0, 10, units),
        doc=f"{what} PID {letter} constant, 0..10 {units}.",
    )


class SPDCSource(S15Instrument):
    """S-Fifteen SPDC source driver board (role: EntangledPhotonSource)."""

    model: ClassVar[str] = "S-Fifteen SPDC source driver"
    error_probe: ClassVar[str | None] = "status"

    idn = Measurement("*IDN?", value=Str(), doc="Identity; contains 'SPDCSDR' and the serial.")
    help_text = Measurement("HELP", value=Str(), doc="Command summary (several lines).")
    reset = Action("*RST", doc="Reset the board.", check_errors=False)
    save_reply = Measurement(
        "SAVE", value=Str(), doc="Store the settings in flash; answers a message (~1 s)."
    )
    power = Control(
        get="POWER?",
        set="POWER {value}",
        value=Int(0, 3),
        doc="Power-converter enables: bit 0 heater/peltier lines, bit 1 laser lines.",
    )
    status = Measurement(
        "STATUS?",
        value=Int(),
        doc="Bit 0 HLOOP, bit 1 PLOOP, bit 2 laser on, bit 8 POWER bit 0, bit 9 POWER bit 1.",
    )
    laser_on = Action("ON", doc="Laser on (needs POWER bit 1).")
    laser_off = Action("OFF", doc="Laser off.")
    laser_current_ma = Control(
        get="LCURRENT?",
        set="LCURRENT {value}",
        value=_f(*LASER_CURRENT_RANGE_MA, "mA"),
        doc="Laser (pump) current, 0..LLIMIT mA; the board refuses more than LLIMIT.",
    )
    #: The pump current the driver accepts, mA (the board's LLIMIT may be lower, live):
    #: what a profile can be checked against before the board is opened.
    pump_current_range_ma: ClassVar[tuple[float, float]] = LASER_CURRENT_RANGE_MA
    laser_current_limit_ma = Control(
        get="LLIMIT?", set="LLIMIT {value}", value=_f(0, 97, "mA"), doc="Laser current limit."
    )
    heater_loop = Control(
        get="HLOOP?", set="HLOOP {value}", value=Bool(), doc="Crystal-heater PID loop on/off."
    )
    peltier_loop = Control(
        get="PLOOP?", set="PLOOP {value}", value=Bool(), doc="Laser-peltier PID loop on/off."
    )
    heater_temp_c = Measurement(
        "HTEMP?", value=Float(fmt="{:.3f}", units="C"), doc="Crystal temperature."
    )
    heater_setpoint_c = Control(
        get="HSETTEMP?",
        set="HSETTEMP {value}",
        value=_f(20, 100, "C"),
        doc="Crystal-heater setpoint, 20..100 C.",
    )
    heater_rate = Control(
        get="HRATE?",
        set="HRATE {value}",
        value=_f(0, 1, "K/s"),
        doc="Heater setpoint ramp rate, 0..1 K/s (0: step).",
    )
    heater_target_c = Measurement(
        "HTARGET?",
        value=Float(fmt="{:.3f}", units="C"),
        doc="Instantaneous (ramped) heater setpoint.",
    )
    heater_voltage = Control(
        get="HVOLT?", set="HVOLT {value}", value=_f(0, 10, "V"), doc="Heater voltage, 0..HLIMIT."
    )
    heater_voltage_limit = Control(
        get="HLIMIT?", set="HLIMIT {value}", value=_f(0, 10, "V"), doc="Heater voltage limit."
    )
    heater_p = _pid("H", "P", "V/K", "Heater")
    heater_i = _pid("H", "I", "V/(K s)", "Heater")
    heater_d = _pid("H", "D", "V s/K", "Heater")
    peltier_temp_c = Measurement(
        "PTEMP?", value=Float(fmt="{:.3f}", units="C"), doc="Laser temperature."
    )
    peltier_setpoint_c = Control(
        get="PSETTEMP?",
        set="PSETTEMP {value}",
        value=_f(20, 50, "C"),
        doc="Laser-peltier setpoint, 20..50 C.",
    )
    peltier_voltage = Control(
        get="PVOLT?",
        set="PVOLT {value}",
        value=_f(-2.5, 2.5, "V"),
        doc="Peltier voltage, -PLIMIT..PLIMIT.",
    )
    peltier_voltage_limit = Control(
        get="PLIMIT?", set="PLIMIT {value}", value=_f(0, 2.5, "V"), doc="Peltier voltage limit."
    )
    peltier_p = _pid("P", "P", "V/K", "Peltier")
    peltier_i = _pid("P", "I", "V/(K s)", "Peltier")
    peltier_d = _pid("P", "D", "V s/K", "Peltier")

    #: Laser-current ramp (S15lib: 1 mA per 50 ms). ``ramp_interval_s = 0`` skips the waits.
    ramp_step_ma: float = 1.0
    ramp_interval_s: float = 0.05

    async def identity(self) -> str:
        return await self.idn.get()

    async def help(self) -> list[str]:
        return await self.read_multiline(type(self).help_text)

    async def save(self) -> str:
        """Store the settings; returns the board's message (saving takes up to ~1 s)."""
        template = type(self).save_reply.get_template
        assert template is not None
        return await self.ask(template.render(), timeout_s=2.0)

    async def _set_power_bits(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        async with self.session.locked():
            now = await self.power.get()
            new = (now | set_bits) & ~clear_bits & 0b11
            if new != now:
                await self.power.set(new)

    async def ramp_current_ma(self, target_ma: float) -> None:
        """Move the laser current to ``target_ma`` in steps of at most ``ramp_step_ma``."""
        template = type(self).laser_current_ma.set_template
        assert template is not None
        try:
            template.render(value=target_ma)  # a bad target is refused before any byte
        except ValidationError as exc:
            # the template's text ("LCURRENT {value}") would show an unfilled placeholder
            raise ValidationError(
                f"{self.name}: LCURRENT (pump current, mA)", target_ma, exc.allowed
            ) from None
        async with self.session.locked():
            now = await self.laser_current_ma.get()
            step = self.ramp_step_ma if target_ma >= now else -self.ramp_step_ma
            value = now
            while abs(target_ma - value) > abs(step):
                value += step
                await self.laser_current_ma.set(round(value, 3))
                if self.ramp_interval_s > 0:
                    await asyncio.sleep(self.ramp_interval_s)
            await self.laser_current_ma.set(target_ma)

    # --- EntangledPhotonSource role ---

    async def set_output(self, enabled: bool) -> None:
        """On: laser supply enabled, then ON. Off: current ramped to 0, OFF, supply disabled."""
        async with self.session.locked():
            if enabled:
                await self._set_power_bits(set_bits=POWER_LASER)
                await self.laser_on()
            else:
                await self.ramp_current_ma(0.0)
                await self.laser_off()
                await self._set_power_bits(clear_bits=POWER_LASER)

    async def output(self) -> bool:
        return bool(await self.status.get() & STATUS_LASER_ON)

    async def set_pump_current_ma(self, ma: float) -> None:
        await self.ramp_current_ma(ma)

    async def pump_current_ma(self) -> float:
        return await self.laser_current_ma.get()

    async def set_crystal_temperature_c(self, celsius: float) -> None:
        """Heater setpoint, with the heater loop and its supply switched on."""
        async with self.session.locked():
            await self.heater_setpoint_c.set(celsius)
            await self.heater_loop.set(True)
            await self._set_power_bits(set_bits=POWER_HEATER)

    async def crystal_temperature_c(self) -> float:
        """Measured crystal temperature (not the setpoint)."""
        return await self.heater_temp_c.get()
