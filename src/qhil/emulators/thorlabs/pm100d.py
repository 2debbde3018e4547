"""Emulated Thorlabs PM100D power meter (SCPI over USBTMC; here a TCP socket, ``\\n``).

The SCPI core (``*IDN?``, ``SYST:ERR?`` queue, short/long forms, ``;`` compounds)
comes from :class:`ScpiEmulator`; the commands are the driver's declarations. The
sensor head is the world's ``power_meter`` component: each reading is the average
power of the light the transmitter's pattern makes at the monitor tap, with the
sensor's calibration error, dark offset and noise (``world/power_meter.py``).
Without a world the sensor sits in the dark (readings of its noise only).
"""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar

from qhil.drivers.thorlabs.pm100d import PM100D
from qhil.emulators.base import Raw, on
from qhil.emulators.scpi import DATA_OUT_OF_RANGE, ScpiEmulator, ScpiError

_POWER_ON_AVERAGE = 1
# A sensor's wavelength range when there is no world component (S155C-like InGaAs).
_RANGE_NM = (800.0, 1700.0)
_DARK_NOISE_W = 2e-12


def _num(x: float) -> str:
    """The console's reply form for a real, ``1.234567E-06`` (UNVERIFIED)."""
    return f"{x:.6E}"


class PM100DEmulator(ScpiEmulator):
    driver = PM100D
    identity: ClassVar[tuple[str, str, str, str]] = ("Thorlabs", "PM100D", "P0012345", "2.7.0")
    input_terminators = b"\n"
    default_port = None  # USBTMC on the real console; any TCP port here

    def __init__(self, *, sensor: str = "S155C,220101001,01-Jan-2026,1,18,289", **kw: Any) -> None:
        # SYST:SENS:IDN? reply: name, serial, calibration message, type, subtype, flags
        # (flags 289 = power sensor, wavelength settable, temperature sensor; PyMeasure's decoding).
        self.sensor = sensor
        super().__init__(**kw)

    def power_on_state(self) -> None:
        super().power_on_state()
        self.average = _POWER_ON_AVERAGE
        self.auto_range = True
        self.unit = "W"
        self._dark_zero_w = 0.0
        self._dark_rng = random.Random(self.seed)
        self._last_w = 0.0
        # Without a world the emulator holds the wavelength; with one, the head does (its
        # reset picks 1550 nm, or its minimum when the sensor's range excludes 1550).
        self._wavelength_nm = 1550.0
        head = self._head()
        if head is not None:
            head.reset()

    @property
    def wavelength_nm(self) -> float:
        head = self._head()
        return self._wavelength_nm if head is None else float(head.wavelength_nm)

    def _head(self) -> Any:
        if self.world is None or not self.component:
            return None
        return self.world.component(self.component)

    def _range_nm(self) -> tuple[float, float]:
        head = self._head()
        if head is None:
            return _RANGE_NM
        return head.cfg.min_wavelength_nm, head.cfg.max_wavelength_nm

    def _sample_w(self) -> float:
        head = self._head()
        if head is None:
            noise = _DARK_NOISE_W / math.sqrt(self.average)
            return self._dark_rng.gauss(0.0, noise) - self._dark_zero_w
        return float(head.read_w(self.average))

    def _reading(self, watts: float) -> Raw:
        if self.unit == "W":
            return Raw(_num(watts))
        # dBm of a reading at or below zero: the console shows its floor (UNVERIFIED).
        return Raw(_num(10.0 * math.log10(max(watts, 1e-15) / 1e-3)))

    # --- handlers ---

    @on("sensor_idn.get")
    def _sens_idn(self) -> Raw:
        return Raw(self.sensor)

    @on("wavelength_nm.get")
    def _wav_q(self) -> Raw:
        return Raw(_num(self.wavelength_nm))

    @on("wavelength_nm.set")
    def _wav(self, value: float) -> None:
        lo, hi = self._range_nm()
        if not lo <= value <= hi:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        head = self._head()
        if head is None:
            self._wavelength_nm = value
        else:
            head.set_wavelength_nm(value)

    @on("wavelength_limit_nm.get")
    def _wav_lim(self, which: str) -> Raw:
        lo, hi = self._range_nm()
        return Raw(_num(lo if which == "min" else hi))

    @on("average_count.get")
    def _aver_q(self) -> int:
        return self.average

    @on("average_count.set")
    def _aver(self, value: int) -> None:
        self.average = value

    @on("auto_range.get")
    def _rang_q(self) -> Raw:
        return Raw("1" if self.auto_range else "0")

    @on("auto_range.set")
    def _rang(self, value: bool) -> None:
        self.auto_range = value

    @on("power_unit.get")
    def _unit_q(self) -> Raw:
        return Raw(self.unit)

    @on("power_unit.set")
    def _unit(self, value: str) -> None:
        self.unit = value

    @on("zero")
    def _zero(self) -> None:
        head = self._head()
        if head is None:
            self._dark_zero_w += self._sample_w()
        else:
            head.zero(self.average)

    @on("zero_w.get")
    def _zero_q(self) -> Raw:
        head = self._head()
        return Raw(_num(head.zero_w if head is not None else self._dark_zero_w))

    @on("configure_power")
    def _conf(self) -> None:
        pass  # the console measures power only (photodiode sensor)

    @on("initiate")
    def _init(self) -> None:
        self._last_w = self._sample_w()

    @on("fetch.get")
    def _fetc(self) -> Raw:
        return self._reading(self._last_w)

    @on("read.get", "measure_power.get")
    def _read(self) -> Raw:
        self._last_w = self._sample_w()
        return self._reading(self._last_w)

    def default_for(self, name: str, field: str) -> Any:
        if name == "average_count":
            return _POWER_ON_AVERAGE
        return super().default_for(name, field)
