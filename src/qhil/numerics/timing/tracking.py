"""Clock tracking from photon-pair coincidences: lock, loss of lock, re-acquisition, two-way.

**Streaming tracker** (:class:`ClockTracker`, what qcrypto's costream and
S-Fifteen's freqcd do): both timestamp streams are fed chunk after chunk; in each
interval of A's clock the pairs within ``+-half_window_ps`` of the current model's
prediction give a measured offset (mean clipped at ``clip_sigma`` widths, error
``1.027 sigma_rel / sqrt(N)``) and a peak significance. The width is the wider of
this interval's robust (MAD) one and the one pooled over recent intervals: a few
pairs cannot measure their own width (with 6 pairs a MAD can come out 10x too small
and the filter would trust them). A Kalman filter on (offset, frequency) carries the
model between intervals.

Loop filter: state ``x`` (offset B minus A, ps) and ``y = dx/dt_a`` (the
ClockModel's drift), transition ``x += y dt``; process noise is a random walk of
frequency, ``var(y(t + dt) - y(t)) = q dt`` with ``q = wander**2`` (``wander`` the
relative wander of the two clocks, ``TrackerConfig.wander_ppb_per_sqrt_s``),
i.e. ``Q = q [[dt^3/3, dt^2/2], [dt^2/2, dt]]``; measurement ``z = x + v``,
``var(v) = stderr**2``. In steady state this is a second-order PLL with natural
frequency ``w_n = (q / r)**(1/4)`` and damping ``1/sqrt(2)``, ``r = stderr**2 *
interval`` the measurement noise density: time constant
``tau = (stderr**2 * interval / q)**(1/4)`` (:attr:`ClockTracker.time_constant_s`).
With ``wander = 0`` it is the recursive least-squares line through all intervals.

**Loss of lock**: an interval is *bad* when its peak significance is below
``min_significance`` or its innovation exceeds ``gate_sigma`` standard deviations
(a residual jump: a bad measurement never enters the filter). ``lost_after``
bad intervals in a row lose the lock; from then on the tracker re-acquires on the
data since the first bad interval (once ``reacquire_span_ps`` of it is buffered):
:func:`find_clock_offset` on B mapped by the last model, first within
``+-bounded_search_ps``, then ``+-full_search_ps``; each loss and re-acquisition
is a :class:`LockEvent`.

**Two-way** (Lee et al. 2019, arXiv:1812.08450): a pair whose partner photon
travels A to B measures ``t_b - t_a = theta + d_AB``; one whose partner travels B
to A measures ``theta - d_BA``; ``theta`` is B's clock minus A's ("B minus A",
as :class:`ClockModel`). Over a symmetric fibre the half-sum is ``theta`` with the
delay cancelled and the half-difference the delay (:func:`two_way_offset`). The
one-way method measures ``theta`` plus the delay difference and needs the delays
from elsewhere (:func:`one_way_clock_offset`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing._validate import (
    Timestamps,
    as_timestamps,
    positive_float,
    positive_int,
)
from qhil.numerics.timing.clock_model import ClockModel
from qhil.numerics.timing.errors import (
    NoCorrelationPeakError,
    PeakNotFoundError,
    RateTooLowError,
    TimingInputError,
)
from qhil.numerics.timing.offset_search import (
    ClockSyncResult,
    _pair_residuals,
    _skipped_mean_inflation,
    find_clock_offset,
)

FloatArray = npt.NDArray[np.float64]
PS_PER_S = 10**12
# Frequency is carried in ps per second of A's clock inside the filter (1 ppb = 1e3 ps/s).
_Y_SCALE = 1e12
# Error of the 3-sigma clipped mean relative to sigma/sqrt(N) (refine_offset's default).
_CLIP_INFLATION = _skipped_mean_inflation(3.0)
_MAD_TO_SIGMA = 1.4826
# Pooled width: each interval's weight decays by this per interval (memory ~10 intervals:
# enough pairs for a steady width, short enough to forget a start smeared by a model
# whose frequency was still off); a starting width (acquisition) counts as this many pairs.
_SIGMA_MEMORY = 0.9
_SIGMA_PRIOR_PAIRS = 200.0


# --- errors that say what to do ------------------------------------------------------


def _rates(a: Timestamps, b: Timestamps) -> tuple[float, float, float]:
    """(rate A /s, rate B /s, duration s) of two streams, each over its own span."""
    span_a = int(a[-1] - a[0]) if a.size > 1 else 0
    span_b = int(b[-1] - b[0]) if b.size > 1 else 0
    duration = max(span_a, span_b) / PS_PER_S
    if duration <= 0:
        return 0.0, 0.0, 0.0
    return a.size / duration, b.size / duration, duration


def acquire_clock_offset(a: npt.ArrayLike, b: npt.ArrayLike, **kwargs: Any) -> ClockSyncResult:
    """:func:`find_clock_offset`, but a missing peak raises :class:`NoCorrelationPeakError`
    with the significance reached and the rates seen on both streams."""
    a_ts = as_timestamps(a, "a")
    b_ts = as_timestamps(b, "b")
    try:
        return find_clock_offset(a_ts, b_ts, **kwargs)
    except NoCorrelationPeakError:
        raise
    except PeakNotFoundError as exc:
        ra, rb, dur = _rates(a_ts, b_ts)
        raise NoCorrelationPeakError(
            exc.stage,
            exc.significance,
            exc.threshold,
            rate_a_hz=ra,
            rate_b_hz=rb,
            duration_s=dur,
        ) from None


def required_coincidences(sigma_rel_ps: float, precision_ps: float) -> int:
    """Coincidences one interval needs for an offset error of ``precision_ps``:
    ``ceil((sigma_rel / precision)**2)``."""
    sigma = positive_float(sigma_rel_ps, "sigma_rel_ps")
    p = positive_float(precision_ps, "precision_ps")
    return math.ceil((sigma / p) ** 2 * (1.0 - 1e-12))


def check_precision(
    sigma_rel_ps: float, precision_ps: float, coincidences: int, interval_s: float
) -> None:
    """Raise :class:`RateTooLowError` if ``coincidences`` per ``interval_s`` cannot reach
    ``precision_ps`` (``N >= (sigma_rel / precision)**2``)."""
    needed = required_coincidences(sigma_rel_ps, precision_ps)
    interval = positive_float(interval_s, "interval_s")
    if coincidences < needed:
        raise RateTooLowError(
            sigma_rel_ps=float(sigma_rel_ps),
            precision_ps=float(precision_ps),
            needed=needed,
            seen=int(coincidences),
            interval_s=interval,
        )


def _wander_q(wander_ppb_per_sqrt_s: float) -> float:
    """Process noise ``q`` ((ps/s)^2 per s) of a relative wander in ppb/sqrt(s)."""
    w = wander_ppb_per_sqrt_s
    if isinstance(w, bool) or not isinstance(w, int | float) or not (math.isfinite(w) and w >= 0):
        raise TimingInputError(f"wander_ppb_per_sqrt_s: must be a finite number >= 0 (got {w!r})")
    return (float(w) * 1e-9 * _Y_SCALE) ** 2


def interval_wander_error_ps(wander_ppb_per_sqrt_s: float, interval_s: float) -> float:
    """Error the clocks' relative wander adds to one interval's offset quoted at its
    centre: the pairs measure the offset averaged over the interval, which misses the
    centre value of an integrated random walk by ``sqrt(q I^3 / 320)``, ``q = wander^2``
    (ps: ``wander * 1e3 * I**1.5 / 17.9``)."""
    q = _wander_q(wander_ppb_per_sqrt_s)
    return math.sqrt(q * positive_float(interval_s, "interval_s") ** 3 / 320.0)


def max_interval_s(
    sigma_rel_ps: float,
    coincidence_rate_hz: float,
    wander_ppb_per_sqrt_s: float,
    *,
    ratio: float = 1.2,
) -> float:
    """Longest tracking interval whose offset error stays within ``ratio`` x
    ``sigma_rel / sqrt(N)`` (N = rate x interval) despite the wander inside it:
    ``(1.027 sigma)^2 / N + q I^3 / 320 <= (ratio sigma)^2 / N`` gives
    ``I = (320 (ratio^2 - 1.027^2) sigma^2 / (rate q))^(1/4)`` (inf without wander)."""
    sigma = positive_float(sigma_rel_ps, "sigma_rel_ps")
    rate = positive_float(coincidence_rate_hz, "coincidence_rate_hz")
    r = positive_float(ratio, "ratio")
    excess = r * r - _CLIP_INFLATION**2
    if excess <= 0:
        raise TimingInputError(
            f"ratio: must exceed the clipped mean's {_CLIP_INFLATION:.3f} (got {r!r})"
        )
    q = _wander_q(wander_ppb_per_sqrt_s)
    if q == 0:
        return math.inf
    return float((320.0 * excess * sigma * sigma / (rate * q)) ** 0.25)


# --- streaming tracker ---------------------------------------------------------------


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`ClockTracker` (see the module docstring for the loop)."""

    interval_ps: int = PS_PER_S
    half_window_ps: float = 2_000.0
    wander_ppb_per_sqrt_s: float = 1.0
    min_significance: float = 5.0
    lost_after: int = 3
    gate_sigma: float = 5.0
    bounded_search_ps: float = 100_000_000.0
    full_search_ps: float = 500_000_000_000.0
    reacquire_span_ps: int = PS_PER_S
    clip_sigma: float = 3.0

    def __post_init__(self) -> None:
        positive_int(self.interval_ps, "interval_ps")
        positive_float(self.half_window_ps, "half_window_ps")
        positive_float(self.min_significance, "min_significance")
        positive_int(self.lost_after, "lost_after")
        positive_float(self.gate_sigma, "gate_sigma")
        positive_float(self.bounded_search_ps, "bounded_search_ps")
        positive_float(self.full_search_ps, "full_search_ps")
        positive_int(self.reacquire_span_ps, "reacquire_span_ps")
        positive_float(self.clip_sigma, "clip_sigma")
        _wander_q(self.wander_ppb_per_sqrt_s)


