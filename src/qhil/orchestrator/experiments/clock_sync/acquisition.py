"""Acquisition: the clock offset and frequency offset with no prior knowledge.

``find_clock_offset`` searches +-0.5 s by a folded FFT, but its coarse stage
assumes the clocks tick at nearly the same rate: over 1 s of data a 100 ppm
frequency offset smears the peak over 100 us, fifty of its 1.9 us bins, and at a
few thousand pairs per second the peak sinks into the background. So, as
S-Fifteen's fpfind does, the frequency is scanned first: B's stream is
re-timed for each candidate frequency offset, in steps that leave at most one
coarse bin of smear over the data, and the coarse correlation is taken for each;
the most significant candidate is then refined by ``find_clock_offset`` around
its peak (offset to picoseconds, frequency to the fit's precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from qhil.numerics.timing import (
    ClockModel,
    FftPeak,
    OffsetFit,
    PeakNotFoundError,
    fft_offset,
    find_coincidences,
    refine_offset,
)
from qhil.numerics.timing.fft_offset import (
    circular_cross_correlation,
    folded_coverage,
    folded_histogram,
    locate_peak,
)
from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted, SyncAbortReason

I64 = npt.NDArray[np.int64]
PS_PER_S = 1e12
COARSE_BINS = 1 << 19


@dataclass(frozen=True)
class Acquisition:
    """The acquired clock model (B = A + offset + drift (t_a - t_ref)) and how it was found."""

    fit: OffsetFit
    model: ClockModel
    offset_stderr_ps: float
    drift_stderr: float
    scan_peak: FftPeak
    candidates: int
    rate_a_hz: float
    rate_b_hz: float
    #: The two-way method's second peak: its own significance (None: a first peak).
    second_significance: float | None = None

    @property
    def significance(self) -> float:
        if self.second_significance is not None:
            return self.second_significance
        return self.scan_peak.significance


def _rates(a: I64, b: I64, duration_ps: float) -> tuple[float, float]:
    span = max(duration_ps, 1.0) / PS_PER_S
    return a.size / span, b.size / span


#: One side counting this many times the other's rate (and > 1e5/s) is other light on
#: its detectors, not pairs: the default bench's BB84 transmitter gives bob ~1e7/s.
FLOODED_RATIO = 100.0


def no_peak_detail(what: str, significance: float, threshold: float, ra: float, rb: float) -> str:
    """The no-peak message: what was seen, and what to check."""
    flooded = ""
    (hi, side), (lo, other) = sorted([(ra, "alice"), (rb, "bob")], reverse=True)
    if hi > 1e5 and hi > FLOODED_RATIO * max(lo, 1.0):
        flooded = (
            f" {side} counts {hi / max(lo, 1.0):.3g}x {other}'s rate: other light on {side}'s "
            "detectors (a transmitter sharing them? close its attenuator: "
            "experiments.clock_sync.shutters)."
        )
    return (
        f"{what}: no correlation peak (significance {significance:.1f} sigma < "
        f"{threshold:g}); rates seen alice {ra:.4g}/s, bob {rb:.4g}/s.{flooded} Check that the "
        "pair source is on (pump current, crystal temperature), that nothing blocks the path, "
        "the taggers' input channels, and that the offset and frequency lie in the search "
        "range (uncertainty_s, max_frequency_offset_ppm)"
    )


def _scan(
    a: I64, b: I64, drifts: npt.NDArray[np.float64], bin_ps: int, t_ref: int
) -> tuple[float, float]:
    """The candidate frequency offset whose coarse correlation peaks highest: (drift, sigma).

    The background's level and spread do not depend on the candidate (the same events,
    re-timed), so they are measured once, at the first candidate; each further one costs a
    histogram, two single-precision FFTs and a maximum.
    """
    fa = np.conj(scipy.fft.rfft(_deviations(a, bin_ps)))
    best = (0.0, -math.inf)
    level = spread = 0.0
    for i, d in enumerate(drifts):
        mapped = ClockModel(0.0, float(d), t_ref).map_b_to_a(b)
        corr = scipy.fft.irfft(fa * scipy.fft.rfft(_deviations(mapped, bin_ps)), n=COARSE_BINS)
        if i == 0:
            level = float(np.median(corr))
            spread = 1.4826 * float(np.median(np.abs(corr - level))) or float(corr.std()) or 1.0
        sig = (float(corr.max()) - level) / spread
        if sig > best[1]:
            best = (float(d), sig)
    return best


def _deviations(t: I64, bin_ps: int) -> npt.NDArray[np.float32]:
    """Folded counts minus their even spread (as ``fft_offset`` correlates), single precision."""
    hist = folded_histogram(t, bin_ps, COARSE_BINS)
    hist -= folded_coverage(int(t[0]), int(t[-1]), t.size, bin_ps, COARSE_BINS)
    return hist.astype(np.float32)


def acquire(
    a: I64,
    b: I64,
    *,
    uncertainty_s: float = 0.5,
    max_frequency_offset_ppm: float = 100.0,
    min_significance: float = 6.0,
    duration_ps: float | None = None,
) -> Acquisition:
    """B's clock against A's from one stretch of both streams (A's clock is the reference).

    Raises :class:`ClockSyncAborted` (``no_peak``) with the significance and the rates
    seen when no candidate frequency gives a significant peak.
    """
    span = (
        float(duration_ps)
        if duration_ps is not None
        else float(max(int(a[-1]) - int(a[0]), 1) if a.size else 1)
    )
    ra, rb = _rates(a, b, span)
    if a.size < 2 or b.size < 2:
        raise ClockSyncAborted(
            SyncAbortReason.NO_PEAK, no_peak_detail("acquisition", 0.0, min_significance, ra, rb)
        )
    t_ref = int(a[0])
    u_ps = uncertainty_s * PS_PER_S
    coarse_bin = max(1, math.ceil(2.0 * u_ps / COARSE_BINS))
    data_ps = max(float(a[-1] - a[0]), float(b[-1] - b[0]), 1.0)
    step = coarse_bin / data_ps  # one bin of smear across the data
    max_drift = max_frequency_offset_ppm * 1e-6
    n_side = math.ceil(max_drift / step) if max_drift > 0 else 0
    drifts = (np.arange(-n_side, n_side + 1) * step).astype(np.float64)
    drift0, sig = _scan(a, b, drifts, coarse_bin, t_ref)
    if sig < min_significance:
        raise ClockSyncAborted(
            SyncAbortReason.NO_PEAK, no_peak_detail("acquisition", sig, min_significance, ra, rb)
        )
    peak = fft_offset(
        a, ClockModel(0.0, drift0, t_ref).map_b_to_a(b), coarse_bin, COARSE_BINS, check_sorted=False
    )
    scan_model = ClockModel(0.0, drift0, t_ref).compose(peak.offset_ps, 0.0)
    # Left after the scan: one bin of offset and half a frequency step over the data.
    half = 2.0 * coarse_bin + 0.5 * step * data_ps
    fit = refine_locally(a, b, scan_model, half, min_significance, (ra, rb))
    return Acquisition(
        fit=fit,
        model=fit.model,
        offset_stderr_ps=fit.offset_stderr_ps,
        drift_stderr=fit.drift_stderr,
        scan_peak=peak,
        candidates=int(drifts.size),
        rate_a_hz=ra,
        rate_b_hz=rb,
    )


#: Each refinement step narrows the window around the fitted line by this factor.
_NARROW = 4.0
#: The steps stop at this half window (a few detector jitters), then the ps fit takes over.
_FINAL_HALF_PS = 2_000.0
#: The ps fit's own window, wider: a TDC1's 2 ns ticks make the pairs' differences a
#: triangle +-2 ns wide, which a +-2 ns window around a start a few hundred ps off cuts
#: on one side, biasing the fit toward that start (300 ps off: 4 sigma, 800 ps: 13 sigma
#: at 1.4e4 pairs); in +-6 ns the fit's own 3-sigma clip, re-centred, decides.
_FIT_HALF_PS = 6_000.0


_BINS = 64


def _centroid(d: npt.NDArray[np.float64], width: float) -> float:
    """Background-subtracted centroid of the peak of the differences ``d`` in +-``width``."""
    hist, edges = np.histogram(d, bins=_BINS, range=(-width, width))
    level = float(np.median(hist))
    k = int(hist.argmax())
    sel = slice(max(k - 2, 0), min(k + 3, _BINS))
    w = np.maximum(hist[sel] - level, 0.0)
    x = 0.5 * (edges[:-1] + edges[1:])[sel]
    return float((x * w).sum() / w.sum()) if w.sum() > 0 else float(x[k - sel.start])


def refine_locally(
    a: I64,
    b: I64,
    model: ClockModel,
    half_ps: float,
    min_significance: float,
    rates: tuple[float, float],
) -> OffsetFit:
    """Offset and frequency to picoseconds from the pairs within ``+-half_ps`` of ``model``.

    Unlike the folded FFT ladder of ``find_clock_offset``, only time differences near this
    one peak are looked at, so a second peak elsewhere (the two-way method's other
    direction, 100 us away) cannot be taken for it. Each step takes the peak's
    background-subtracted centroid in the early and the late half of the data (a line:
    offset and frequency), then narrows the window around it; the last is
    ``refine_offset``'s clipped fit.
    """
    width = float(half_ps)
    first = True
    while True:
        mapped = model.map_b_to_a(b)
        pairs = find_coincidences(a, mapped, 2 * math.ceil(width) + 2, 0, check_sorted=False)
        t = (a[pairs.index_a] - model.t_ref_ps).astype(np.float64)
        d = (mapped[pairs.index_b] - a[pairs.index_a]).astype(np.float64)
        keep = np.abs(d) <= width
        t, d = t[keep], d[keep]
        # The peak against the flat background of this window (Poisson, two-sided bins).
        hist, _ = np.histogram(d, bins=_BINS, range=(-width, width))
        level = float(np.median(hist))
        sig = (float(hist.max()) - level) / math.sqrt(max(level, 1.0))
        # Judged in the first, widest window: narrower ones are filled by the peak itself.
        if t.size < 10 or (first and sig < min_significance):
            raise ClockSyncAborted(
                SyncAbortReason.NO_PEAK,
                no_peak_detail(
                    f"acquisition (refinement within +-{width / 1e3:.4g} ns)",
                    sig,
                    min_significance,
                    *rates,
                ),
            )
        if width <= _FINAL_HALF_PS:
            break
        mid = float(np.median(t))
        early, late = t < mid, t >= mid
        t1, t2 = float(np.mean(t[early])), float(np.mean(t[late]))
        c1, c2 = _centroid(d[early], width), _centroid(d[late], width)
        eps = (c2 - c1) / (t2 - t1) if t2 > t1 else 0.0
        e0 = c1 - eps * t1
        model = model.compose(e0, eps)
        width = max(_FINAL_HALF_PS, width / _NARROW)
        first = False
    try:
        return refine_offset(
            a, b, model, max(width, _FIT_HALF_PS), fit_drift=True, check_sorted=False
        )
    except PeakNotFoundError as exc:
        raise ClockSyncAborted(
            SyncAbortReason.NO_PEAK,
            no_peak_detail(f"acquisition ({exc.stage})", exc.significance, exc.threshold, *rates),
        ) from None


#: The two-way method's second peak: searched within +-this of the first (200 km of fibre).
MAX_PATH_DELAY_PS = 1_000_000_000
_SECOND_BIN_PS = 1000
_SECOND_BINS = 1 << 21  # 2.1 ms period at 1 ns bins: +-1 ms unambiguous
#: Bins either side of the first peak left out of the second search.
_EXCLUDE_BINS = 50


def second_peak(
    a: I64, b: I64, first: Acquisition, *, min_significance: float = 6.0
) -> Acquisition:
    """The other direction's peak of the two-way method, beside ``first`` in the same streams.

    With a pair source at each end and the photons on the same inputs, the correlation
    has two peaks, ``theta + d`` and ``theta - d``: B is mapped by the first one's model
    (its frequency is common to both), and the highest other peak within
    +-``MAX_PATH_DELAY_PS`` is refined to picoseconds.
    """
    mapped = first.model.map_b_to_a(b)
    hist_a = folded_histogram(a, _SECOND_BIN_PS, _SECOND_BINS)
    hist_a -= folded_coverage(int(a[0]), int(a[-1]), a.size, _SECOND_BIN_PS, _SECOND_BINS)
    hist_b = folded_histogram(mapped, _SECOND_BIN_PS, _SECOND_BINS)
    hist_b -= folded_coverage(
        int(mapped[0]), int(mapped[-1]), mapped.size, _SECOND_BIN_PS, _SECOND_BINS
    )
    corr = circular_cross_correlation(hist_a, hist_b)
    level = float(np.median(corr))
    corr[: _EXCLUDE_BINS + 1] = level
    corr[-_EXCLUDE_BINS:] = level
    position, sig, *_ = locate_peak(corr)
    if sig < min_significance:
        raise ClockSyncAborted(
            SyncAbortReason.NO_PEAK,
            no_peak_detail(
                "two-way: the second direction's peak",
                sig,
                min_significance,
                first.rate_a_hz,
                first.rate_b_hz,
            )
            + "; both pair sources (one at each node) must be on",
        )
    guess = first.model.compose(position * _SECOND_BIN_PS, 0.0)
    rates = (first.rate_a_hz, first.rate_b_hz)
    fit = refine_locally(a, b, guess, 8.0 * _SECOND_BIN_PS, min_significance, rates)
    return Acquisition(
        fit=fit,
        model=fit.model,
        offset_stderr_ps=fit.offset_stderr_ps,
        drift_stderr=fit.drift_stderr,
        scan_peak=first.scan_peak,
        candidates=first.candidates,
        rate_a_hz=first.rate_a_hz,
        rate_b_hz=first.rate_b_hz,
        second_significance=sig,
    )
