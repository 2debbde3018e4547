"""All the detectors of a world as one bank: their avalanches in ONE time-ordered stream.

Each batch's photon arrivals (from every source, already labelled with their detector),
dark counts, background and the afterpulses carried over from the previous batch are
merged into a single sorted stream of (time, detector). Gating, the dead time left by
the previous batch, the non-paralysable dead time (`deadtime.JointDeadTime`),
afterpulsing, jitter and cable delays then act on that stream as a whole, each
detector's parameters read through lookup tables, never by splitting the stream per
detector. The registered output pulses leave nearly in time order (jitter and the
afterpulses appended at the end are all that is out of place), so a tagger's sort has
next to nothing to do. `detector.py` holds each detector's settings and curves.

Randomness: dark counts come from each detector's own generator; jitter and afterpulses,
drawn for the whole stream at once, from the bank's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .deadtime import JointDeadTime
from .detector import Detector
from .polarization import F64
from .rng import bernoulli_positions, standard_normal

IntArr = npt.NDArray[np.intp]
# Bank indices of a stream's events: intp, or int16 where they fit (less memory to move).
DetArr = npt.NDArray[np.signedinteger[Any]]
_AFTERPULSE_GENERATIONS = 6
# The last registered click of each detector is looked for in this many final events first.
_LAST_WINDOW = 4096


@dataclass(frozen=True)
class Arrivals:
    """Avalanche candidates of one batch: times (ps from the batch start) and the bank
    index of each one's detector; ``ordered``: the times are non-decreasing."""

    t: F64
    det: DetArr
    ordered: bool = False
    # For a part sampled alongside an ordered one (a transmitter's multi-click pulses):
    # that part's times, and how many of them come before each of these events.
    hint: tuple[F64, IntArr] | None = None
    # Which transmitter's photons these are (-1: none's: afterpulses and the like).
    source: int = -1

    def after(self, shift: float) -> Arrivals:
        """The part at or after ``shift``, moved back by it (warm-up windows)."""
        t = self.t - shift
        keep = np.flatnonzero(t >= 0)
        return Arrivals(t.take(keep), self.det.take(keep), self.ordered, source=self.source)


def _cut(parts: list[Arrivals], length: float) -> tuple[list[Arrivals], list[Arrivals]]:
    """Each part split into its events before ``length`` and those after (moved back by
    it, for the next batch), hints kept pointing at the parts they refer to."""
    within: list[Arrivals] = []
    beyond: list[Arrivals] = []
    moved: dict[int, F64] = {}  # id of a part's times -> its kept head
    for p in parts:
        if p.t.size == 0:
            continue
        if p.ordered:
            c = int(np.searchsorted(p.t, length, side="left"))
            head_t, head_d = p.t[:c], p.det[:c]
            tail_t, tail_d = p.t[c:], p.det[c:]
        else:
            early = p.t < length
            head_t, head_d = p.t[early], p.det[early]
            tail_t, tail_d = p.t[~early], p.det[~early]
        moved[id(p.t)] = head_t
        hint = None
        if p.hint is not None and id(p.hint[0]) in moved:
            hint = (moved[id(p.hint[0])], p.hint[1] if p.ordered else p.hint[1][early])
        if head_t.size:
            within.append(Arrivals(head_t, head_d, p.ordered, hint, p.source))
        if tail_t.size:
            beyond.append(Arrivals(tail_t - length, tail_d, p.ordered, None, p.source))
    return within, beyond


def merge(
    parts: list[Arrivals], det_dtype: type[np.signedinteger[Any]] = np.intp
) -> tuple[F64, DetArr]:
    """One time-ordered stream (times, detectors) from several parts.

    The common case, one long ordered part (a transmitter's photons) and a few short ones
    (noise, multi-click pulses with their places in the long one, carried events), costs
    a scatter, not a sort; its detectors are then written as ``det_dtype`` (a narrower
    type: less memory to move in every later pass over the stream).
    """
    parts = [p for p in parts if p.t.size]
    if not parts:
        return np.zeros(0), np.zeros(0, np.intp)
    big = max(parts, key=lambda p: p.t.size)
    rest = [p for p in parts if p is not big]
    if not rest and big.ordered:
        return big.t, big.det
    n_rest = sum(p.t.size for p in rest)
    if not big.ordered or n_rest > big.t.size:
        t = np.concatenate([p.t for p in parts])
        d = np.concatenate([p.det for p in parts])
        order = np.argsort(t, kind="stable")
        return t.take(order), d.take(order)
    # Where each short part's events go among the long part's: its hint, or a search.
    places = [p.hint[1] if p.hint is not None and p.hint[0] is big.t else None for p in rest]
    et = np.concatenate([p.t for p in rest])
    ed = np.concatenate([p.det for p in rest])
    order = np.argsort(et, kind="stable")  # a few sorted runs: cheap
    known = np.concatenate(
        [
            np.full(p.t.size, -1, np.intp) if h is None else h
            for p, h in zip(rest, places, strict=True)
        ]
    ).take(order)
    et, ed = et.take(order), ed.take(order)
    unknown = np.flatnonzero(known < 0)
    known[unknown] = np.searchsorted(big.t, et.take(unknown), side="right")
    # Equal times: a hinted event may sit before a searched one; keep the places monotone.
    np.maximum.accumulate(known, out=known)
    n = big.t.size + et.size
    at = known + np.arange(et.size)
    inserted = np.zeros(n, dtype=bool)
    inserted[at] = True
    t = np.empty(n)
    d = np.empty(n, det_dtype)
    t[at] = et
    d[at] = ed
    # Boolean-mask assignment: much cheaper than scattering by an index array.
    free = ~inserted
    t[free] = big.t
    d[free] = big.det
    return t, d