@dataclass(frozen=True)
class TrackPoint:
    """One tracking interval ``[t_ps - interval/2, t_ps + interval/2)`` of A's clock.

    ``measured_*`` come from this interval's pairs alone (NaN: fewer than 3 pairs);
    ``measured_stderr_ps`` is the clipped mean's error with the width pooled over recent
    intervals, plus the wander inside the interval (:func:`interval_wander_error_ps`);
    ``counts`` are the pairs inside the clip window, ``background`` the accidentals
    expected there from the two streams' rates, ``significance`` =
    ``(counts - background) / sqrt(max(background, 1))``. ``model`` and its
    stderrs are the loop's state after this interval (``model.t_ref_ps == t_ps``);
    ``used``: the measurement entered the filter; ``locked``: the loop is locked.
    """

    t_ps: int
    measured_offset_ps: float
    measured_stderr_ps: float
    counts: int
    background: float
    significance: float
    model: ClockModel
    offset_stderr_ps: float
    drift_stderr: float
    locked: bool
    used: bool


@dataclass(frozen=True)
class LockEvent:
    """``kind`` "lost" (``how``: why) or "reacquired" (``how``: which search, ``model``:
    the model found) at A-clock ``t_ps`` (the end of the interval that decided it)."""

    kind: Literal["lost", "reacquired"]
    t_ps: int
    how: str
    significance: float
    model: ClockModel | None = None


