"""Emulated S-Fifteen SPDC source driver board (protocol: docs/protocols/s-fifteen-spdc-driver.md).

Bound to a world ``spdc_source`` component: the laser current (when the laser is
ON and its supply, POWER bit 1, is enabled) is the pump current, and the crystal
heater's setpoint follows the board's heater loop, so the pair rate follows the
pump and the phase matching as on the bench.

Thermal model of the board (emulator choice, not documented): the crystal sits
``HEATER_K_PER_V2`` K above ambient per V**2 of heater voltage. With HLOOP on
(and POWER bit 0), the loop drives the crystal to the (ramped) setpoint as far
as HLIMIT allows and reports the voltage it needs; with HLOOP off the heater
holds HVOLT. The laser peltier works alike (``PELTIER_K_PER_V``). The crystal's
own thermal lag is the world's (``heater_time_constant_s``). A setpoint ramp
(HRATE > 0) reaches the world in steps: at every command the board receives, the
world's heater setpoint becomes the ramp's value at that simulated time (the
world has no ramp of its own).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from qhil.drivers.sfifteen.spdc import (
    POWER_HEATER,
    POWER_LASER,
    STATUS_HLOOP,
    STATUS_LASER_ON,
    STATUS_PLOOP,
    STATUS_POWER_HEATER,
    STATUS_POWER_LASER,
    SPDCSource,
)
from qhil.emulators.base import on
from qhil.emulators.sfifteen.common import CommandRefused, S15Emulator

AMBIENT_C = 25.0
HEATER_K_PER_V2 = 0.75  # 10 V -> 75 K above ambient
PELTIER_K_PER_V = 10.0
#: Known identity strings of CPPS boards (spdc_GUI); S15lib finds the board by "SPDCSDR".
IDENTITY = "S-15 Instruments SPDC source driver, firmware svn-7. Serial: SPDCSDR-99"
SAVE_MESSAGE = "Settings saved"  # text UNVERIFIED


class SPDCSourceEmulator(S15Emulator):
    driver = SPDCSource

    def __init__(self, *, identity: str = IDENTITY, ambient_c: float = AMBIENT_C, **kw: Any):
        self.identity = identity
        self.ambient_c = ambient_c
        self.preset: dict[str, Any] | None = None
        super().__init__(**kw)

    _SAVED: ClassVar[tuple[str, ...]] = (
        "llimit",
        "hsettemp",
        "hrate",
        "hlimit",
        "hconst",
        "psettemp",
        "plimit",
        "pconst",
    )

    def power_on_state(self) -> None:
        self.power = 0
        self.hloop = False
        self.ploop = False
        self.laser_on = False
        self.lcurrent = 0.0
        self.llimit = 50.0
        self.hsettemp = 25.0
        self.hrate = 0.0
        self.hvolt = 0.0
        self.hlimit = 10.0
        self.hconst = [1.0, 0.1, 0.0]
        self.psettemp = 25.0
        self.pvolt = 0.0
        self.plimit = 2.5
        self.pconst = [1.0, 0.1, 0.0]
        if self.preset is not None:  # SAVE'd settings come back at power-on
            for k, v in self.preset.items():
                setattr(self, k, list(v) if isinstance(v, list) else v)
        self._ramp_from = self.hsettemp
        self._ramp_t0 = self._now()
        self._push_to_world()

    # --- physics of the board ---

    def _now(self) -> float:
        return self.world.clock.now_s if self.world is not None else 0.0

    def _spdc(self) -> Any:
        return (
            self.world.spdc(self.component) if self.world is not None and self.component else None
        )

    def heater_target(self) -> float:
        """The ramped setpoint (HTARGET): moves to HSETTEMP at HRATE K/s (0: at once)."""
        if self.hrate <= 0:
            return self.hsettemp
        span = self.hsettemp - self._ramp_from
        moved = self.hrate * max(0.0, self._now() - self._ramp_t0)
        return self.hsettemp if moved >= abs(span) else self._ramp_from + math.copysign(moved, span)

    def _restart_ramp(self) -> None:
        self._ramp_from = self.heater_target()
        self._ramp_t0 = self._now()

    def _heater_powered(self) -> bool:
        return bool(self.power & POWER_HEATER)

    def heater_voltage(self) -> float:
        """What the heater gets: the loop's voltage, or HVOLT with the loop off."""
        if not self._heater_powered():
            return 0.0
        if not self.hloop:
            return self.hvolt
        rise = max(0.0, self.heater_target() - self.ambient_c)
        return min(self.hlimit, math.sqrt(rise / HEATER_K_PER_V2))

    def crystal_setpoint_c(self) -> float:
        return self.ambient_c + HEATER_K_PER_V2 * self.heater_voltage() ** 2

    def peltier_voltage(self) -> float:
        if not self._heater_powered():
            return 0.0
        if not self.ploop:
            return self.pvolt
        v = (self.psettemp - self.ambient_c) / PELTIER_K_PER_V
        return max(-self.plimit, min(self.plimit, v))

    def laser_emitting(self) -> bool:
        return self.laser_on and bool(self.power & POWER_LASER)

    def _push_to_world(self) -> None:
        spdc = self._spdc()
        if spdc is None:
            return
        spdc.enabled = self.laser_emitting()
        spdc.pump_current_ma = self.lcurrent
        target = self.crystal_setpoint_c()
        if target != spdc.heater_temp_c:
            spdc.heater_temp_c = target

    async def execute(self, command: str) -> bytes:
        reply = await super().execute(command)
        self._push_to_world()  # also moves a heater ramp along
        return reply

    # --- identity, help, reset, save ---

    @on("reset")
    def _rst(self) -> None:
        self.power_on_state()

    @on("save_reply.get")
    def _save(self) -> str:
        self.preset = {
            k: list(v) if isinstance(v, list) else v
            for k, v in vars(self).items()
            if k in self._SAVED
        }
        return SAVE_MESSAGE

    # --- power and status ---

    @on("power.get")
    def _power_q(self) -> int:
        return self.power

    @on("power.set")
    def _power(self, value: int) -> None:
        self.power = value

    @on("status.get")
    def _status(self) -> int:
        return (
            (STATUS_HLOOP if self.hloop else 0)
            | (STATUS_PLOOP if self.ploop else 0)
            | (STATUS_LASER_ON if self.laser_on else 0)
            | (STATUS_POWER_HEATER if self.power & POWER_HEATER else 0)
            | (STATUS_POWER_LASER if self.power & POWER_LASER else 0)
        )

    # --- laser ---

    @on("laser_on")
    def _on(self) -> None:
        self.laser_on = True

    @on("laser_off")
    def _off(self) -> None:
        self.laser_on = False

    @on("laser_current_ma.get")
    def _lcurrent_q(self) -> float:
        return self.lcurrent

    @on("laser_current_ma.set")
    def _lcurrent(self, value: float) -> None:
        spdc = self._spdc()
        if value > self.llimit or (spdc is not None and value > spdc.max_pump_current_ma):
            raise CommandRefused("value out of range")
        self.lcurrent = value

    @on("laser_current_limit_ma.get")
    def _llimit_q(self) -> float:
        return self.llimit

    @on("laser_current_limit_ma.set")
    def _llimit(self, value: float) -> None:
        self.llimit = value
        self.lcurrent = min(self.lcurrent, value)

    # --- crystal heater ---

    @on("heater_loop.get")
    def _hloop_q(self) -> bool:
        return self.hloop

    @on("heater_loop.set")
    def _hloop(self, value: bool) -> None:
        if self.hloop and not value:
            self.hvolt = self.heater_voltage()  # the loop's last voltage is held
        if value and not self.hloop:
            self._ramp_from = self._now_crystal_c()
            self._ramp_t0 = self._now()
        self.hloop = value

    def _now_crystal_c(self) -> float:
        spdc = self._spdc()
        return float(spdc.heater_actual_c) if spdc is not None else self.crystal_setpoint_c()

    @on("heater_temp_c.get")
    def _htemp(self) -> float:
        return self._now_crystal_c()

    @on("heater_setpoint_c.get")
    def _hset_q(self) -> float:
        return self.hsettemp

    @on("heater_setpoint_c.set")
    def _hset(self, value: float) -> None:
        self._restart_ramp()
        self.hsettemp = value

    @on("heater_rate.get")
    def _hrate_q(self) -> float:
        return self.hrate

    @on("heater_rate.set")
    def _hrate(self, value: float) -> None:
        self._restart_ramp()
        self.hrate = value

    @on("heater_target_c.get")
    def _htarget(self) -> float:
        return self.heater_target()

    @on("heater_voltage.get")
    def _hvolt_q(self) -> float:
        return self.heater_voltage() if self.hloop else self.hvolt

    @on("heater_voltage.set")
    def _hvolt(self, value: float) -> None:
        if value > self.hlimit:
            raise CommandRefused("value out of range")
        self.hvolt = value

    @on("heater_voltage_limit.get")
    def _hlimit_q(self) -> float:
        return self.hlimit

    @on("heater_voltage_limit.set")
    def _hlimit(self, value: float) -> None:
        self.hlimit = value
        self.hvolt = min(self.hvolt, value)

    @on("heater_p.get")
    def _hp_q(self) -> float:
        return self.hconst[0]

    @on("heater_p.set")
    def _hp(self, value: float) -> None:
        self.hconst[0] = value

    @on("heater_i.get")
    def _hi_q(self) -> float:
        return self.hconst[1]

    @on("heater_i.set")
    def _hi(self, value: float) -> None:
        self.hconst[1] = value

    @on("heater_d.get")
    def _hd_q(self) -> float:
        return self.hconst[2]

    @on("heater_d.set")
    def _hd(self, value: float) -> None:
        self.hconst[2] = value

    # --- laser peltier ---

    @on("peltier_loop.get")
    def _ploop_q(self) -> bool:
        return self.ploop

    @on("peltier_loop.set")
    def _ploop(self, value: bool) -> None:
        if self.ploop and not value:
            self.pvolt = self.peltier_voltage()
        self.ploop = value

    @on("peltier_temp_c.get")
    def _ptemp(self) -> float:
        return self.ambient_c + PELTIER_K_PER_V * self.peltier_voltage()

    @on("peltier_setpoint_c.get")
    def _pset_q(self) -> float:
        return self.psettemp

    @on("peltier_setpoint_c.set")
    def _pset(self, value: float) -> None:
        self.psettemp = value

    @on("peltier_voltage.get")
    def _pvolt_q(self) -> float:
        return self.peltier_voltage() if self.ploop else self.pvolt

    @on("peltier_voltage.set")
    def _pvolt(self, value: float) -> None:
        if abs(value) > self.plimit:
            raise CommandRefused("value out of range")
        self.pvolt = value

    @on("peltier_voltage_limit.get")
    def _plimit_q(self) -> float:
        return self.plimit

    @on("peltier_voltage_limit.set")
    def _plimit(self, value: float) -> None:
        self.plimit = value
        self.pvolt = max(-value, min(value, self.pvolt))

    @on("peltier_p.get")
    def _pp_q(self) -> float:
        return self.pconst[0]

    @on("peltier_p.set")
    def _pp(self, value: float) -> None:
        self.pconst[0] = value

    @on("peltier_i.get")
    def _pi_q(self) -> float:
        return self.pconst[1]

    @on("peltier_i.set")
    def _pi(self, value: float) -> None:
        self.pconst[1] = value

    @on("peltier_d.get")
    def _pd_q(self) -> float:
        return self.pconst[2]

    @on("peltier_d.set")
    def _pd(self, value: float) -> None:
        self.pconst[2] = value
