"""Ground truth of the emulated bench, for validation and calibration tests only.

Instruments never see these values; emulators expose only what the real
instrument reports. Calibration routines are tested by comparing what they find
through the instruments with what this module says is true.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from .clock import PS_PER_S, seconds_to_ps
from .detector import Detector
from .errors import UnknownComponentError
from .optics import PolarizationController
from .paths import OpticalPath
from .polarization import F64, quat_mul, quat_to_jones, quat_to_matrix
from .tagger import TagBlock

if TYPE_CHECKING:
    from .world import World


class GroundTruth:
    def __init__(self, world: World) -> None:
        self._w = world

    def _t_ps(self, t_s: float | None) -> int:
        return self._w.clock.now_ps if t_s is None else seconds_to_ps(t_s)

    # -- clocks and links ------------------------------------------------------------------

    # A node's clock reads ``offset + (1 + drift) * t + Phi(t)`` at true time t (s since
    # power-on), Phi the integral of its wander W; its fractional frequency is drift + W(t).
    # These take the true time explicitly (default 0, power-on), not "now".

    def clock_reading_ps(self, node: str, t_s: float) -> Fraction:
        """What ``node``'s clock reads at true time ``t_s`` (exact ps)."""
        return self._w.node(node).clock.node_of_true(seconds_to_ps(t_s))

    def clock_offset_ps(self, node: str, t_s: float = 0.0) -> float:
        """``node``'s clock reading minus true time at ``t_s`` (ps): offset, drift and wander."""
        t_ps = seconds_to_ps(t_s)
        return float(self._w.node(node).clock.node_of_true(t_ps) - t_ps)

    def clock_offset_s(self, node: str, t_s: float = 0.0) -> float:
        """`clock_offset_ps` in seconds; at power-on (``t_s = 0``) the configured offset."""
        t_ps = seconds_to_ps(t_s)
        return float((self._w.node(node).clock.node_of_true(t_ps) - t_ps) / PS_PER_S)

    def clock_true_time_s(self, node: str, reading_ps: int | Fraction) -> float:
        """The true time (s) at which ``node``'s clock reads ``reading_ps``."""
        return float(self._w.node(node).clock.true_of_node(reading_ps) / PS_PER_S)

    def clock_frequency_ppb(self, node: str, t_s: float = 0.0) -> float:
        """``node``'s fractional frequency offset from true time at ``t_s``, drift + W(t), ppb."""
        clock = self._w.node(node).clock
        return clock.drift_ppm * 1e3 + self.clock_wander_ppb(node, t_s)

    def clock_wander_ppb(self, node: str, t_s: float) -> float:
        """W(t): the random-walk part of ``node``'s fractional frequency at ``t_s``, ppb."""
        return float(self._w.node(node).clock.wander(float(seconds_to_ps(t_s)))) * 1e9

    def clock_drift_ppm(self, node: str) -> float:
        """The configured constant frequency offset (without the wander)."""
        return self._w.node(node).clock.drift_ppm

    def clock_wander_ppb_per_sqrt_s(self, node: str) -> float:
        return self._w.node(node).clock.wander_ppb_per_sqrt_s

    def link_delay_s(self, link: str, t_s: float | None = None) -> float:
        return self._w.link(link).delay_at_ps(self._t_ps(t_s)) / PS_PER_S

    def link_transmission(self, link: str) -> float:
        return self._w.link(link).transmission

    def fibre_unitary(self, link: str, t_s: float | None = None) -> npt.NDArray[np.complex128]:
        """Jones matrix of the fibre (a -> b direction) at ``t_s`` (default: now)."""
        return self._w.link(link).unitary_at_ps(self._t_ps(t_s))

    def fibre_rotation(self, link: str, t_s: float | None = None) -> F64:
        return self._w.link(link).rotation_at_ps(self._t_ps(t_s))

    # -- paths -----------------------------------------------------------------------------

    def _path_to(self, source: str, detector: str) -> OpticalPath:
        for key in (source, source + ".signal", source + ".idler"):
            path = self._w._paths.get(key)
            if path is not None and detector in path.detector_names:
                return path
        raise UnknownComponentError(f"no optical path from {source!r} reaches {detector!r}")

    def path_delay_s(self, source: str, detector: str, t_s: float | None = None) -> float:
        """Group delay from the source to the detector's input (fibre, optics, analyzer)."""
        path = self._path_to(source, detector)
        j = self._t_ps(t_s) // self._w.step_ps
        return float(path.delays_ps(j, j)[0]) / PS_PER_S

    def path_transmission(self, source: str, detector: str) -> float:
        """Transmission source -> terminal (losses only; no routing, no detector efficiency)."""
        return self._path_to(source, detector).transmission()

    def path_rotation(self, source: str, t_s: float | None = None) -> F64:
        """Stokes rotation of the whole path of ``source`` (transmitter or ``spdc.signal``)."""
        path = self._w.path(source)
        j = self._t_ps(t_s) // self._w.step_ps
        return path.rotations(j, j)[0]

    def mean_photon_numbers(self, transmitter: str) -> F64:
        """Mean photon number per intensity index entering the first link (or the terminal)."""
        tx = self._w.transmitter(transmitter)
        path = self._w.path(transmitter)
        links = path.links()
        stop = links[0][0] if links else None
        return tx.current_mus() * path.transmission(0, stop, terminal=stop is None)

    def detector_efficiency(self, detector: str) -> float:
        return self._w.detector(detector).efficiency

    def dark_count_rate_hz(self, detector: str) -> float:
        return self._w.detector(detector).dark_count_rate_hz

    def pair_rate_hz(self, spdc: str) -> float:
        return self._w.spdc(spdc).pair_rate_hz

    # -- polarization compensation ---------------------------------------------------------

    def compensating_voltages(self, polctrl: str, source: str, t_s: float | None = None) -> F64:
        """Voltages of ``polctrl`` that make the whole path of ``source`` polarization-neutral
        (identity rotation) at ``t_s`` (default now)."""
        pc = self._w.polarization_controller(polctrl)
        path = self._w.path(source)
        idx = [i for i, pe in enumerate(path.elements) if pe.element is pc]
        if not idx:
            raise UnknownComponentError(f"{polctrl!r} is not on the path of {source!r}")
        i = idx[0]
        j = self._t_ps(t_s) // self._w.step_ps
        before = path.quats(j, j, 0, i)[0]
        after = path.quats(j, j, i + 1)[0]
        target = quat_to_matrix(quat_mul(_conj(after), _conj(before)))
        return _solve_voltages(pc, target)

    # -- timestamps ------------------------------------------------------------------------

    def _tag_offset_ps(self, det: Detector) -> float:
        """Delay from photon arrival at ``det`` to the tagger input (cable + tagger input delay)."""
        delay = det.delay_ps
        if det.tagger is not None and det.channel is not None:
            delay += self._w.tagger(det.tagger).input_delays_ps.get(det.channel, 0.0)
        return delay

    def pulse_indices(
        self, transmitter: str, tagger: str, block: TagBlock
    ) -> npt.NDArray[np.int64]:
        """Index k of the pulse each tag of ``block`` came from (nearest pulse; -1 for channels
        not fed by ``transmitter``'s path). Dark counts map to whatever pulse is nearest."""
        w = self._w
        tx = w.transmitter(transmitter)
        path = w.path(transmitter)
        tg = w.tagger(tagger)
        out = np.full(block.timestamps_ps.size, -1, dtype=np.int64)
        tx_clock = w.node(tx.node).clock
        tg_clock = tg.clock
        period = float(tx.period_ps)
        t0 = float(tx.t0_ps)
        for ch, src in tg.wiring.items():
            if src not in path.detector_names:
                continue
            sel = block.channels == ch
            if not sel.any():
                continue
            det = w.detector(src)
            ts = block.timestamps_ps[sel].astype(np.float64)
            # Tagger clock -> true time -> minus cable and path delays -> transmitter clock.
            true = tg_clock.true_of_node_f(ts) - self._tag_offset_ps(det)
            j = np.clip(true // w.step_ps, 0, None).astype(np.int64)
            j_lo, j_hi = int(j.min()), int(j.max())
            emitted = true - path.delays_ps(j_lo, j_hi)[j - j_lo]
            tx_time = tx_clock.node_of_true_f(emitted)
            out[sel] = np.rint((tx_time - t0) / period).astype(np.int64)
        return out

    def expected_timestamp_ps(self, source: str, detector: str, emitted_s: float) -> float:
        """Timestamp (tagger's node clock, before jitter and binning) of a photon emitted by
        ``source`` at true time ``emitted_s`` and detected by ``detector``."""
        w = self._w
        det = w.detector(detector)
        if det.tagger is None:
            raise UnknownComponentError(f"{detector!r} is not wired to a tagger")
        t_ps = seconds_to_ps(emitted_s)
        path = self._path_to(source, detector)
        j = t_ps // w.step_ps
        arrival = t_ps + float(path.delays_ps(j, j)[0]) + self._tag_offset_ps(det)
        clock = w.tagger(det.tagger).clock
        stamp = float(clock.node_of_true(0)) + arrival * clock.rate
        if clock.wanders:
            stamp += float(clock.phase_ps(arrival))
        return stamp

    def expected_delta_ps(self, source: str, det_a: str, det_b: str, emitted_s: float) -> float:
        """Timestamp difference B - A of the two photons of a pair emitted at ``emitted_s``."""
        return self.expected_timestamp_ps(source, det_b, emitted_s) - self.expected_timestamp_ps(
            source, det_a, emitted_s
        )


def _conj(q: F64) -> F64:
    out = np.array(q, dtype=float, copy=True)
    out[1:] = -out[1:]
    return out


def _solve_voltages(pc: PolarizationController, target: F64) -> F64:
    """Voltages whose rotation equals ``target`` (3x3), by least squares from several starts."""
    vmax = pc.max_voltage_mv
    span = min(vmax, 2.0 * float(pc.half_wave_voltages_mv.max()))
    rng = np.random.default_rng(0)

    def resid(v: F64) -> F64:
        return (quat_to_matrix(pc.quat_for(v)) - target).ravel()

    best: F64 | None = None
    best_cost = math.inf
    for _ in range(40):
        x0 = rng.uniform(-span, span, pc.n_channels)
        sol = least_squares(resid, x0, bounds=(-vmax, vmax), xtol=1e-12, ftol=1e-12, gtol=1e-12)
        if sol.cost < best_cost:
            best, best_cost = sol.x, sol.cost
        if best_cost < 1e-16:
            break
    assert best is not None
    return np.asarray(best)


__all__ = ["GroundTruth", "quat_to_jones"]