_TRACK_FIELDS = (
    "t_ps",
    "measured_offset_ps",
    "measured_stderr_ps",
    "counts",
    "background",
    "significance",
    "offset_stderr_ps",
    "drift_stderr",
    "locked",
    "used",
)


def track_arrays(points: list[TrackPoint]) -> dict[str, npt.NDArray[Any]]:
    """The track as columns: every :class:`TrackPoint` field, plus ``offset_ps`` and
    ``drift`` (the model after each update, quoted at ``t_ps``)."""
    out: dict[str, npt.NDArray[Any]] = {}
    for name in _TRACK_FIELDS:
        out[name] = np.array([getattr(p, name) for p in points])
    out["t_ps"] = out["t_ps"].astype(np.int64)
    out["counts"] = out["counts"].astype(np.int64)
    out["locked"] = out["locked"].astype(bool)
    out["used"] = out["used"].astype(bool)
    out["offset_ps"] = np.array([p.model.offset_ps for p in points], dtype=np.float64)
    out["drift"] = np.array([p.model.drift for p in points], dtype=np.float64)
    return out


@dataclass
class _Stream:
    """Buffered events of one stream (sorted, chunks appended in order)."""

    name: str
    events: Timestamps = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def append(self, chunk: npt.ArrayLike) -> None:
        c = as_timestamps(chunk, self.name)
        if c.size == 0:
            return
        if self.events.size and c[0] < self.events[-1]:
            raise TimingInputError(
                f"{self.name}: chunk starts at {int(c[0])} ps, before the previous chunk's "
                f"last event {int(self.events[-1])} ps (chunks must follow each other)"
            )
        self.events = np.concatenate([self.events, c]) if self.events.size else c.copy()

    def last(self) -> int | None:
        return int(self.events[-1]) if self.events.size else None

    def between(self, lo: float, hi: float) -> Timestamps:
        """Events with ``lo <= t < hi``."""
        i0, i1 = np.searchsorted(self.events, [math.ceil(lo), math.ceil(hi)])
        return self.events[i0:i1]

    def drop_before(self, t: float) -> None:
        self.events = self.events[np.searchsorted(self.events, math.ceil(t)) :]


