"""Threshold single-photon detectors: bias curves, gating, dark counts, dead time,
afterpulsing and timing jitter. A `Detector` holds one detector's settings and curves;
`bank.DetectorBank` applies the physics to all detectors' avalanches at once, batch by
batch, in vectorised passes over one time-ordered stream.

Order of the physics inside one batch (times are float64 ps from the batch start):
photon arrivals (already thinned by the efficiency) and noise avalanches (dark +
background) -> gate filter -> non-paralysable dead time (every registered avalanche,
dark or afterpulse included, blinds the detector for ``dead_time_ns``) -> afterpulses
(each registered avalanche triggers one with probability p, at dead time + Exp(tau)
after it, then they pass the same dead time; up to a few generations) -> jitter
(Gaussian sigma plus an optional exponential tail) and the cable delay -> output
pulses to the tagger. Sub-threshold avalanches are lost without
dead time (the discriminator never fires).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
from scipy.special import ndtr

from .clock import NodeClock
from .component import Component
from .config import DetectorConfig
from .polarization import F64

JITTER_CLIP_SIGMAS = 8.0


class Detector(Component):
    """A SPAD (bias in V) or SNSPD (bias in uA) with its curves; see the package README."""

    kind = "detector"
    cfg: DetectorConfig

    def __init__(
        self,
        name: str,
        node: str,
        cfg: DetectorConfig,
        now_s: Callable[[], float],
        clock: NodeClock,
        rng: np.random.Generator,
        age_days: float = 0.0,
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        self.clock = clock
        self.rng = rng
        self.age_days = age_days  # the world's: drift over days (efficiency_drift_per_day)
        self._efficiency_key: tuple[object, ...] = ()
        self._efficiency = 0.0
        self.tagger: str | None = None
        self.channel: int | None = None

    def reset(self) -> None:
        c = self.cfg
        self._enabled = c.enabled
        self._bias = c.nominal_bias if c.bias is None else c.bias
        self._threshold_v = c.threshold_v
        self._temperature_c = c.temperature_c
        self.gate_enabled = c.gate_enabled
        self._gate_frequency_hz = c.gate_frequency_hz
        self._gate_width_ns = c.gate_width_ns
        self._gate_delay_ns = c.gate_delay_ns

    # -- settings ------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        changed = bool(value) != self._enabled
        self._enabled = bool(value)
        if changed:
            self._notify()

    @property
    def bias(self) -> float:
        return self._bias

    @bias.setter
    def bias(self, value: float) -> None:
        self._bias = self._finite("bias", value, 0.0, self.cfg.max_bias)
        self._notify()

    bias_v = bias
    bias_ua = bias

    @property
    def threshold_v(self) -> float:
        return self._threshold_v

    @threshold_v.setter
    def threshold_v(self, value: float) -> None:
        self._threshold_v = self._finite("threshold_v", value, 0.0, 100.0)
        self._notify()

    @property
    def temperature_c(self) -> float:
        return self._temperature_c

    def set_temperature_c(self, value: float) -> None:
        self._temperature_c = self._finite("temperature_c", value, -273.15, 150.0)

    @property
    def gate_frequency_hz(self) -> float:
        return self._gate_frequency_hz

    @gate_frequency_hz.setter
    def gate_frequency_hz(self, value: float) -> None:
        self._gate_frequency_hz = self._finite("gate_frequency_hz", value, 1.0, 10e9)
        self._check_gate()

    @property
    def gate_width_ns(self) -> float:
        return self._gate_width_ns

    @gate_width_ns.setter
    def gate_width_ns(self, value: float) -> None:
        self._gate_width_ns = self._finite("gate_width_ns", value, 1e-3, 1e9)
        self._check_gate()

    @property
    def gate_delay_ns(self) -> float:
        return self._gate_delay_ns

    @gate_delay_ns.setter
    def gate_delay_ns(self, value: float) -> None:
        self._gate_delay_ns = self._finite("gate_delay_ns", value, 0.0, 1e9)

    def _check_gate(self) -> None:
        if self._gate_width_ns * 1e-9 * self._gate_frequency_hz > 1.0:
            raise self._bad("gate_width_ns", self._gate_width_ns, "shorter than the gate period")

    # -- curves --------------------------------------------------------------------------

    def _gain(self, bias: float) -> float:
        c = self.cfg
        if c.bias_model == "spad":
            excess = bias - c.onset_bias
            return 0.0 if excess <= 0 else 1.0 - math.exp(-excess / c.efficiency_bias_scale)
        return 1.0 / (1.0 + math.exp(-(bias - c.onset_bias) / c.efficiency_bias_scale))

    def _pulse_amplitude_v(self) -> float:
        c = self.cfg
        drive = self._bias - c.onset_bias if c.bias_model == "spad" else self._bias
        return max(0.0, drive) * c.pulse_amplitude_per_bias

    @property
    def threshold_pass(self) -> float:
        """Fraction of avalanches whose pulse exceeds the discriminator threshold."""
        amp = self._pulse_amplitude_v()
        if amp <= 0:
            return 0.0
        return float(ndtr((amp - self._threshold_v) / (0.1 * amp)))

    @property
    def efficiency(self) -> float:
        """Probability that a photon reaching the detector gives a counted click."""
        # Read for every batch by every path and background source: kept per setting.
        key = (self.enabled, self._bias, self._threshold_v, id(self.cfg))
        if key != self._efficiency_key:
            self._efficiency_key = key
            self._efficiency = self._compute_efficiency()
        return self._efficiency

    def _compute_efficiency(self) -> float:
        if not self.enabled:
            return 0.0
        g_nom = self._gain(self.cfg.nominal_bias)
        eta = self.cfg.efficiency * self._gain(self._bias) / g_nom if g_nom > 0 else 0.0
        if self.cfg.efficiency_drift_per_day:  # skipped at 0: bit-identical without drift
            eta *= max(0.0, 1.0 + self.cfg.efficiency_drift_per_day * self.age_days)
        return min(1.0, eta) * self.threshold_pass

    @property
    def dark_count_rate_hz(self) -> float:
        """Counted dark-count rate (free-running, before dead time)."""
        c = self.cfg
        if not self.enabled or (c.bias_model == "spad" and self._bias <= c.onset_bias):
            return 0.0
        rate = c.dark_count_rate_hz * math.exp((self._bias - c.nominal_bias) / c.dark_bias_scale)
        rate *= 2.0 ** ((self._temperature_c - c.temperature_c) / c.dark_doubling_c)
        return rate * self.threshold_pass

    @property
    def afterpulse_probability(self) -> float:
        c = self.cfg
        if c.afterpulse_probability == 0 or not self.enabled:
            return 0.0
        if c.bias_model == "spad":
            nom = c.nominal_bias - c.onset_bias
            p = c.afterpulse_probability * max(0.0, self._bias - c.onset_bias) / nom
        else:
            p = c.afterpulse_probability
        return min(0.5, p) * self.threshold_pass

    @property
    def dead_time_ps(self) -> float:
        return self.cfg.dead_time_ns * 1e3

    @property
    def delay_ps(self) -> float:
        return self.cfg.delay_ns * 1e3

    @property
    def jitter_guard_ps(self) -> float:
        """How much earlier than its avalanche an output pulse can be (Gaussian part, clipped)."""
        return JITTER_CLIP_SIGMAS * self.cfg.jitter_ps

    # -- batch processing ----------------------------------------------------------------

    def _in_gate(self, base_ps: int, rel: F64) -> np.ndarray:
        period = Fraction(10**12) / Fraction(self._gate_frequency_hz)
        node0 = self.clock.node_of_true(base_ps) - Fraction(self._gate_delay_ns) * 1000
        phase0 = float(node0 % period)
        phase = np.mod(phase0 + self.clock.node_delta_ps(base_ps, rel), float(period))
        return phase < self._gate_width_ns * 1e3

    def _noise(self, length_ps: int, rate_hz: float) -> F64:
        n = self.rng.poisson(rate_hz * length_ps * 1e-12)
        return np.sort(self.rng.uniform(0.0, length_ps, n))
