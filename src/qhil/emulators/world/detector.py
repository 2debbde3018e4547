"""Threshold single-photon detectors: bias curves, gating, dark counts, dead time,
afterpulsing and timing jitter, applied per acquisition batch in vectorised passes.

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
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import numpy as np
from scipy.special import ndtr

from .clock import NodeClock
from .component import Component
from .config import DetectorConfig
from .deadtime import DeadTimeFilter
from .polarization import F64
from .rng import bernoulli_positions, standard_normal

_AFTERPULSE_GENERATIONS = 6
JITTER_CLIP_SIGMAS = 8.0
_EMPTY = np.zeros(0)
_SHORT_RUN = 4096


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
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        self.clock = clock
        self.rng = rng
        self.tagger: str | None = None
        self.channel: int | None = None

    def reset(self) -> None:
        c = self.cfg
        self.enabled = c.enabled
        self._bias = c.nominal_bias if c.bias is None else c.bias
        self._threshold_v = c.threshold_v
        self._temperature_c = c.temperature_c
        self.gate_enabled = c.gate_enabled
        self._gate_frequency_hz = c.gate_frequency_hz
        self._gate_width_ns = c.gate_width_ns
        self._gate_delay_ns = c.gate_delay_ns
        self.reset_state()

    def reset_state(self) -> None:
        """Forget in-flight photons and the dead-time history (cold start)."""
        self._pending = np.zeros(0)
        self._last = -math.inf

    # -- settings ------------------------------------------------------------------------

    @property
    def bias(self) -> float:
        return self._bias

    @bias.setter
    def bias(self, value: float) -> None:
        self._bias = self._finite("bias", value, 0.0, self.cfg.max_bias)

    bias_v = bias
    bias_ua = bias

    @property
    def threshold_v(self) -> float:
        return self._threshold_v

    @threshold_v.setter
    def threshold_v(self, value: float) -> None:
        self._threshold_v = self._finite("threshold_v", value, 0.0, 100.0)

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
        if not self.enabled:
            return 0.0
        g_nom = self._gain(self.cfg.nominal_bias)
        eta = self.cfg.efficiency * self._gain(self._bias) / g_nom if g_nom > 0 else 0.0
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
        phase = np.mod(phase0 + rel * self.clock.rate, float(period))
        return phase < self._gate_width_ns * 1e3

    def _noise(self, length_ps: int, rate_hz: float) -> F64:
        n = self.rng.poisson(rate_hz * length_ps * 1e-12)
        return np.sort(self.rng.uniform(0.0, length_ps, n))

    def process_batch(
        self, base_ps: int, length_ps: int, arrivals: list[F64], background_hz: float
    ) -> F64:
        """Register this batch's avalanches; return output pulse times (ps from ``base_ps``)."""
        return process_batches([self], base_ps, length_ps, {self.name: arrivals}, {})[self.name]

    def _arrived(
        self, base_ps: int, length_ps: int, arrivals: list[F64], background_hz: float
    ) -> F64 | None:
        """This batch's avalanches (sorted, gated), the later ones kept pending; None if
        the detector is off."""
        noise_rate = self.dark_count_rate_hz + background_hz if self.enabled else 0.0
        parts = [a for a in (self._pending, *arrivals) if a.size]
        if noise_rate > 0:
            parts.append(self._noise(length_ps, noise_rate))
        # The parts are sorted runs (nearly: jitter), consecutive for the main source. The
        # short ones are sorted together first, so the stable sort has one merge to do.
        short = [a for a in parts if a.size < _SHORT_RUN]
        if 1 < len(short) < len(parts):
            small = np.concatenate(short)
            small.sort(kind="stable")
            parts = [a for a in parts if a.size >= _SHORT_RUN] + [small]
        ev = np.concatenate(parts) if len(parts) > 1 else (parts[0].copy() if parts else _EMPTY)
        ev.sort(kind="stable")
        cut = int(np.searchsorted(ev, length_ps, side="left"))
        self._pending = ev[cut:] - length_ps
        ev = ev[:cut]
        if not self.enabled:
            self._last -= length_ps
            return None
        if self.gate_enabled and ev.size:
            ev = ev[self._in_gate(base_ps, ev)]
        return ev

    def _registered(self, reg: F64, latest: float, length_ps: int) -> F64:
        """Output pulses of the registered avalanches (``latest``: the last of them)."""
        if reg.size:
            self._last = latest - length_ps
        else:
            self._last -= length_ps
        return self._output(reg)

    def _output(self, reg: F64) -> F64:
        """Output pulse times: avalanche + Gaussian jitter (+ exponential tail) + cable delay."""
        c = self.cfg
        if reg.size == 0:
            return reg
        if c.jitter_ps > 0:
            out = standard_normal(self.rng, reg.size, c.jitter_ps)
            out += reg
        else:
            out = reg.copy()
        if c.jitter_tail_fraction > 0 and c.jitter_tail_ps > 0:
            tail = np.flatnonzero(self.rng.random(reg.size) < c.jitter_tail_fraction)
            out[tail] += self.rng.exponential(c.jitter_tail_ps, tail.size)
        if self.delay_ps:
            out += self.delay_ps
        return out


