"""Emulated Santec TSL-570 (protocol: docs/protocols/santec-tsl570.md).

Reproduces both command sets: Legacy (nm, THz, plain decimals such as
``1550.0000``) and SCPI (m, Hz, ``+1.55000000E-006`` with a 3-digit exponent,
integers with a leading ``+``). Accepts CR, LF or CRLF at the end of a command
(one user drives the real laser with LF) and always answers with CR.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from qhil.drivers.santec.tsl570 import BAND_NM, BAND_THZ, TSL570
from qhil.drivers.values import (
    POWER_SUFFIXES,
    Float,
    SuffixError,
    ValueTypeError,
    nr3,
    special_word,
    split_number,
)
from qhil.emulators.base import Raw, on
from qhil.emulators.scpi import DATA_OUT_OF_RANGE, ILLEGAL_PARAMETER, ScpiEmulator, ScpiError

CHARACTER_DATA_NOT_ALLOWED = (-148, "Character data not allowed")
# Legacy numbers are in the driver's Python units already (nm, THz).
_OPTICAL = {"wavelength_nm", "sweep_start_nm", "sweep_stop_nm", "sweep_step_nm", "frequency_thz"}
C_NM_THZ = 299792.458  # c in nm * THz


class TSL570Emulator(ScpiEmulator):
    driver = TSL570
    identity: ClassVar[tuple[str, str, str, str]] = (
        "SANTEC",
        "TSL-570",
        "21020001",
        "0026.0026.0011",
    )
    default_port = 5000
    input_terminators = b"\r\n"  # CR, LF or CRLF all end a command

    def __init__(self, *, command_set: str = "legacy", **kw: Any) -> None:
        # The command set is a persistent system setting, kept over *RST and power
        # cycles; its factory value is not documented, so the bench profile chooses it
        # (Legacy by default).
        sets = {"legacy": 0, "scpi": 1}
        chosen = sets.get(command_set.lower()) if isinstance(command_set, str) else None
        if chosen is None:
            raise ValueError(
                f"command_set must be 'legacy' or 'scpi' (either case), not {command_set!r}"
            )
        self.scpi_mode = chosen
        super().__init__(**kw)

    def power_on_state(self) -> None:
        super().power_on_state()
        self.output = False
        self.shutter = False
        self.power_unit = 0  # dBm
        self.power_setpoint = 0.0
        self.attenuation = 0.0
        self.attenuation_auto = True
        self.wavelength = 1550.0
        self.fine = 0.0
        self.coherence = False
        self.sweep = {
            "start": BAND_NM[0],
            "stop": BAND_NM[1],
            "step": 0.1,
            "mode": 1,
            "speed": 10,
            "dwell": 0.0,
            "delay": 0.0,
            "cycles": 1,
        }
        self.sweep_running = False
        self.sweeps_done = 0
        self._push_to_world()

    def _push_to_world(self) -> None:
        """Tell the emulated world what light this laser now emits (if it is wired in)."""
        if self.world is None or not self.component:
            return
        laser = self.world.component(self.component)
        laser.enabled = self.output and not self.shutter
        laser.wavelength_nm = self.wavelength
        laser.power_mw = self._actual_mw()

    # --- number formats of the two command sets ---

    def _fmt(self, value: float, legacy: str, scale: float = 1.0) -> Raw:
        return Raw(nr3(value * scale) if self.scpi_mode else legacy.format(value))

    def _int(self, value: int) -> Raw:
        return Raw(f"{value:+d}" if self.scpi_mode else f"{value:d}")

    def _parse(self, decl: Any, field: str, text: str) -> Any:
        vt = decl.value if field == "value" else decl.args[field]
        word = special_word(text)
        if decl.name == "power_setpoint" and field == "value" and word:
            lo, hi = self._power_limits()
            # DEF: 0 dBm, in the current unit.
            return {"MIN": lo, "MAX": hi, "DEF": 1.0 if self.power_unit else 0.0}[word]
        if not isinstance(vt, Float) or word:
            return super()._parse(decl, field, text)
        try:
            number, suffix = split_number(text)
        except ValueError:
            raise ScpiError(*ILLEGAL_PARAMETER) from None
        if suffix and not self.scpi_mode:
            # Manual: "character strings representing a unit cannot be accepted" (Legacy).
            raise ScpiError(*CHARACTER_DATA_NOT_ALLOWED)
        try:
            if decl.name == "power_setpoint":
                value = self._power_in_unit(number, suffix)
            elif decl.name in _OPTICAL and not self.scpi_mode:
                value = number
            else:
                value = vt.parse(text)
            return vt.validate(value)
        except SuffixError as exc:
            raise ScpiError(exc.code, exc.text) from None
        except ValueTypeError:
            raise ScpiError(*DATA_OUT_OF_RANGE) from None

    def _power_in_unit(self, number: float, suffix: str) -> float:
        """A power setting in the current :POW:UNIT, from a number with or without a unit."""
        if not suffix:
            return number
        if suffix == "DBM":
            dbm = number
            return dbm if not self.power_unit else 10 ** (dbm / 10)
        factor = POWER_SUFFIXES.get(suffix)
        if factor is None:
            raise SuffixError(suffix, {"DBM": 1.0, **POWER_SUFFIXES})
        mw = number * factor / 1e-3
        if self.power_unit:
            return mw
        if mw <= 0:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        return 10 * math.log10(mw)

    # --- handlers ---

    @on("reset")
    def _rst(self) -> None:
        # The TSL's *RST also clears the error queue (manual), unlike the SCPI core's.
        super()._rst()
        self.errors.clear()

    @on("command_set.get")
    def _cod_q(self) -> Raw:
        return self._int(self.scpi_mode)

    @on("command_set.set")
    def _cod(self, value: str) -> None:
        self.scpi_mode = 1 if value == "scpi" else 0

    @on("output_enabled.get")
    def _stat_q(self) -> Raw:
        return self._int(int(self.output))

    @on("output_enabled.set")
    def _stat(self, value: bool) -> None:
        self.output = value
        self._push_to_world()

    @on("shutter_closed.get")
    def _shut_q(self) -> Raw:
        return self._int(int(self.shutter))

    @on("shutter_closed.set")
    def _shut(self, value: bool) -> None:
        self.shutter = value
        self._push_to_world()

    @on("power_unit.get")
    def _unit_q(self) -> Raw:
        return self._int(self.power_unit)

    @on("power_unit.set")
    def _unit(self, value: str) -> None:
        mw = self._setpoint_mw()
        self.power_unit = 1 if value == "mW" else 0
        self.power_setpoint = mw if self.power_unit else 10 * math.log10(mw)

    def _power_limits(self) -> tuple[float, float]:
        """Setpoint range in the current unit: -15..+13 dBm, 0.04..20 mW (QMI's figures)."""
        return (0.04, 20.0) if self.power_unit else (-15.0, 13.0)

    def _sweep_range_nm(self) -> tuple[float, float]:
        # At the emulated sweep speed the first 2 nm of the band are not sweepable (choice).
        return BAND_NM[0] + 2.0, BAND_NM[1]

    def _thz(self, thz: float) -> Raw:
        """A frequency, in 10 MHz steps as the TSL resolves it."""
        return self._fmt(round(thz, 5), "{:.5f}", 1e12)

    def _setpoint_mw(self) -> float:
        return self.power_setpoint if self.power_unit else 10 ** (self.power_setpoint / 10)

    def _actual_mw(self) -> float:
        if not self.output or self.shutter:
            return 1e-4  # -40 dBm: the monitor's floor with the diode off
        return self._setpoint_mw() * 10 ** (self.rng.gauss(0.0, 0.002) / 10)

    @on("power_setpoint.get")
    def _pow_q(self) -> Raw:
        return self._fmt(self.power_setpoint, "{:.2f}")

    @on("power_setpoint.set")
    def _pow(self, value: float) -> None:
        lo, hi = self._power_limits()
        if not lo <= value <= hi:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self.power_setpoint = value
        self._push_to_world()

    @on("power_limit.get")
    def _pow_lim(self, which: str) -> Raw:
        lo, hi = self._power_limits()
        return self._fmt(lo if which == "min" else hi, "{:.2f}")

    @on("power_min.get")
    def _pow_min(self) -> Raw:
        return self._fmt(self._power_limits()[0], "{:.2f}")

    @on("power_max.get")
    def _pow_max(self) -> Raw:
        return self._fmt(self._power_limits()[1], "{:.2f}")

    @on("power.get")
    def _pow_act(self) -> Raw:
        mw = self._actual_mw()
        return self._fmt(mw if self.power_unit else 10 * math.log10(mw), "{:.2f}")

    @on("attenuation_db.get")
    def _att_q(self) -> Raw:
        return self._fmt(self.attenuation, "{:.2f}")

    @on("attenuation_db.set")
    def _att(self, value: float) -> None:
        self.attenuation = value

    @on("attenuation_auto.get")
    def _attauto_q(self) -> Raw:
        return self._int(int(self.attenuation_auto))

    @on("attenuation_auto.set")
    def _attauto(self, value: bool) -> None:
        self.attenuation_auto = value

    @on("wavelength_nm.get")
    def _wav_q(self) -> Raw:
        return self._fmt(self.wavelength, "{:.4f}", 1e-9)

    @on("wavelength_nm.set")
    def _wav(self, value: float) -> None:
        self.wavelength = round(value, 4)  # 0.1 pm resolution
        self._push_to_world()

    @on("wavelength_limit_nm.get")
    def _wav_lim(self, which: str) -> Raw:
        return self._fmt(BAND_NM[0] if which == "min" else BAND_NM[1], "{:.4f}", 1e-9)

    @on("wavelength_min_nm.get")
    def _wav_min(self) -> Raw:
        return self._fmt(BAND_NM[0], "{:.4f}", 1e-9)

    @on("wavelength_max_nm.get")
    def _wav_max(self) -> Raw:
        return self._fmt(BAND_NM[1], "{:.4f}", 1e-9)

    @on("frequency_thz.get")
    def _freq_q(self) -> Raw:
        return self._thz(C_NM_THZ / self.wavelength)

    @on("frequency_limit_thz.get")
    def _freq_lim(self, which: str) -> Raw:
        return self._thz(BAND_THZ[0] if which == "min" else BAND_THZ[1])

    @on("frequency_min_thz.get")
    def _freq_min(self) -> Raw:
        return self._thz(BAND_THZ[0])

    @on("frequency_max_thz.get")
    def _freq_max(self) -> Raw:
        return self._thz(BAND_THZ[1])

    @on("frequency_thz.set")
    def _freq(self, value: float) -> None:
        self.wavelength = round(C_NM_THZ / value, 4)
        self._push_to_world()

    @on("fine_tuning.get")
    def _fin_q(self) -> Raw:
        return self._fmt(self.fine, "{:.2f}")

    @on("fine_tuning.set")
    def _fin(self, value: float) -> None:
        self.fine = value

    @on("coherence_control.get")
    def _coh_q(self) -> Raw:
        return self._int(int(self.coherence))

    @on("coherence_control.set")
    def _coh(self, value: bool) -> None:
        self.coherence = value

    @on("sweep_start_nm.get")
    def _swstart_q(self) -> Raw:
        return self._fmt(self.sweep["start"], "{:.4f}", 1e-9)

    @on("sweep_start_nm.set")
    def _swstart(self, value: float) -> None:
        self.sweep["start"] = value

    @on("sweep_stop_nm.get")
    def _swstop_q(self) -> Raw:
        return self._fmt(self.sweep["stop"], "{:.4f}", 1e-9)

    @on("sweep_stop_nm.set")
    def _swstop(self, value: float) -> None:
        self.sweep["stop"] = value

    @on("sweep_step_nm.get")
    def _swstep_q(self) -> Raw:
        return self._fmt(self.sweep["step"], "{:.3f}", 1e-9)  # Legacy: 0.100 (manual)

    @on("sweep_step_nm.set")
    def _swstep(self, value: float) -> None:
        self.sweep["step"] = value

    @on("sweep_mode.get")
    def _swmode_q(self) -> Raw:
        return self._int(int(self.sweep["mode"]))

    @on("sweep_mode.set")
    def _swmode(self, value: int) -> None:
        self.sweep["mode"] = value

    @on("sweep_speed.get")
    def _swspeed_q(self) -> Raw:
        v = float(self.sweep["speed"])
        return Raw(f"{v:+.1f}" if self.scpi_mode else f"{v:.1f}")

    @on("sweep_speed.set")
    def _swspeed(self, value: int) -> None:
        self.sweep["speed"] = value

    @on("sweep_dwell_s.get")
    def _swdwell_q(self) -> Raw:
        return self._fmt(self.sweep["dwell"], "{:.1f}")

    @on("sweep_dwell_s.set")
    def _swdwell(self, value: float) -> None:
        self.sweep["dwell"] = value

    @on("sweep_delay_s.get")
    def _swdelay_q(self) -> Raw:
        return self._fmt(self.sweep["delay"], "{:.1f}")

    @on("sweep_delay_s.set")
    def _swdelay(self, value: float) -> None:
        self.sweep["delay"] = value

    @on("sweep_cycles.get")
    def _swcyc_q(self) -> Raw:
        return self._int(int(self.sweep["cycles"]))

    @on("sweep_cycles.set")
    def _swcyc(self, value: int) -> None:
        self.sweep["cycles"] = value

    @on("sweep_count.get")
    def _swcount(self) -> Raw:
        return self._int(self.sweeps_done)

    @on("sweep_state.get")
    def _swstate_q(self) -> Raw:
        # Simulated time: a started sweep is seen running once, then complete (fast mode
        # advances time to the sweep's end; nothing else on the bench depends on it).
        running = self.sweep_running
        if running:
            self.sweep_running = False
            self.sweeps_done += 1
        return self._int(1 if running else 0)

    @on("sweep_state.set")
    def _swstate(self, value: int) -> None:
        self.sweep_running = bool(value)

    @on("sweep_repeat")
    def _swrep(self) -> None:
        self.sweep_running = True

    @on("sweep_range_min_nm.get")
    def _swrange_min(self) -> Raw:
        return self._fmt(self._sweep_range_nm()[0], "{:.4f}", 1e-9)

    @on("sweep_range_max_nm.get")
    def _swrange_max(self) -> Raw:
        return self._fmt(self._sweep_range_nm()[1], "{:.4f}", 1e-9)

    @on("sweep_range_min_thz.get")
    def _swrange_fmin(self) -> Raw:
        return self._thz(C_NM_THZ / self._sweep_range_nm()[1])

    @on("sweep_range_max_thz.get")
    def _swrange_fmax(self) -> Raw:
        return self._thz(C_NM_THZ / self._sweep_range_nm()[0])

    @on("alerts.get")
    def _alerts(self) -> Raw:
        return Raw("No alerts.")

    @on("firmware_version.get")
    def _vers(self) -> Raw:
        return Raw("0026.0026.0011")

    @on("product_code.get")
    def _code(self) -> Raw:
        return Raw("C-480640-P-F-AP-00-1")

    def default_for(self, name: str, field: str) -> Any:
        defaults = {
            "wavelength_nm": 1550.0,
            "frequency_thz": C_NM_THZ / 1550.0,
            "attenuation_db": 0.0,
        }
        if name in defaults:
            return defaults[name]
        return super().default_for(name, field)


__all__ = ["BAND_THZ", "TSL570Emulator"]
