"""Time offset between two timestamp streams by FFT cross-correlation (qcrypto pfind style).

Both streams are binned with width ``r`` and *folded* modulo the period
``P = r * n_bins``: a stream of any length lands in one ``n_bins`` histogram, and
the circular cross-correlation of the two histograms peaks at the offset modulo
``P``. With ``P`` at least twice the uncertainty the answer is unambiguous in
``center +- P/2``. Cost: two ``bincount`` over the events and three real FFTs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from qhil.numerics.timing._validate import as_timestamps, positive_int, whole_ps
from qhil.numerics.timing.errors import PeakNotFoundError, TimingInputError

# Bins above background by this many sigma, adjacent to the maximum, belong to the peak.
_PEAK_EXTENT_SIGMA = 3.0
# Upper bound on how far a (drift-smeared) peak is followed, in bins either side.
_PEAK_MAX_HALF_WIDTH = 256


@dataclass(frozen=True)
class FftPeak:
    """Result of one folded FFT cross-correlation.

    ``offset_ps`` estimates ``t_b - t_a`` (background-subtracted centroid of the
    peak, so finer than one bin). ``significance`` is the maximum's height above
    the median background in units of the background's robust standard deviation.
    """

    offset_ps: float
    significance: float
    bin_width_ps: int
    n_bins: int
    peak_counts: float
    background: float
    peak_half_width_bins: int
    offset_stderr_ps: float

    @property
    def period_ps(self) -> int:
        return self.bin_width_ps * self.n_bins


def folded_histogram(
    t: npt.NDArray[np.int64], bin_width_ps: int, n_bins: int
) -> npt.NDArray[np.float64]:
    """Counts of ``t`` in bins of ``bin_width_ps``, folded modulo ``bin_width_ps * n_bins``."""
    period = bin_width_ps * n_bins
    idx = np.mod(t, period) // bin_width_ps  # np.mod is non-negative for a positive period
    return np.bincount(idx, minlength=n_bins).astype(np.float64)


def folded_coverage(
    first_ps: int, last_ps: int, n_events: int, bin_width_ps: int, n_bins: int
) -> npt.NDArray[np.float64]:
    """Expected folded counts of ``n_events`` spread evenly over ``[first_ps, last_ps]``.

    A span that is not a whole number of periods covers some bins once more than
    others; subtracting this before correlating keeps the background flat.
    """
    period = bin_width_ps * n_bins
    start_bin = (first_ps % period) // bin_width_ps
    length_bins = (last_ps - first_ps + 1) / bin_width_ps
    full, rem = divmod(length_bins, n_bins)
    # Bins start_bin .. start_bin + ceil(rem) - 1 (wrapping) are covered once more.
    cover = np.full(n_bins, full)
    extra = math.ceil(rem)
    end = start_bin + extra
    cover[start_bin : min(end, n_bins)] += 1.0
    if end > n_bins:
        cover[: end - n_bins] += 1.0
    total = float(cover.sum())
    out: npt.NDArray[np.float64] = cover * (n_events / total) if total > 0 else cover
    return out


def circular_cross_correlation(
    hist_a: npt.NDArray[np.float64], hist_b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``c[m] = sum_k A[k] B[(k + m) mod n]`` via real FFTs."""
    n = hist_a.size
    fa = scipy.fft.rfft(hist_a)
    fb = scipy.fft.rfft(hist_b)
    out: npt.NDArray[np.float64] = scipy.fft.irfft(np.conj(fa) * fb, n=n)
    return out