def process_batches(
    dets: Sequence[Detector],
    base_ps: int,
    length_ps: int,
    arrivals: Mapping[str, list[F64]],
    background_hz: Mapping[str, float],
) -> dict[str, F64]:
    """`Detector.process_batch` for several detectors at once.

    Detectors with the same dead time share one dead-time stream (each in its own
    segment, far enough apart not to interact), so the registration and the afterpulse
    generations cost a few large vectorised calls instead of a few per detector. Every
    detector still draws from its own generator, in the same order as on its own.
    """
    out: dict[str, F64] = {}
    groups: dict[float, list[tuple[Detector, F64]]] = {}
    for det in dets:
        ev = det._arrived(
            base_ps, length_ps, arrivals.get(det.name, []), background_hz.get(det.name, 0.0)
        )
        if ev is None:
            out[det.name] = np.zeros(0)
        else:
            groups.setdefault(det.dead_time_ps, []).append((det, ev))
    for tau, members in groups.items():
        regs = _register(members, tau, base_ps, length_ps)
        for (det, _), (reg, latest) in zip(members, regs, strict=True):
            out[det.name] = det._registered(reg, latest, length_ps)
    return out


def _register(
    members: list[tuple[Detector, F64]], tau: float, base_ps: int, length_ps: int
) -> list[tuple[F64, float]]:
    """Registered avalanches (and afterpulses) of detectors sharing the dead time ``tau``:
    per detector (times, the latest of them)."""
    span = float(length_ps) + max(tau, 0.0) + 1.0  # segment i starts at i * span
    # Avalanches inside the dead time of a detector's previous click never register and
    # block nothing: they stay out of the shared stream (but keep their index for draws).
    firsts = [
        int(np.searchsorted(ev, det._last + tau, side="left")) if tau > 0 else 0
        for det, ev in members
    ]
    sizes = [ev.size - f for (_, ev), f in zip(members, firsts, strict=True)]
    starts = np.cumsum([0, *sizes]).tolist()
    joint = np.empty(starts[-1])
    for i, ((_, ev), f) in enumerate(zip(members, firsts, strict=True)):
        np.add(ev[f:], i * span, out=joint[starts[i] : starts[i + 1]])
    filt = DeadTimeFilter(joint, tau)
    added: list[F64] = []  # afterpulse times as added to the filter, per (call, detector)
    owners: list[int] = []
    carry: list[list[F64]] = [[] for _ in members]
    parents: list[F64 | None] = [None] * len(members)
    for i, (det, ev) in enumerate(members):
        if det.afterpulse_probability > 0 and ev.size:
            # Each registered avalanche triggers an afterpulse with probability p: draw over
            # all events and keep the draws of registered ones (cheaper than selecting first).
            hit = bernoulli_positions(det.rng, ev.size, det.afterpulse_probability)
            hit = hit[hit >= firsts[i]]
            parents[i] = ev.take(hit[filt.keep.take(hit - firsts[i] + starts[i])])
    for gen in range(_AFTERPULSE_GENERATIONS):
        new: list[F64] = []
        new_owner: list[int] = []
        for i, (det, _) in enumerate(members):
            par = parents[i]
            if par is None:
                continue
            rng = det.rng
            if gen:
                par = par.take(bernoulli_positions(rng, par.size, det.afterpulse_probability))
            if par.size == 0:
                parents[i] = None
                continue
            tau_ap = det.cfg.afterpulse_time_constant_ns * 1e3
            ap = par + tau + rng.exponential(tau_ap, par.size)
            if det.gate_enabled:
                ap = ap[det._in_gate(base_ps, ap)]
            ap.sort()
            cut = int(np.searchsorted(ap, length_ps, side="left"))
            if cut < ap.size:
                carry[i].append(ap[cut:] - length_ps)
            if cut == 0:
                parents[i] = None
                continue
            new.append(ap[:cut])
            new_owner.append(i)
        if not new:
            break
        # Afterpulses are few: only the clusters they join are redone. The ones that
        # register trigger the next generation.
        reg_new = filt.add(
            np.concatenate([a + i * span for a, i in zip(new, new_owner, strict=True)])
        )
        at = 0
        for a, i in zip(new, new_owner, strict=True):
            parents[i] = a[reg_new[at : at + a.size]]
            at += a.size
        added += new
        owners += new_owner
    out: list[tuple[F64, float]] = []
    extra_keep = filt.extra_keep
    extra_at = np.cumsum([0, *(a.size for a in added)]).tolist()
    for i, ((det, ev), f) in enumerate(zip(members, firsts, strict=True)):
        if carry[i]:
            det._pending = np.concatenate([det._pending, *carry[i]])
        reg = ev[f:][filt.keep[starts[i] : starts[i + 1]]]
        mine = [
            a[extra_keep[extra_at[k] : extra_at[k + 1]]]
            for k, (a, o) in enumerate(zip(added, owners, strict=True))
            if o == i
        ]
        mine = [m for m in mine if m.size]
        latest = float(reg[-1]) if reg.size else -math.inf
        if mine:
            # Registered afterpulses (few) at the end, out of order: the tagger sorts.
            latest = max(latest, *(float(m.max()) for m in mine))
            reg = np.concatenate([reg, *mine])
        out.append((reg, latest))
    return out