class DetectorBank:
    """Detectors processed together batch by batch (those wired to one tagger)."""

    def __init__(self, key: str, detectors: list[Detector]) -> None:
        self.key = key
        self.detectors = detectors
        self.index = {d.name: i for i, d in enumerate(detectors)}
        self.rng = np.random.default_rng(0)  # the world seeds it at reset
        self._key: tuple[object, ...] = ()
        self._cached: dict[str, F64] = {}
        self.reset_state()

    def reset_state(self) -> None:
        """Forget in-flight photons and the dead-time history (cold start)."""
        self._pending: list[Arrivals] = []
        self._last = np.full(len(self.detectors), -math.inf)

    def replace_in_flight(self, source: int, parts: list[Arrivals]) -> None:
        """Swap the photons of transmitter ``source`` still to arrive (times from the next
        batch's start) for ``parts``: a setting on their way changed."""
        self._pending = [p for p in self._pending if p.source != source] + parts

    def _table(self, values: list[float], void: float = 0.0) -> F64:
        # Index -1 (a void event) reads the extra last entry.
        return np.array([*values, void], dtype=float)

    def _tables(self) -> dict[str, F64]:
        """Per-detector parameters as lookup tables, rebuilt only when a setting changed
        (the curves behind them cost more than the comparison)."""
        key = tuple(
            (
                id(d.cfg),
                d.enabled,
                d.bias,
                d.threshold_v,
                d.temperature_c,
                d.gate_enabled,
                d.gate_frequency_hz,
                d.gate_width_ns,
                d.gate_delay_ns,
            )
            for d in self.detectors
        )
        if key != self._key:
            dets = self.detectors
            self._key = key
            self._cached = {
                "enabled": self._table([float(d.enabled) for d in dets]),
                "dark_hz": self._table([d.dark_count_rate_hz for d in dets]),
                "tau": self._table([d.dead_time_ps for d in dets]),
                "p_ap": self._table([d.afterpulse_probability for d in dets]),
                "tau_ap": self._table([d.cfg.afterpulse_time_constant_ns * 1e3 for d in dets]),
                "sigma": self._table([d.cfg.jitter_ps for d in dets]),
                "tail_frac": self._table([d.cfg.jitter_tail_fraction for d in dets]),
                "tail_ps": self._table([d.cfg.jitter_tail_ps for d in dets]),
                "delay": self._table([d.delay_ps for d in dets]),
            }
        return self._cached

    def process(
        self, base_ps: int, length_ps: int, parts: list[Arrivals], background_hz: F64
    ) -> tuple[F64, IntArr]:
        """Register this batch's avalanches; return the output pulses (ps from ``base_ps``,
        nearly sorted) and their detectors."""
        dets = self.detectors
        n_det = len(dets)
        tab = self._tables()
        enabled = tab["enabled"] > 0
        noise: list[Arrivals] = []
        rates = np.where(enabled[:-1], tab["dark_hz"][:-1] + background_hz, 0.0)
        for i, det in enumerate(dets):
            rate = float(rates[i])
            if rate > 0:
                tn = det._noise(length_ps, rate)
                noise.append(Arrivals(tn, np.full(tn.size, i, np.intp), True))
        within, carried = _cut([*self._pending, *parts], length_ps)
        # Bank indices as int16 (with -1 for void events) while they fit.
        t, d = merge([*within, *noise], np.int16 if n_det < 1 << 15 else np.intp)
        # Void: photons at switched-off detectors, and outside a gate (no avalanche).
        voids = False
        if not enabled[:-1].all():
            d[~enabled.take(d)] = -1
            voids = True
        for i, det in enumerate(dets):
            if det.enabled and det.gate_enabled:
                at = np.flatnonzero(d == i)
                d[at[~det._in_gate(base_ps, t.take(at))]] = -1
                voids = True

        tau_of = tab["tau"][:-1]
        span = float(length_ps) + 2.0 * float(tau_of.max(initial=0.0)) + 1.0
        jdt = JointDeadTime(t, d, tau_of, self._last, span, voids)
        self._afterpulses(jdt, base_ps, length_ps, carried, tab)

        keep = jdt.keep
        reg_t, reg_d = t[keep], d[keep]
        xt = jdt.extra_t[jdt.extra_keep]
        xd = jdt.extra_d[jdt.extra_keep]
        latest = np.full(n_det + 1, -math.inf)
        tail = slice(max(0, reg_t.size - _LAST_WINDOW), None)
        np.maximum.at(latest, reg_d[tail], reg_t[tail])
        missing = np.isinf(latest[:-1])
        if missing.any() and reg_t.size > _LAST_WINDOW:
            # Detectors with no click among the final events: those that clicked at all.
            missing &= np.bincount(reg_d, minlength=n_det) > 0
            for k in np.flatnonzero(missing):
                latest[k] = reg_t[np.flatnonzero(reg_d == k)[-1]]
        np.maximum.at(latest, xd, xt)
        self._last = np.maximum(self._last, latest[:-1]) - length_ps
        self._pending = [p for p in carried if p.t.size]
        return self._output(reg_t, reg_d, xt, xd, tab)

    def _afterpulses(
        self,
        jdt: JointDeadTime,
        base_ps: int,
        length_ps: int,
        carried: list[Arrivals],
        tab: dict[str, F64],
    ) -> None:
        """Each registered avalanche triggers an afterpulse with probability p, dead time +
        Exp(tau_ap) later; those register (or not) like any avalanche and trigger the next
        generation. Afterpulses beyond the batch go to ``carried``."""
        dets, rng = self.detectors, self.rng
        p_of = tab["p_ap"]
        p_max = float(p_of.max())
        t, d = jdt.t, jdt.det
        if p_max <= 0 or t.size == 0:
            return
        tau_of = tab["tau"]
        tau_ap_of = tab["tau_ap"]
        uniform = bool(np.all(p_of[:-1] == p_max))
        gated = [i for i, det in enumerate(dets) if det.gate_enabled]
        # First generation: draws over every event, kept for the registered ones.
        hit = bernoulli_positions(rng, t.size, p_max)
        par: IntArr | None = hit[jdt.keep.take(hit)]  # parents' indices in the stream
        assert par is not None
        par_t, par_d = t.take(par), d.take(par)
        for gen in range(_AFTERPULSE_GENERATIONS):
            if gen:
                pick = bernoulli_positions(rng, par_t.size, p_max)
                par_t, par_d = par_t.take(pick), par_d.take(pick)
            if not uniform and par_t.size:
                thin = np.flatnonzero(rng.random(par_t.size) * p_max < p_of.take(par_d))
                par_t, par_d = par_t.take(thin), par_d.take(thin)
                par = None if par is None else par.take(thin)
            if par_t.size == 0:
                return
            ap = (
                par_t
                + tau_of.take(par_d)
                + rng.standard_exponential(par_t.size) * (tau_ap_of.take(par_d))
            )
            # Sorted look-ups are cheaper (and the parents are sorted, so nearly sorted
            # already); afterpulses inside a gate and the batch go on.
            order = np.argsort(ap, kind="stable")
            live = np.ones(ap.size, dtype=bool)
            for i in gated:
                at = np.flatnonzero(par_d == i)
                live[at[~dets[i]._in_gate(base_ps, ap.take(at))]] = False
            beyond = ap >= length_ps
            if beyond.any():
                carried.append(Arrivals(ap[beyond & live] - length_ps, par_d[beyond & live]))
                live &= ~beyond
            order = order[live.take(order)]
            if order.size == 0:
                return
            ap, ap_d = ap.take(order), par_d.take(order)
            reg = jdt.add(ap, ap_d, None if par is None else par.take(order))
            par_t, par_d, par = ap[reg], ap_d[reg], None

    def _output(
        self, reg_t: F64, reg_d: IntArr, xt: F64, xd: IntArr, tab: dict[str, F64]
    ) -> tuple[F64, IntArr]:
        """Output pulses: avalanche + Gaussian jitter (+ exponential tail) + cable delay;
        the registered afterpulses (few) at the end."""
        rng = self.rng
        n = reg_t.size + xt.size
        d = np.concatenate([reg_d, xd]) if xt.size else reg_d
        sigma_of = tab["sigma"]
        out = np.empty(n)
        if float(sigma_of.max()) > 0:
            z: npt.NDArray[np.floating[Any]]
            if np.all(sigma_of[:-1] == sigma_of[0]):
                z = standard_normal(rng, n, float(sigma_of[0]))
            else:
                z = standard_normal(rng, n) * sigma_of.take(d)
            np.add(reg_t, z[: reg_t.size], out=out[: reg_t.size])
            np.add(xt, z[reg_t.size :], out=out[reg_t.size :])
        else:
            out[: reg_t.size] = reg_t
            out[reg_t.size :] = xt
        frac_of = tab["tail_frac"]
        tail_of = tab["tail_ps"]
        if float((frac_of * tail_of).max()) > 0:
            tail = np.flatnonzero(rng.random(n) < frac_of.take(d))
            out[tail] += rng.standard_exponential(tail.size) * tail_of.take(d.take(tail))
        delay_of = tab["delay"]
        if np.all(delay_of[:-1] == delay_of[0]):
            if delay_of[0]:
                out += delay_of[0]
        else:
            out += delay_of.take(d)
        return out, d