def locate_peak(corr: npt.NDArray[np.float64]) -> tuple[float, float, float, float, int, float]:
    """Peak of a circular correlation: (centroid bin in (-n/2, n/2], significance,
    background-subtracted peak counts, background level, half-width in bins,
    standard error of the centroid in bins)."""
    n = corr.size
    background = float(np.median(corr))
    mad = float(np.median(np.abs(corr - background)))
    sd = 1.4826 * mad
    if sd <= 0:
        # A flat background (e.g. very sparse streams): fall back to the plain std.
        sd = float(corr.std())
    m_star = int(np.argmax(corr))
    if sd <= 0:
        return float("nan"), 0.0, 0.0, background, 0, float("inf")
    significance = (float(corr[m_star]) - background) / sd
    # Follow the peak while neighbours stand out, so a drift-smeared peak is centred right.
    excess = corr - background
    limit = min(_PEAK_MAX_HALF_WIDTH, n // 4)
    rel = np.arange(-limit, limit + 1)
    window = excess[np.mod(m_star + rel, n)]
    high = window > _PEAK_EXTENT_SIGMA * sd
    low_left = np.flatnonzero(~high[:limit])
    left = int(low_left[-1]) + 1 if low_left.size else 0
    low_right = np.flatnonzero(~high[limit + 1 :])
    right = limit + int(low_right[0]) if low_right.size else 2 * limit
    # One extra bin each side catches the split of a peak that straddles a bin edge.
    left = max(left - 1, 0)
    right = min(right + 1, 2 * limit)
    sel = slice(left, right + 1)
    weights = window[sel]
    total = float(weights.sum())
    centroid = float((rel[sel] * weights).sum() / total) if total > 0 else 0.0
    # Each bin's noise: background scatter plus the Poisson scatter of its excess.
    var = sd * sd + np.maximum(weights, 0.0)
    stderr = (
        float(np.sqrt(((rel[sel] - centroid) ** 2 * var).sum()) / total)
        if total > 0
        else float("inf")
    )
    position = m_star + centroid
    if position > n / 2:
        position -= n
    half_width = max(limit - left, right - limit)
    return position, significance, total, background, half_width, stderr


def fft_offset(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    bin_width_ps: int,
    n_bins: int,
    center_ps: float = 0,
    *,
    min_significance: float | None = None,
    stage: str = "fft offset search",
    check_sorted: bool = True,
) -> FftPeak:
    """Offset ``t_b - t_a`` in ``center_ps +- bin_width_ps * n_bins / 2`` from one folded FFT.

    Raises :class:`PeakNotFoundError` when ``min_significance`` is given and the
    peak falls short of it.
    """
    bw = positive_int(bin_width_ps, "bin_width_ps")
    nb = positive_int(n_bins, "n_bins")
    if nb < 16:
        raise TimingInputError(f"n_bins: need at least 16 bins (got {nb})")
    a_ts = as_timestamps(a, "a", check_sorted=check_sorted)
    b_ts = as_timestamps(b, "b", check_sorted=check_sorted)
    if a_ts.size == 0 or b_ts.size == 0:
        raise TimingInputError(f"{stage}: both streams need events (got {a_ts.size}, {b_ts.size})")
    c = whole_ps(center_ps, "center_ps")
    b_shift = b_ts - c
    # Correlate deviations from the expected (evenly spread) counts: zero-mean background.
    hist_a = folded_histogram(a_ts, bw, nb)
    hist_a -= folded_coverage(int(a_ts[0]), int(a_ts[-1]), a_ts.size, bw, nb)
    hist_b = folded_histogram(b_shift, bw, nb)
    hist_b -= folded_coverage(int(b_shift[0]), int(b_shift[-1]), b_shift.size, bw, nb)
    corr = circular_cross_correlation(hist_a, hist_b)
    position, significance, total, background, half_width, stderr = locate_peak(corr)
    if min_significance is not None and not significance >= min_significance:
        raise PeakNotFoundError(
            stage,
            significance,
            min_significance,
            f"bin {bw} ps x {nb} bins, {a_ts.size} and {b_ts.size} events",
        )
    return FftPeak(
        offset_ps=c + position * bw,
        significance=significance,
        bin_width_ps=bw,
        n_bins=nb,
        peak_counts=total,
        background=background,
        peak_half_width_bins=half_width,
        offset_stderr_ps=stderr * bw,
    )