class ClockTracker:
    """Keeps B's clock model locked to A's from streamed coincidences (see module doc).

    ``model`` is the starting point (e.g. from :func:`find_clock_offset`) with its
    1-sigma errors at ``model.t_ref_ps``, widened by the wander over ``data_span_ps``
    (the span of data it came from; default 1 s, a typical acquisition: a line fitted
    to wandering clocks is off by more than its own errors say); intervals of ``config.interval_ps`` start at
    ``start_ps`` (default: the first A event fed). ``sigma_rel_ps`` (the pairs'
    relative jitter, e.g. the acquisition's ``fit.sigma_rel_ps``) seeds the pooled
    width; without it the first intervals measure their own.
    """

    def __init__(
        self,
        model: ClockModel,
        config: TrackerConfig | None = None,
        *,
        offset_stderr_ps: float,
        drift_stderr: float,
        start_ps: int | None = None,
        data_span_ps: int = PS_PER_S,
        sigma_rel_ps: float | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        for value, name in ((offset_stderr_ps, "offset_stderr_ps"), (drift_stderr, "drift_stderr")):
            if not (math.isfinite(value) and value >= 0):
                raise TimingInputError(f"{name}: must be a finite number >= 0 (got {value!r})")
        self._t = int(model.t_ref_ps)
        self._x = float(model.offset_ps)
        self._y = float(model.drift) * _Y_SCALE
        self._q = _wander_q(self.config.wander_ppb_per_sqrt_s)
        # A line fitted to data that wandered over ``data_span_ps`` is off by about the
        # wander accumulated over that span, whatever the fit's own errors say.
        self._p = np.diag([offset_stderr_ps**2, (drift_stderr * _Y_SCALE) ** 2]) + _wander_cov(
            self._q, data_span_ps / PS_PER_S
        )
        self._a = _Stream("a")
        self._b = _Stream("b")
        self._start = None if start_ps is None else int(start_ps)
        self._next = 0  # index of the next interval to process
        self._bad = 0
        self._first_bad_start = 0
        self._locked = True
        self._loss_start: int | None = None
        self._last_attempt = -(1 << 62)
        self._flushed = False
        self._last_r: float = math.nan
        # Pooled relative jitter: sum of n sigma^2 and of n, decaying per interval.
        self._sig_ss, self._sig_n = 0.0, 0.0
        if sigma_rel_ps is not None:
            sig = positive_float(sigma_rel_ps, "sigma_rel_ps")
            self._sig_ss, self._sig_n = _SIGMA_PRIOR_PAIRS * sig * sig, _SIGMA_PRIOR_PAIRS
        self.last_error: str = ""
        self.points: list[TrackPoint] = []
        self.events: list[LockEvent] = []

    @classmethod
    def from_acquisition(
        cls,
        result: ClockSyncResult,
        config: TrackerConfig | None = None,
        *,
        start_ps: int | None = None,
        data_span_ps: int = PS_PER_S,
    ) -> ClockTracker:
        """Start from :func:`find_clock_offset`'s result and its stated errors, widened by
        the wander over ``data_span_ps`` (the span of data the acquisition used), and
        from its relative jitter."""
        return cls(
            result.model,
            config,
            offset_stderr_ps=result.fit.offset_stderr_ps,
            drift_stderr=result.fit.drift_stderr,
            start_ps=start_ps,
            data_span_ps=data_span_ps,
            sigma_rel_ps=result.fit.sigma_rel_ps,
        )

    # -- state ------------------------------------------------------------------------

    @property
    def model(self) -> ClockModel:
        """The loop's current model, quoted at the last interval's centre."""
        return ClockModel(self._x, self._y / _Y_SCALE, self._t)

    @property
    def sigma_rel_ps(self) -> float:
        """The pooled relative jitter of the pairs (NaN before any interval)."""
        return math.sqrt(self._sig_ss / self._sig_n) if self._sig_n > 0 else math.nan

    @property
    def offset_stderr_ps(self) -> float:
        return float(math.sqrt(self._p[0, 0]))

    @property
    def drift_stderr(self) -> float:
        return float(math.sqrt(self._p[1, 1])) / _Y_SCALE

    @property
    def locked(self) -> bool:
        return self._locked

    @property
    def coincidences(self) -> int:
        """Coincidences of all intervals whose measurement entered the filter."""
        return sum(p.counts for p in self.points if p.used)

    @property
    def wander_error_ps(self) -> float:
        """:func:`interval_wander_error_ps` of this tracker's wander and interval."""
        return interval_wander_error_ps(
            self.config.wander_ppb_per_sqrt_s, self.config.interval_ps / PS_PER_S
        )

    @property
    def time_constant_s(self) -> float:
        """Steady-state loop time constant ``(stderr**2 * interval / q)**(1/4)`` for the
        last measurement's stderr (inf without wander, NaN before any measurement)."""
        if self._q == 0:
            return math.inf
        r = self._last_r * self.config.interval_ps / PS_PER_S
        return float((r / self._q) ** 0.25)

    # -- feeding ----------------------------------------------------------------------

    def feed(self, a_chunk: npt.ArrayLike, b_chunk: npt.ArrayLike) -> list[TrackPoint]:
        """Append the next chunk of each stream; return the intervals completed by it.

        An interval is complete once A has an event past its end and B one past the
        model's image of its end plus the window.
        """
        if self._flushed:
            raise TimingInputError(
                "feed: the tracker was flushed (its last, partial interval is done); "
                "start a new ClockTracker from its model for more data"
            )
        self._a.append(a_chunk)
        self._b.append(b_chunk)
        return self._process(final=False)

    def flush(self) -> list[TrackPoint]:
        """End of data: process the intervals that hold any A events, complete or not.
        No more chunks can be fed after it."""
        self._flushed = True
        return self._process(final=True)

    def _bounds(self, k: int) -> tuple[int, int]:
        assert self._start is not None
        s = self._start + k * self.config.interval_ps
        return s, s + self.config.interval_ps

    def _process(self, *, final: bool) -> list[TrackPoint]:
        if self._start is None:
            if not self._a.events.size:
                return []
            self._start = int(self._a.events[0])
        new: list[TrackPoint] = []
        while True:
            s, e = self._bounds(self._next)
            last_a, last_b = self._a.last(), self._b.last()
            if last_a is None:
                break
            if final:
                if last_a < s:
                    break
            elif (
                last_a < e
                or last_b is None
                or last_b < float(self._predicted(e).b_from_a(e + self._window(e) + 2))
            ):
                break
            # The last, partial interval (end of data) is quoted at the centre of the data
            # it holds, not at its nominal centre beyond them: there the wander since the
            # pairs is not in its error (0.23 s out at 200 pairs/s: 2.3 sigma off the truth).
            covered = last_a + 1 if final and last_a < e - 1 else e
            new.append(self._interval(s, e, covered))
            self._next += 1
            self._trim()
        self.points.extend(new)
        return new

    def _trim(self) -> None:
        """Keep what a re-acquisition may still need: the span since the loss (or the
        last ``reacquire_span``), and B around its image with the full search range."""
        s, _ = self._bounds(self._next)
        since = s if self._bad == 0 else self._first_bad_start
        if self._loss_start is not None:
            since = self._loss_start
        keep = max(s - self.config.reacquire_span_ps, since)
        self._a.drop_before(keep)
        self._b.drop_before(float(self.model.b_from_a(keep)) - self.config.full_search_ps)

    # -- one interval -----------------------------------------------------------------

    def _predicted(self, t: int) -> ClockModel:
        return ClockModel(self._x + self._y * (t - self._t) / PS_PER_S, self._y / _Y_SCALE, t)

    def _predicted_cov(self, t: int) -> FloatArray:
        """State covariance predicted to A-clock time ``t`` (random walk of frequency)."""
        dt = (t - self._t) / PS_PER_S
        f = np.array([[1.0, dt], [0.0, 1.0]])
        out: FloatArray = f @ self._p @ f.T + _wander_cov(self._q, dt)
        return out

    def _window(self, t: int) -> float:
        """Half window at ``t``: the configured one, widened to ``gate_sigma`` predicted
        offset errors (strong wander, long intervals), at most the bounded search."""
        spread = self.config.gate_sigma * math.sqrt(self._predicted_cov(t)[0, 0])
        return min(max(self.config.half_window_ps, spread), self.config.bounded_search_ps)

    def _predict(self, t: int) -> None:
        """Kalman time update to A-clock time ``t``."""
        self._p = self._predicted_cov(t)
        self._x += self._y * (t - self._t) / PS_PER_S
        self._t = t

    def _measure(self, s: int, e: int, model: ClockModel, hw: float) -> _Measurement | None:
        """This interval's pairs within ``+-hw`` of ``model`` (quoted at its centre):
        clipped mean at ``clip_sigma`` pooled widths, or None with fewer than 3 pairs."""
        a = self._a.between(s, e)
        b = self._b.between(float(model.b_from_a(s - hw - 2)), float(model.b_from_a(e + hw + 2)))
        if a.size == 0 or b.size == 0:
            return None
        _, resid = _pair_residuals(a, b, model, hw)
        if resid.size < 3:
            return None
        center = float(np.median(resid))
        # The wider of the pooled width and this interval's own robust one: a handful of
        # pairs can look far too narrow, and a model whose frequency is still off smears
        # the pairs wider than the pool knows (clipping them would bias the mean).
        own = _MAD_TO_SIGMA * float(np.median(np.abs(resid - center)))
        pooled = self.sigma_rel_ps
        sigma = max(own, pooled if pooled > 0 else 0.0, 0.5)
        clip = self.config.clip_sigma * sigma
        keep = np.abs(resid - center) <= clip
        for _ in range(20):
            if not keep.any():
                return None
            center = float(resid[keep].mean())
            new_keep = np.abs(resid - center) <= clip
            if np.array_equal(new_keep, keep):
                break
            keep = new_keep
        n = int(keep.sum())
        # This interval's width, for the pool: MAD about the centre within two clip widths
        # (wide enough not to truncate it, narrow enough to leave the background out).
        near = resid[np.abs(resid - center) <= 2.0 * clip]
        own = _MAD_TO_SIGMA * float(np.median(np.abs(near - np.median(near))))
        k = 1.0 + model.drift
        # Accidentals in the clip window from the two rates (B over its mapped span).
        background = a.size * b.size * min(2.0 * clip, 2.0 * hw) / (e - s + 2.0 * hw)
        return _Measurement(
            offset_ps=model.offset_ps + k * center,
            stderr_ps=_CLIP_INFLATION * sigma * k / math.sqrt(n),
            counts=n,
            own_sigma_ps=own,
            background=background,
            significance=(n - background) / math.sqrt(max(background, 1.0)),
        )

    def _pool_sigma(self, m: _Measurement) -> None:
        self._sig_ss = _SIGMA_MEMORY * self._sig_ss + m.counts * m.own_sigma_ps**2
        self._sig_n = _SIGMA_MEMORY * self._sig_n + m.counts

    def _interval(self, s: int, e: int, covered: int | None = None) -> TrackPoint:
        c = s + ((e if covered is None else covered) - s) // 2
        hw = self._window(c)
        self._predict(c)
        m = self._measure(s, e, self.model, hw)
        significance = m.significance if m is not None else 0.0
        z = m.offset_ps if m is not None else math.nan
        # The pairs average the offset over the interval; with wander that average
        # misses the value at the centre by var q I^3 / 320 (integrated random walk).
        r = m.stderr_ps**2 + self.wander_error_ps**2 if m is not None else math.nan
        used = False
        if self._locked:
            why = ""
            if m is None or significance < self.config.min_significance:
                why = (
                    f"correlation peak significance {significance:.1f} < "
                    f"{self.config.min_significance:g}"
                )
            else:
                innovation = z - self._x
                s_var = self._p[0, 0] + r
                if abs(innovation) > self.config.gate_sigma * math.sqrt(s_var):
                    why = (
                        f"residual jump {innovation:.0f} ps > {self.config.gate_sigma:g} x "
                        f"{math.sqrt(s_var):.1f} ps"
                    )
            if why:
                self._bad += 1
                if self._bad == 1:
                    self._first_bad_start = s
                if self._bad >= self.config.lost_after:
                    self._locked = False
                    self._loss_start = self._first_bad_start
                    self.events.append(
                        LockEvent("lost", e, f"{self._bad} bad intervals: {why}", significance)
                    )
            else:
                self._bad = 0
                self._update(z, r)
                if m is not None:
                    self._pool_sigma(m)
                used = True
        if (
            self._loss_start is not None
            and e - self._loss_start >= self.config.reacquire_span_ps
            and e - self._last_attempt >= self.config.reacquire_span_ps // 4
        ):
            self._last_attempt = e
            self._reacquire(c, e)
        return TrackPoint(
            t_ps=c,
            measured_offset_ps=z,
            measured_stderr_ps=math.sqrt(r) if m is not None else math.nan,
            counts=m.counts if m is not None else 0,
            background=m.background if m is not None else 0.0,
            significance=significance,
            model=self.model,
            offset_stderr_ps=self.offset_stderr_ps,
            drift_stderr=self.drift_stderr,
            locked=self._locked,
            used=used,
        )

    def _update(self, z: float, r: float) -> None:
        """Kalman measurement update with offset ``z`` (variance ``r``) at ``self._t``."""
        s_var = self._p[0, 0] + r
        gain = self._p[:, 0] / s_var
        innovation = z - self._x
        self._x += gain[0] * innovation
        self._y += gain[1] * innovation
        self._p = self._p - np.outer(gain, self._p[0, :])
        self._p = 0.5 * (self._p + self._p.T)
        self._last_r = r

    # -- re-acquisition ---------------------------------------------------------------

    def _reacquire(self, c: int, e: int) -> None:
        """Search the last ``reacquire_span`` (all after the loss) around the last model,
        then wide; tried every quarter span while the lock is lost."""
        assert self._loss_start is not None
        lo = max(self._loss_start, e - self.config.reacquire_span_ps)
        a = self._a.between(lo, e)
        base = self.model  # quoted at c, the current interval's centre
        errors = []
        for how, u in (
            ("bounded search", self.config.bounded_search_ps),
            ("full search", self.config.full_search_ps),
        ):
            b = self._b.between(float(base.b_from_a(lo)) - u, float(base.b_from_a(e)) + u)
            if a.size < 2 or b.size < 2:
                errors.append(f"{how}: {a.size} A and {b.size} B events")
                continue
            try:
                r = find_clock_offset(a, base.map_b_to_a(b), uncertainty_ps=u, t_ref_ps=c)
            except PeakNotFoundError as exc:
                errors.append(str(exc))
                continue
            new = base.compose(r.model.offset_ps, r.model.drift)
            k = 1.0 + base.drift
            # The fit's errors are at the data's edge (c); twice them, as offset and
            # drift errors there are correlated and the filter takes them as independent.
            self._x, self._y = new.offset_ps, new.drift * _Y_SCALE
            self._p = np.diag(
                [
                    (2 * k * r.fit.offset_stderr_ps) ** 2,
                    (2 * k * r.fit.drift_stderr * _Y_SCALE) ** 2,
                ]
            ) + _wander_cov(self._q, (e - lo) / PS_PER_S)
            self._locked = True
            self._bad = 0
            self._loss_start = None
            self.last_error = ""
            self.events.append(
                LockEvent(
                    "reacquired",
                    e,
                    f"{how} +-{u / PS_PER_S:.3g} s around the last model",
                    r.coarse.significance,
                    self.model,
                )
            )
            return
        self.last_error = "; ".join(errors)


@dataclass(frozen=True)
class _Measurement:
    offset_ps: float
    stderr_ps: float
    counts: int
    own_sigma_ps: float
    background: float
    significance: float


def _wander_cov(q: float, dt_s: float) -> FloatArray:
    """Process noise of a random walk of frequency (``var(dy) = q dt``) over ``dt_s``."""
    d = abs(dt_s)
    return q * np.array([[d**3 / 3.0, d**2 / 2.0], [d**2 / 2.0, d]])


# --- two-way and one-way -------------------------------------------------------------


@dataclass(frozen=True)
class OneWayMeasurement:
    """Measured ``t_b - t_a`` of pairs (B minus A, ps) at A-clock ``t_ref_ps``.

    ``drift`` (fractional) and its stderr let :meth:`at` re-quote it; the stderr
    at another instant adds ``drift_stderr * dt`` in quadrature (offset and drift
    errors uncorrelated at ``t_ref_ps``, as for a fit quoted at its data's centre).
    """

    offset_ps: float
    stderr_ps: float
    t_ref_ps: int
    drift: float = 0.0
    drift_stderr: float = 0.0

    def __post_init__(self) -> None:
        for name in ("offset_ps", "drift"):
            if not math.isfinite(getattr(self, name)):
                raise TimingInputError(f"OneWayMeasurement.{name}: must be finite")
        for name in ("stderr_ps", "drift_stderr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise TimingInputError(
                    f"OneWayMeasurement.{name}: must be a finite number >= 0 (got {value!r})"
                )

    def at(self, t_ref_ps: int) -> OneWayMeasurement:
        dt = float(int(t_ref_ps) - self.t_ref_ps)
        return OneWayMeasurement(
            self.offset_ps + self.drift * dt,
            math.hypot(self.stderr_ps, self.drift_stderr * dt),
            int(t_ref_ps),
            self.drift,
            self.drift_stderr,
        )

    @property
    def model(self) -> ClockModel:
        return ClockModel(self.offset_ps, self.drift, self.t_ref_ps)

    @classmethod
    def from_model(
        cls, model: ClockModel, stderr_ps: float, drift_stderr: float = 0.0
    ) -> OneWayMeasurement:
        return cls(model.offset_ps, stderr_ps, model.t_ref_ps, model.drift, drift_stderr)


@dataclass(frozen=True)
class ClockOffsetResult:
    """A clock offset ``theta`` (B's clock minus A's at A-clock ``t_ref_ps``, ps) with
    the path delay taken out, and how: ``method`` "two-way" (delay measured,
    ``delay_ps`` is the one-way fibre delay) or "one-way" (delay difference given)."""

    clock_offset_ps: float
    clock_offset_stderr_ps: float
    delay_ps: float
    delay_stderr_ps: float
    t_ref_ps: int
    drift: float
    drift_stderr: float
    method: Literal["one-way", "two-way"]

    @property
    def clock_model(self) -> ClockModel:
        """B's clock against A's (no path delay): ``C_B = C_A + theta + drift (C_A - t_ref)``."""
        return ClockModel(self.clock_offset_ps, self.drift, self.t_ref_ps)


def two_way_offset(
    a_to_b: OneWayMeasurement,
    b_to_a: OneWayMeasurement,
    *,
    delay_asymmetry_ps: float = 0.0,
) -> ClockOffsetResult:
    """Clock offset with the path delay cancelled, from both directions.

    ``a_to_b``: pairs whose partner travels A to B, measured ``theta + d_AB``;
    ``b_to_a``: partner travels B to A, measured ``theta - d_BA``. With
    ``delay_asymmetry_ps = d_AB - d_BA`` (0 for a symmetric fibre and matched
    detection chains): ``theta = (m_AB + m_BA - asym) / 2`` and
    ``d = (m_AB - m_BA) / 2`` (mean of the two delays), each with error
    ``sqrt(s_AB**2 + s_BA**2) / 2``. Both are quoted at ``a_to_b.t_ref_ps``.
    """
    m2 = b_to_a.at(a_to_b.t_ref_ps)
    m1 = a_to_b
    half_err = 0.5 * math.hypot(m1.stderr_ps, m2.stderr_ps)
    w1 = 1.0 / m1.drift_stderr**2 if m1.drift_stderr > 0 else 0.0
    w2 = 1.0 / m2.drift_stderr**2 if m2.drift_stderr > 0 else 0.0
    if w1 + w2 > 0:  # the frequency is common to both directions: weighted mean
        drift = (w1 * m1.drift + w2 * m2.drift) / (w1 + w2)
        drift_err = 1.0 / math.sqrt(w1 + w2)
    else:
        drift, drift_err = 0.5 * (m1.drift + m2.drift), 0.0
    return ClockOffsetResult(
        clock_offset_ps=0.5 * (m1.offset_ps + m2.offset_ps - delay_asymmetry_ps),
        clock_offset_stderr_ps=half_err,
        delay_ps=0.5 * (m1.offset_ps - m2.offset_ps),
        delay_stderr_ps=half_err,
        t_ref_ps=m1.t_ref_ps,
        drift=drift,
        drift_stderr=drift_err,
        method="two-way",
    )


def one_way_clock_offset(
    measured: OneWayMeasurement, delay_difference_ps: float, delay_stderr_ps: float = 0.0
) -> ClockOffsetResult:
    """Clock offset from one direction: the pairs measure ``theta + (D_B - D_A)``, with
    ``D_X`` the source-to-tagger delay of node X's photon; ``delay_difference_ps =
    D_B - D_A`` must come from elsewhere (fibre length, calibration)."""
    return ClockOffsetResult(
        clock_offset_ps=measured.offset_ps - delay_difference_ps,
        clock_offset_stderr_ps=math.hypot(measured.stderr_ps, delay_stderr_ps),
        delay_ps=float(delay_difference_ps),
        delay_stderr_ps=float(delay_stderr_ps),
        t_ref_ps=measured.t_ref_ps,
        drift=measured.drift,
        drift_stderr=measured.drift_stderr,
        method="one-way",
    )
