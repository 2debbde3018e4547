"""An optical power meter on a monitor tap of a weak-coherent transmitter.

What a lab measures mean photon numbers with: a calibrated photodiode sensor on a
tap before the transmitter's last fixed attenuator. Its reading is the average
power of the light the pattern generator makes: the mean, over the pattern being
played, of each pulse's mean photon number, times the photon energy and the pulse
rate, times the tap's gain onto the sensor. The sensor adds what a real one does:
its responsivity calibration error (within its stated accuracy; unknown to the
user), a dark offset that zeroing removes, the responsivity's wavelength
dependence when the wavelength correction is set wrong, and noise per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import constants

from .component import Component
from .config import PowerMeterConfig


def photon_energy_j(wavelength_nm: float) -> float:
    return float(constants.h * constants.c / (wavelength_nm * 1e-9))


class PowerMeter(Component):
    """Sensor state (wavelength correction, zero) and its reading of the tapped light."""

    kind = "power_meter"
    cfg: PowerMeterConfig

    def __init__(
        self,
        name: str,
        node: str,
        cfg: PowerMeterConfig,
        now_s: Callable[[], float],
        rng: np.random.Generator,
        world: Any,
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        self._rng = rng
        self._world = world
        self.source = cfg.source if "." in cfg.source else f"{node}.{cfg.source}"
        err = cfg.calibration_error_rel
        # A given sensor's error: fixed for the world's life, drawn once from its seed.
        self.calibration_error_rel = (
            float(rng.uniform(-cfg.accuracy_rel, cfg.accuracy_rel)) if err is None else err
        )

    def reset(self) -> None:
        self.wavelength_nm = 1550.0 if self._in_range(1550.0) else self.cfg.min_wavelength_nm
        self.zero_w = 0.0

    def _in_range(self, nm: float) -> bool:
        return self.cfg.min_wavelength_nm <= nm <= self.cfg.max_wavelength_nm

    def set_wavelength_nm(self, nm: float) -> None:
        self.wavelength_nm = self._finite(
            "wavelength_nm", nm, self.cfg.min_wavelength_nm, self.cfg.max_wavelength_nm
        )

    # -- physics -------------------------------------------------------------------------

    def optical_power_w(self) -> float:
        """True average power at the sensor now (the tapped light of the source)."""
        tx = self._world.transmitter(self.source)
        mus = tx.current_mus()
        levels = tx.pattern >> 2
        mean_mu = float(np.bincount(levels, minlength=mus.size) @ mus) / levels.size
        rate_hz = 1e12 / float(tx.period_ps)
        gain = 10.0 ** (self.cfg.tap_gain_db / 10.0)
        return mean_mu * photon_energy_j(tx.wavelength_nm) * rate_hz * gain

    def _signal_w(self) -> float:
        """What the sensor's calibrated response makes of the light (no offset, no noise)."""
        tx = self._world.transmitter(self.source)
        # A photodiode's responsivity ~ wavelength (constant quantum efficiency): the
        # correction for the wrong wavelength scales the reading by their ratio.
        spectral = tx.wavelength_nm / self.wavelength_nm
        return self.optical_power_w() * (1.0 + self.calibration_error_rel) * spectral

    def read_w(self, samples: int) -> float:
        """One reading: the mean of ``samples`` samples, less the zero."""
        noise = self.cfg.noise_w / math.sqrt(max(1, samples))
        raw = self._signal_w() + self.cfg.dark_offset_w + float(self._rng.normal(0.0, noise))
        return min(raw, self.cfg.max_power_w) - self.zero_w

    def zero(self, samples: int) -> None:
        """Dark zeroing: the user has covered the sensor, which reads its offset."""
        noise = self.cfg.noise_w / math.sqrt(max(1, samples))
        self.zero_w = self.cfg.dark_offset_w + float(self._rng.normal(0.0, noise))
