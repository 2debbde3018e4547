"""Polarization compensation: the controller voltages that undo the fibre's rotation.

Alice's transmitter sends reference light — a block of H, then a block of D at
signal intensity — and Bob's tagger counts his four detectors under each. The
error fractions ``e_Z = V / (H + V)`` (while H is sent) and ``e_X = A / (D + A)``
(while D is sent) are what the BB84 QBER will be; the routine minimises
``e_Z + e_X`` over the voltages of Bob's polarization controller. It talks only
to the role interfaces (:class:`PatternGenerator`, :class:`TimeTagger`,
:class:`PolarizationController`).

Method (derivative-free, a few ms of light per evaluation). Each controller
channel is a retarder whose retardance is linear in its voltage, so with the
other voltages fixed the cost is a sinusoid of one voltage, and jointly a
trigonometric polynomial of degree one in each channel's phase
(:mod:`qhil.calibration.trig_fit`):

1. *Start*: measure at the voltages found on the controller; stop if already
   good enough.
2. *Scan* (unless the half-wave voltages are given): sweep one channel over its
   range at irregular voltages and fit a sinusoid of unknown rate; the rate is
   the channel's pi / half-wave voltage. A channel whose sweep moves nothing is
   skipped for the next.
3. *Lines*: each squeezer has its own half-wave voltage, so every other channel's
   rate is learned from a few points on its line through the start voltages
   (searched within ``half_wave_spread`` of the scanned channel's): the
   ``+-2 pi/3`` points (the joint step's grid has them for its channels) and two
   more far apart; the four error fractions Bob counts (H/V and D/A under each
   reference) are sinusoids of one rate along a line.
4. *Joint step*: on three channels (any rotation is three retarders with
   alternating axes away), measure the 3^3 grid of phase offsets {0, +-2 pi/3}
   around the present voltages, fit the polynomials of the four error fractions
   to the grid and the lines together, the three rates included (variable
   projection), and go to the global minimum of ``e_Z + e_X``. Coordinate descent
   alone stalls for long near configurations where two retarders' axes line up
   (a gimbal lock); the joint step jumps to the optimum from anywhere.
5. *Refine*: one channel at a time, two more points fix its sinusoid and the
   voltage goes to its minimum (kept unless clearly worse); until both error
   fractions are below the target with confidence, a full round moves nothing,
   or the acquisition budget is spent.
6. *Verify*: a longer acquisition at the final voltages gives the reported error
   fractions with exact binomial intervals.

Nothing here relies on the fibre, the controller's axes or offsets, or the
receiver's frame; only on linear retardance per channel.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2 as chi2_dist

from qhil.calibration.binomial import ErrorFraction
from qhil.calibration.errors import CalibrationError
from qhil.calibration.reference import DETECTORS, ReferenceSource
from qhil.calibration.trig_fit import (
    fit_common_rate,
    fit_sinusoid,
    fit_trig_polynomial_rates,
    minimize_trig_polynomial,
)
from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger

log = logging.getLogger(__name__)

#: Phase offsets of the three samples per channel (equally spaced: least noise in the fit).
_THIRDS = (0.0, 2 * math.pi / 3, -2 * math.pi / 3)
#: Channels varied together in the joint step (three retarders reach any rotation).
JOINT_CHANNELS = 3
#: Fewest clicks per basis at the start for the counts to mean anything.
MIN_CLICKS = 20
#: Smallest sinusoid amplitude (in e_Z + e_X) accepted as a channel's response.
MIN_AMPLITUDE = 0.02
#: Fraction of the controller's range a scan covers (keeps clear of the limits).
SCAN_REACH = 0.96
#: Points far out on a channel's line, besides the start and the +-2 pi/3 points.
LINE_EXTRA_POINTS = 2
#: How far the joint fit may move a rate learned from a line (relative).
JOINT_RATE_SLACK = 0.05
#: A line's rate is taken when its next-best alias fits worse by this chi-square ...
AMBIGUITY_CHI2 = 16.0
#: ... else up to this many points where the two disagree most decide.
MAX_DECIDING_POINTS = 2


class Phase(IntEnum):
    """What a measurement was for (stored as this number in the run's step rows)."""

    START = 0  # at the voltages found on the controller
    SCAN = 1  # one channel swept over its range (learns the half-wave voltage)
    GRID = 2  # a point of the joint step's 3^k grid
    MOVE = 3  # at the minimum of a fitted model
    REFINE = 4  # a point of a one-channel sinusoid
    VERIFY = 5  # the longer, final acquisition
    LINE = 6  # a point on one channel's line through the start (learns its half-wave voltage)


@dataclass(frozen=True)
class PolarizationMeasurement:
    """Bob's detector counts under the H and the D reference, at one set of voltages."""

    voltages_mv: tuple[int, ...]
    under_h: tuple[int, int, int, int]  # counts of H, V, D, A while Alice sends H
    under_d: tuple[int, int, int, int]  # ... while Alice sends D
    integration_s: float

    @property
    def e_z(self) -> ErrorFraction:
        h, v, _, _ = self.under_h
        return ErrorFraction(v, h + v)

    @property
    def e_x(self) -> ErrorFraction:
        _, _, d, a = self.under_d
        return ErrorFraction(a, d + a)

    @property
    def fractions(self) -> tuple[ErrorFraction, ErrorFraction, ErrorFraction, ErrorFraction]:
        """V/(H+V) and A/(D+A) under the H reference, then both under the D reference.

        The first is ``e_Z``, the last ``e_X``; all four follow the rotation (the middle
        two are the Stokes components the error fractions do not see).
        """
        h, v, d, a = self.under_h
        h2, v2, d2, a2 = self.under_d
        return (
            ErrorFraction(v, h + v),
            ErrorFraction(a, d + a),
            ErrorFraction(v2, h2 + v2),
            ErrorFraction(a2, d2 + a2),
        )

    @property
    def cost(self) -> float:
        """``e_Z + e_X``: what the search minimises."""
        return self.e_z.value + self.e_x.value

    @property
    def cost_variance(self) -> float:
        return self.e_z.variance() + self.e_x.variance()


@dataclass(frozen=True)
class PolarizationStep:
    """One measurement of the search: why it was made, which channels it varied, what it saw."""

    index: int
    phase: Phase
    channels: tuple[int, ...]  # controller channels (from 1) varied by this step
    measurement: PolarizationMeasurement


StepHook = Callable[[PolarizationStep], Awaitable[None] | None]


class ReferenceLight(Protocol):
    """Where the search gets its reference light from and how Bob counts it.

    :class:`~qhil.calibration.reference.ReferenceSource` drives the pattern generator
    and reads the tagger in one process; across two nodes ``load`` is a request to
    Alice over the classical channel while ``settle`` and ``count`` stay on Bob's tagger
    (:mod:`qhil.calibration.remote_reference`). The search is the same either way.
    """

    @property
    def settle_gates(self) -> int:
        """Uncounted gates let pass so far."""
        ...

    async def load(self, state: str) -> int:
        """Make ``state`` (H, V, D or A) the light Alice sends; returns the pattern length."""
        ...

    async def settle(self, settle_s: float) -> None:
        """Let ``settle_s`` of light pass uncounted (a gate of Bob's tagger)."""
        ...

    async def count(self, integration_s: float) -> tuple[int, int, int, int]:
        """Bob's H, V, D and A counts over one gate."""
        ...


def step_dtype(n_channels: int) -> np.dtype[Any]:
    """Row of the run record's ``steps`` array: one per measurement."""
    return np.dtype(
        [
            ("step", np.int64),
            ("phase", np.int64),
            *[(f"v{i}_mv", np.int64) for i in range(1, n_channels + 1)],
            *[(f"h_ref_{d.lower()}", np.int64) for d in DETECTORS],
            *[(f"d_ref_{d.lower()}", np.int64) for d in DETECTORS],
            ("integration_s", np.float64),
            ("e_z", np.float64),
            ("e_x", np.float64),
        ]
    )


def step_row(step: PolarizationStep) -> npt.NDArray[Any]:
    m = step.measurement
    row = np.zeros(1, dtype=step_dtype(len(m.voltages_mv)))
    row["step"], row["phase"] = step.index, int(step.phase)
    for i, v in enumerate(m.voltages_mv, start=1):
        row[f"v{i}_mv"] = v
    for d, n_h, n_d in zip(DETECTORS, m.under_h, m.under_d, strict=True):
        row[f"h_ref_{d.lower()}"], row[f"d_ref_{d.lower()}"] = n_h, n_d
    row["integration_s"], row["e_z"], row["e_x"] = m.integration_s, m.e_z.value, m.e_x.value
    return row


@dataclass(frozen=True)
class PolarizationCalibration:
    """What the polarization calibration found; ``after`` is the verification measurement."""

    voltages_mv: tuple[int, ...]
    start_voltages_mv: tuple[int, ...]
    before: PolarizationMeasurement
    after: PolarizationMeasurement
    target_error: float
    confidence: float
    target_met: bool  # both upper bounds (at ``confidence``) of ``after`` below the target
    stop_reason: str
    # Per channel, used by the search; None when none was needed (target met at the start).
    half_wave_voltages_mv: tuple[float, ...] | None
    # Per channel: "given", "scan" (swept over its range), "line" (learned on its line),
    # "assumed" (the scanned channel's: its line moved nothing or no budget), "none".
    half_wave_voltage_sources: tuple[str, ...]
    # Per channel, standard errors of learned values (NaN where given or assumed).
    half_wave_voltage_stds_mv: tuple[float, ...] | None
    acquisitions: int  # counting gates of the tagger, verification included
    settle_gates: int  # further gates whose light was let pass uncounted after each change
    steps: tuple[PolarizationStep, ...] = field(repr=False)

    @property
    def half_wave_voltage_mv(self) -> float | None:
        """The channels' mean half-wave voltage (the one value older records hold)."""
        if self.half_wave_voltages_mv is None:
            return None
        return float(np.mean(self.half_wave_voltages_mv))

    @property
    def half_wave_voltage_source(self) -> str:
        """One word for all channels: given, scan (learned) or none."""
        if self.half_wave_voltages_mv is None:
            return "none"
        return "given" if set(self.half_wave_voltage_sources) == {"given"} else "scan"

    @property
    def e_z(self) -> ErrorFraction:
        return self.after.e_z

    @property
    def e_x(self) -> ErrorFraction:
        return self.after.e_x

    def step_rows(self) -> npt.NDArray[Any]:
        if not self.steps:
            return np.zeros(0, dtype=step_dtype(len(self.voltages_mv)))
        return np.concatenate([step_row(s) for s in self.steps])

    def to_results(self) -> dict[str, float | int | str | bool | None]:
        """Scalars for a run record."""
        out: dict[str, float | int | str | bool | None] = {
            "target_met": self.target_met,
            "stop_reason": self.stop_reason,
            "target_error": self.target_error,
            "confidence": self.confidence,
            "acquisitions": self.acquisitions,
            "settle_gates": self.settle_gates,
            "evaluations": len(self.steps),
            "half_wave_voltage_mv": self.half_wave_voltage_mv,
            "half_wave_voltage_source": self.half_wave_voltage_source,
        }
        for i, (v0, v1) in enumerate(
            zip(self.start_voltages_mv, self.voltages_mv, strict=True), start=1
        ):
            out[f"start_v{i}_mv"], out[f"v{i}_mv"] = v0, v1
        if self.half_wave_voltages_mv is not None:
            stds = self.half_wave_voltage_stds_mv or (math.nan,) * len(self.half_wave_voltages_mv)
            for i, (hw, src, std) in enumerate(
                zip(self.half_wave_voltages_mv, self.half_wave_voltage_sources, stds, strict=True),
                start=1,
            ):
                out[f"half_wave_v{i}_mv"], out[f"half_wave_v{i}_source"] = hw, src
                if math.isfinite(std):
                    out[f"half_wave_v{i}_std_mv"] = std
        for name, m in (("before", self.before), ("after", self.after)):
            for basis, ef in (("z", m.e_z), ("x", m.e_x)):
                lo, hi = ef.interval(self.confidence)
                out[f"e_{basis}_{name}"] = ef.value
                out[f"e_{basis}_{name}_std"] = ef.std
                out[f"e_{basis}_{name}_lo"] = lo
                out[f"e_{basis}_{name}_hi"] = hi
                out[f"e_{basis}_{name}_clicks"] = ef.total
        return out


@dataclass(frozen=True)
class SearchOptions:
    """The search's checked options (:func:`polarization_options`)."""

    target_error: float
    confidence: float
    integration_s: float
    verify_integration_s: float
    max_acquisitions: int
    settle_s: float
    max_voltage_mv: int
    half_wave_voltages_mv: tuple[float, ...] | None
    scan_points: int
    min_half_wave_mv: float
    max_half_wave_mv: float
    half_wave_spread: float
    converged_mv: int


class _Search:
    def __init__(
        self,
        source: ReferenceLight,
        controller: PolarizationController,
        opts: SearchOptions,
        on_step: StepHook | None,
    ) -> None:
        self.source = source
        self.controller = controller
        self.o = opts
        self.on_step = on_step
        self.n = int(controller.channels)
        self.steps: list[PolarizationStep] = []
        self.acquisitions = 0
        self._written: tuple[int, ...] | None = None
        self.rates: list[float] | None = None  # rad per mV, per channel
        self.sources = ["none"] * self.n
        self.rate_stds = [math.nan] * self.n  # standard errors of learned rates, rad per mV
        self.scan_rate: float | None = None  # of the scanned channel: the lines' prior

    # --- measuring ---

    def evaluations_left(self) -> int:
        """Evaluations (two gates each) still allowed, keeping two gates for verification."""
        return max(0, (self.o.max_acquisitions - 2 - self.acquisitions) // 2)

    def clip(self, v: float) -> int:
        return int(min(max(round(v), -self.o.max_voltage_mv), self.o.max_voltage_mv))

    async def measure(
        self,
        voltages: Sequence[float],
        phase: Phase,
        channels: tuple[int, ...] = (),
        integration_s: float | None = None,
    ) -> PolarizationMeasurement:
        v = tuple(self.clip(x) for x in voltages)
        t = self.o.integration_s if integration_s is None else integration_s
        if v != self._written:
            await self.controller.set_voltages_mv(list(v))
            self._written = v
        counts = []
        for state in ("H", "D"):
            await self.source.load(state)
            # Light still in the fibre carries the previous setting: let it pass first.
            await self.source.settle(self.o.settle_s)
            counts.append(await self.source.count(t))
            self.acquisitions += 1
        m = PolarizationMeasurement(v, counts[0], counts[1], t)
        step = PolarizationStep(len(self.steps), phase, channels, m)
        self.steps.append(step)
        if self.on_step is not None:
            r = self.on_step(step)
            if inspect.isawaitable(r):
                await r
        log.debug("polarization %s %s: e_Z %.4f e_X %.4f", phase.name, v, m.e_z.value, m.e_x.value)
        return m

    def satisfied(self, m: PolarizationMeasurement) -> bool:
        c = self.o.confidence
        return m.e_z.upper(c) < self.o.target_error and m.e_x.upper(c) < self.o.target_error

    @staticmethod
    def not_worse(new: PolarizationMeasurement, old: PolarizationMeasurement) -> bool:
        """Keep a move unless it is worse by more than two standard errors."""
        return new.cost <= old.cost + 2 * math.sqrt(new.cost_variance + old.cost_variance)

    # --- voltages for phases ---

    def _rate(self, ch: int) -> float:
        assert self.rates is not None
        return self.rates[ch]

    def _period_mv(self, ch: int) -> float:
        return 2 * math.pi / self._rate(ch)

    def offset_voltage(self, ch: int, center: int, dphase: float) -> int:
        """``center + dphase / rate`` of channel ``ch``, brought into range by whole periods."""
        period = self._period_mv(ch)
        v = center + dphase / self._rate(ch)
        lim = self.o.max_voltage_mv
        while v > lim and v - period >= -lim:
            v -= period
        while v < -lim and v + period <= lim:
            v += period
        return self.clip(v)

    def nearest_minimum(self, center: int, candidates: npt.NDArray[np.float64]) -> int:
        if candidates.size == 0:
            return center
        return self.clip(float(candidates[np.argmin(np.abs(candidates - center))]))

    def joint_channels(self) -> list[int]:
        return list(range(min(JOINT_CHANNELS, self.n)))

    def joint_cost(self) -> int:
        """Evaluations of the joint step: its grid and the move."""
        return 3 ** len(self.joint_channels())

    # --- learning the half-wave voltages ---

    async def learn_rates(self, cur: PolarizationMeasurement) -> None:
        given = self.o.half_wave_voltages_mv
        if given is not None:
            self.rates = [math.pi / h for h in given]
            self.sources = ["given"] * self.n
            return
        self.rates = [math.nan] * self.n
        scanned = await self.scan(cur)
        self.scan_rate = self.rates[scanned]
        for ch in range(self.n):
            if ch != scanned:
                self.rates[ch], self.sources[ch] = self.scan_rate, "assumed"
        joint = self.joint_channels()
        for ch in range(self.n):
            if ch == scanned:
                continue
            # The grid provides the +-2 pi/3 points of its channels' lines.
            thirds = (
                []
                if ch in joint
                else [self.offset_voltage(ch, cur.voltages_mv[ch], d) for d in _THIRDS[1:]]
            )
            if self.evaluations_left() < len(thirds) + LINE_EXTRA_POINTS + self.joint_cost():
                continue  # no budget: this channel keeps the scanned one's rate
            existing = [cur.voltages_mv[ch], *thirds]
            if ch in joint:
                existing += [self.offset_voltage(ch, cur.voltages_mv[ch], d) for d in _THIRDS[1:]]
            for x in [*thirds, *self.line_extras(existing)]:
                v = list(cur.voltages_mv)
                v[ch] = x
                await self.measure(v, Phase.LINE, (ch + 1,))
            if ch not in joint:
                await self.learn_line(ch, cur.voltages_mv, reserve=self.joint_cost())

    async def scan(self, cur: PolarizationMeasurement) -> int:
        """The first channel whose sweep over its range moves the error fractions (its rate set)."""
        k = self.o.scan_points
        reach = SCAN_REACH * self.o.max_voltage_mv
        # Irregular (golden-ratio) voltages: aliases of the true rate fit worse.
        golden = (math.sqrt(5) - 1) / 2
        u = np.sort((np.arange(k) * golden + 0.5) % 1.0)
        scan = [self.clip(x) for x in (2 * u - 1) * reach]
        bounds = (self.o.min_half_wave_mv, self.o.max_half_wave_mv)
        tried = []
        for ch in range(self.n):
            if self.evaluations_left() < k:
                break
            tried.append(ch + 1)
            for x in scan:
                v = list(cur.voltages_mv)
                v[ch] = x
                await self.measure(v, Phase.SCAN, (ch + 1,))
            if await self.learn_line(ch, cur.voltages_mv, self.joint_cost(), "scan", bounds):
                return ch
        raise CalibrationError(
            f"sweeping controller channel(s) {tried} over +-{reach:.0f} mV did not change the "
            f"error fractions by more than their noise: is the controller in the light's path "
            f"(and in DC mode), and is the light polarized?"
            if tried
            else "no acquisitions left to learn the controller's half-wave voltage; raise "
            "max_acquisitions or give half_wave_voltage_mv"
        )

    def line_extras(self, existing: Sequence[int]) -> list[int]:
        """Voltages far from the line's points so far (spread over the range: precise rates)."""
        reach = SCAN_REACH * self.o.max_voltage_mv
        cands = np.linspace(-reach, reach, 193)
        pts = [float(x) for x in existing]
        out: list[int] = []
        for _ in range(LINE_EXTRA_POINTS):
            gap = np.min(np.abs(cands[:, None] - np.asarray(pts)[None, :]), axis=1)
            x = self.clip(float(cands[int(np.argmax(gap))]))
            out.append(x)
            pts.append(float(x))
        return out

    def line_data(
        self, ch: int, center: Sequence[int]
    ) -> tuple[list[int], list[list[float]], float]:
        """Voltages, the four error fractions and their mean variance on ``ch``'s line."""
        others = [j for j in range(self.n) if j != ch]
        volts: list[int] = []
        values: list[list[float]] = []
        variances: list[float] = []
        for step in self.steps:
            m = step.measurement
            if any(m.voltages_mv[j] != center[j] for j in others):
                continue
            fr = m.fractions
            vals = [f.value for f in fr]
            if not all(math.isfinite(x) for x in vals):
                continue
            volts.append(m.voltages_mv[ch])
            values.append(vals)
            variances.extend(f.variance() for f in fr)
        return volts, values, float(np.mean(variances)) if variances else math.inf

    async def learn_line(
        self,
        ch: int,
        center: Sequence[int],
        reserve: int,
        source: str = "line",
        bounds: tuple[float, float] | None = None,
    ) -> bool:
        """Channel ``ch``'s rate from every measurement on its line through ``center``.

        The four error fractions are sinusoids of one rate along the line; the rate is
        searched within ``bounds`` (half-wave voltages, mV) or else within
        ``half_wave_spread`` of the scanned channel's (squared if nothing there fits).
        Where an alias fits almost as well, a point where the two disagree most decides
        (while more than ``reserve`` evaluations are left). True when the rate was taken;
        a line that moves nothing beyond its noise, or stays ambiguous, changes nothing.
        """
        assert self.rates is not None
        spread = self.o.half_wave_spread
        deciding = 0
        while True:
            if bounds is None:
                assert self.scan_rate is not None
                lo, hi = math.pi / self.scan_rate / spread, math.pi / self.scan_rate * spread
            else:
                lo, hi = bounds
            volts, values, noise_var = self.line_data(ch, center)
            if len(set(volts)) < 4:
                return False  # too few distinct voltages for a rate
            # A grid step of ~0.17 %, then a local polish.
            n_grid = max(64, math.ceil(600 * math.log(hi / lo)))
            fit = fit_common_rate(volts, values, lo, hi, n_grid=n_grid)
            noise = math.sqrt(noise_var)
            amplitude = float(np.max(fit.amplitudes))
            alt = fit.alternative
            gap = math.inf if alt is None else (alt.rss - fit.rss) / noise_var
            chi2 = fit.rss / noise_var
            dof = fit.n_values - 3 * len(values[0]) - 1
            log.info(
                "polarization %s of channel %d: half-wave %.0f mV, amplitude %.3f (noise "
                "%.4f, residual %.4f, chi-square %.0f for %d dof); next best %s mV, chi-square "
                "%.1f worse",
                source,
                ch + 1,
                fit.half_wave_voltage_mv,
                amplitude,
                noise,
                fit.residual_rms,
                chi2,
                dof,
                "-" if alt is None else f"{alt.half_wave_voltage_mv:.0f}",
                gap,
            )
            if amplitude <= max(5 * noise, MIN_AMPLITUDE):
                return False  # the line moves nothing: its rate does not matter here
            poor = dof > 0 and chi2 > chi2_dist.isf(1e-4, dof)
            if poor and bounds is None and spread == self.o.half_wave_spread:
                # No rate within the spread fits: this squeezer differs more; look wider.
                spread = spread**2
                continue
            if gap > AMBIGUITY_CHI2:
                self.rates[ch] = fit.rate_rad_per_mv
                self.rate_stds[ch] = fit.rate_std(noise_var)
                self.sources[ch] = source
                return True
            if deciding == MAX_DECIDING_POINTS or self.evaluations_left() < 1 + reserve:
                return False
            assert alt is not None
            reach = SCAN_REACH * self.o.max_voltage_mv
            cands = np.linspace(-reach, reach, 193)
            disagree = np.sum((fit(cands) - alt(cands)) ** 2, axis=1)
            v = list(center)
            v[ch] = self.clip(float(cands[int(np.argmax(disagree))]))
            await self.measure(v, Phase.LINE, (ch + 1,))
            deciding += 1

    # --- the steps ---

    async def joint_step(self, cur: PolarizationMeasurement) -> PolarizationMeasurement:
        assert self.rates is not None
        chans = self.joint_channels()
        k = len(chans)
        grid = [g for g in itertools.product(_THIRDS, repeat=k) if any(g)]
        for offsets in grid:
            v = list(cur.voltages_mv)
            for ch, d in zip(chans, offsets, strict=True):
                v[ch] = self.offset_voltage(ch, cur.voltages_mv[ch], d)
            m = await self.measure(v, Phase.GRID, tuple(c + 1 for c in chans))
            if not math.isfinite(m.cost):
                raise CalibrationError("some grid points saw no clicks in a basis; no fit possible")
        # The grid completes the lines of its channels (start, +-2 pi/3, the far points).
        if any(self.sources[ch] == "assumed" for ch in chans):
            for ch in chans:
                if self.sources[ch] == "assumed":
                    await self.learn_line(ch, cur.voltages_mv, reserve=1)  # keep the move
        # Every measurement with the other channels at their start: the grid, the lines, the
        # scan. One polynomial per error fraction, the learned rates free within a few %.
        rest = [j for j in range(self.n) if j not in chans]
        dv, values = [], []
        for step in self.steps:
            m = step.measurement
            if any(m.voltages_mv[j] != cur.voltages_mv[j] for j in rest):
                continue
            vals = [f.value for f in m.fractions]
            if all(math.isfinite(x) for x in vals):
                dv.append([m.voltages_mv[c] - cur.voltages_mv[c] for c in chans])
                values.append(vals)
        r0 = np.array([self.rates[c] for c in chans])
        slack = [JOINT_RATE_SLACK if self.sources[c] in ("scan", "line") else 0.0 for c in chans]
        bounds = [(r * (1 - e), r * (1 + e)) for r, e in zip(r0, slack, strict=True)]
        fit = fit_trig_polynomial_rates(np.array(dv), np.array(values), r0, bounds)
        for c, r in zip(chans, fit.rates_rad_per_mv, strict=True):
            self.rates[c] = float(r)
        # e_Z + e_X: the first and last fractions' polynomials.
        best, predicted = minimize_trig_polynomial(fit.coef[:, 0] + fit.coef[:, 3], k)
        v = list(cur.voltages_mv)
        lim = self.o.max_voltage_mv
        for ch, ph in zip(chans, best, strict=True):
            first = cur.voltages_mv[ch] + ph / self._rate(ch)
            cands = first + self._period_mv(ch) * np.arange(-8, 9)
            v[ch] = self.nearest_minimum(cur.voltages_mv[ch], cands[np.abs(cands) <= lim])
        m = await self.measure(v, Phase.MOVE, tuple(c + 1 for c in chans))
        log.info("polarization joint step: predicted %.4f, measured %.4f", predicted, m.cost)
        return m if self.not_worse(m, cur) else cur

    async def refine(self, cur: PolarizationMeasurement) -> tuple[PolarizationMeasurement, str]:
        still = 0  # consecutive channels whose move was below converged_mv
        ch = 0
        while True:
            if self.satisfied(cur):
                return cur, "target met"
            if still >= self.n:
                return cur, "converged: a full round of channels moved nothing"
            if self.evaluations_left() < 3:
                return cur, "acquisition budget spent"
            volts, costs = [cur.voltages_mv[ch]], [cur.cost]
            for d in _THIRDS[1:]:
                v = list(cur.voltages_mv)
                v[ch] = self.offset_voltage(ch, cur.voltages_mv[ch], d)
                m = await self.measure(v, Phase.REFINE, (ch + 1,))
                volts.append(v[ch])
                costs.append(m.cost)
            moved = 0
            if np.all(np.isfinite(costs)):
                fit = fit_sinusoid(volts, costs, self._rate(ch))
                lim = self.o.max_voltage_mv
                target = self.nearest_minimum(cur.voltages_mv[ch], fit.minima_mv(-lim, lim))
                moved = abs(target - cur.voltages_mv[ch])
                if moved >= self.o.converged_mv:
                    v = list(cur.voltages_mv)
                    v[ch] = target
                    m = await self.measure(v, Phase.MOVE, (ch + 1,))
                    if self.not_worse(m, cur):
                        cur = m
                    else:
                        moved = 0
            still = still + 1 if moved < self.o.converged_mv else 0
            ch = (ch + 1) % self.n

    async def search(self, cur: PolarizationMeasurement) -> tuple[PolarizationMeasurement, str]:
        await self.learn_rates(cur)
        if self.evaluations_left() >= self.joint_cost():
            cur = await self.joint_step(cur)
        return await self.refine(cur)

    async def run(self) -> PolarizationCalibration:
        start = tuple(int(x) for x in await self.controller.voltages_mv())
        if len(start) != self.n:
            raise CalibrationError(
                f"controller reports {len(start)} voltages for {self.n} channels"
            )
        before = await self.measure(start, Phase.START)
        if before.e_z.total < MIN_CLICKS or before.e_x.total < MIN_CLICKS:
            raise CalibrationError(
                f"too few clicks to calibrate: {before.e_z.total} on H+V under the H reference, "
                f"{before.e_x.total} on D+A under the D reference in {before.integration_s:g} s "
                f"(at least {MIN_CLICKS} each needed): is the light reaching Bob (source on, "
                f"attenuator shutter open, detectors enabled) and is channel_map right?"
            )
        cur, reason = before, "target met at the start voltages"
        if not self.satisfied(cur):
            cur, reason = await self.search(cur)
        after = await self.measure(cur.voltages_mv, Phase.VERIFY, (), self.o.verify_integration_s)
        # A short measurement can meet the target by chance near it; the longer one decides.
        # While the budget lasts, search on from the verified point and verify again.
        while not self.satisfied(after) and self.evaluations_left() >= 4:
            if self.rates is not None:
                cur, reason = await self.refine(after)
            elif self.evaluations_left() >= self.o.scan_points + 3:
                cur, reason = await self.search(after)
            else:
                break
            if cur.voltages_mv == after.voltages_mv:
                break  # nothing better found: the verification stands
            after = await self.measure(
                cur.voltages_mv, Phase.VERIFY, (), self.o.verify_integration_s
            )
        c = self.o.confidence
        met = self.satisfied(after)
        return PolarizationCalibration(
            voltages_mv=after.voltages_mv,
            start_voltages_mv=start,
            before=before,
            after=after,
            target_error=self.o.target_error,
            confidence=c,
            target_met=met,
            stop_reason=reason,
            half_wave_voltages_mv=None
            if self.rates is None
            else tuple(math.pi / r for r in self.rates),
            half_wave_voltage_sources=tuple(self.sources),
            half_wave_voltage_stds_mv=None
            if self.rates is None
            else tuple(
                math.pi / r * e / r for r, e in zip(self.rates, self.rate_stds, strict=True)
            ),
            acquisitions=self.acquisitions,
            settle_gates=self.source.settle_gates,
            steps=tuple(self.steps),
        )


async def calibrate_polarization(
    generator: PatternGenerator,
    tagger: TimeTagger,
    controller: PolarizationController,
    *,
    channel_map: Mapping[str, int],
    rep_rate_hz: float,
    pattern_length: int = 1024,
    intensity_index: int = 0,
    rng: np.random.Generator | None = None,
    on_step: StepHook | None = None,
    **options: Any,
) -> PolarizationCalibration:
    """Find the voltages of ``controller`` (Bob's) that make H arrive as H and D as D.

    Alice's ``generator`` and Bob's ``tagger`` and ``controller`` in one process.
    ``channel_map`` gives the tagger channel (from 1) of Bob's H, V, D and A
    detectors; ``rep_rate_hz`` is the transmitter's pulse rate (the pattern's
    symbol rate). Reference patterns are constant blocks of H or D at
    ``intensity_index`` (0 = signal), at least ``pattern_length`` symbols long.
    The search and its ``options`` are :func:`compensate_polarization`'s. The
    generator's output is on during the search and off after it.
    """
    source = ReferenceSource(
        generator,
        tagger,
        channel_map,
        rep_rate_hz,
        pattern_length=pattern_length,
        intensity_index=intensity_index,
        rng=rng,
    )
    opts = polarization_options(int(controller.channels), **options)
    await generator.set_output(True)
    try:
        return await compensate_polarization(source, controller, opts, on_step=on_step)
    finally:
        try:
            await generator.set_output(False)
        except Exception as exc:
            log.warning("polarization: could not switch the pattern generator off: %s", exc)


async def compensate_polarization(
    light: ReferenceLight,
    controller: PolarizationController,
    options: SearchOptions,
    *,
    on_step: StepHook | None = None,
) -> PolarizationCalibration:
    """The search itself, given where the reference light comes from (``light``).

    One routine for both setups: ``light`` is a local
    :class:`~qhil.calibration.reference.ReferenceSource` (one process) or a remote
    reference (Alice's generator reached over the classical channel, see
    :mod:`qhil.calibration.remote_reference`). ``options`` come from
    :func:`polarization_options`. The controller is left at the voltages found; on an
    error it is set back to where it started.
    """
    search = _Search(light, controller, options, on_step)
    start: list[int] | None = None
    try:
        start = list(await controller.voltages_mv())
        return await search.run()
    except BaseException:
        if start is not None and search._written not in (None, tuple(start)):
            try:
                await controller.set_voltages_mv(start)
            except Exception as exc:  # the original error matters more
                log.warning("polarization: could not restore the start voltages: %s", exc)
        raise


def polarization_options(
    n_channels: int,
    *,
    target_error: float = 0.01,
    confidence: float = 0.95,
    integration_s: float = 2e-3,
    verify_integration_s: float = 20e-3,
    max_acquisitions: int = 150,
    settle_s: float = 1e-3,
    max_voltage_mv: int = 5000,
    half_wave_voltage_mv: float | Sequence[float] | None = None,
    scan_points: int = 11,
    min_half_wave_mv: float | None = None,
    max_half_wave_mv: float | None = None,
    half_wave_spread: float = 1.4,
    converged_mv: int = 5,
) -> SearchOptions:
    """The search's options for a controller of ``n_channels``, checked.

    Each evaluation counts ``integration_s`` under H and again under D, each after
    an uncounted gate of ``settle_s`` (light still in the fibre from before the
    change; it must be a gate the tagger accepts, e.g. whole ms on a TDC1, or 0 to
    skip). At most ``max_acquisitions`` counting gates are used, verification
    (``verify_integration_s`` each) included. The search stops when both
    error fractions' one-sided upper bounds at ``confidence`` are below
    ``target_error``. Each channel has its own half-wave voltage: one channel's is
    learned by a scan (searched in ``[min_half_wave_mv, max_half_wave_mv]``, default
    ``max_voltage_mv / 8 .. 2.5 * max_voltage_mv``), every other channel's on its line
    within a factor ``half_wave_spread`` of that. ``half_wave_voltage_mv`` (one value for
    every channel, or one per channel) skips the learning.
    """
    if not 0 < target_error < 0.5:
        raise ValueError(f"target_error must be in (0, 0.5), got {target_error}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    for name, t in (
        ("integration_s", integration_s),
        ("verify_integration_s", verify_integration_s),
    ):
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"{name} must be > 0, got {t}")
    if not (math.isfinite(settle_s) and settle_s >= 0):
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")
    if max_acquisitions < 4:
        raise ValueError(
            f"max_acquisitions must be >= 4 (start and verification), got {max_acquisitions}"
        )
    if max_voltage_mv <= 0:
        raise ValueError(f"max_voltage_mv must be > 0, got {max_voltage_mv}")
    given = _half_wave_voltages(half_wave_voltage_mv, n_channels)
    if not (math.isfinite(half_wave_spread) and half_wave_spread > 1):
        raise ValueError(f"half_wave_spread must be > 1, got {half_wave_spread}")
    if scan_points < 5:
        raise ValueError(f"scan_points must be >= 5, got {scan_points}")
    lo = max_voltage_mv / 8 if min_half_wave_mv is None else min_half_wave_mv
    hi = 2.5 * max_voltage_mv if max_half_wave_mv is None else max_half_wave_mv
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < min_half_wave_mv < max_half_wave_mv, got {lo}, {hi}")
    if converged_mv < 1:
        raise ValueError(f"converged_mv must be >= 1, got {converged_mv}")
    return SearchOptions(
        target_error=target_error,
        confidence=confidence,
        integration_s=integration_s,
        verify_integration_s=verify_integration_s,
        max_acquisitions=max_acquisitions,
        settle_s=settle_s,
        max_voltage_mv=int(max_voltage_mv),
        half_wave_voltages_mv=given,
        scan_points=scan_points,
        min_half_wave_mv=lo,
        max_half_wave_mv=hi,
        half_wave_spread=half_wave_spread,
        converged_mv=converged_mv,
    )


def _half_wave_voltages(
    given: float | Sequence[float] | None, n_channels: int
) -> tuple[float, ...] | None:
    """One half-wave voltage per channel from one value or one per channel (checked)."""
    if given is None:
        return None
    if isinstance(given, int | float):
        values = [float(given)] * n_channels
    else:
        values = [float(x) for x in given]
        if len(values) != n_channels:
            raise ValueError(
                f"half_wave_voltage_mv has {len(values)} values for {n_channels} channels"
            )
    if not all(math.isfinite(x) and x > 0 for x in values):
        raise ValueError(f"half_wave_voltage_mv must be > 0, got {given}")
    return tuple(values)
