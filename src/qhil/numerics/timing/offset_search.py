"""Clock offset and drift between two sites from correlated photon timestamps.

Pipeline of :func:`find_clock_offset` (what qcrypto's pfind and fpfind do, in numpy):

1. coarse: one folded FFT cross-correlation over all data with a period of twice
   the uncertainty (``2 * 0.5 s / 2**19`` bins = ~1.9 us) -> offset to a few ns;
2. drift: the same correlation on the early and the late half of the data
   -> two offsets -> frequency difference; B is re-mapped onto A's clock;
3. fine: repeat 2 with bins ``refine_factor`` times narrower until they are at
   most ``final_bin_ps`` wide;
4. picoseconds: the coincidences within a few bins of the model are fitted
   (offset, optionally drift) with iterative sigma clipping, which reaches
   ``sigma_rel / sqrt(N)``; a Gaussian fit to the time-difference histogram is
   available as an alternative estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import curve_fit

from qhil.numerics.timing._validate import (
    Timestamps,
    as_timestamps,
    positive_float,
    positive_int,
)
from qhil.numerics.timing.clock_model import ClockModel, fit_line
from qhil.numerics.timing.coincidences import find_coincidences
from qhil.numerics.timing.errors import PeakNotFoundError, TimingInputError
from qhil.numerics.timing.fft_offset import FftPeak, fft_offset

FloatArray = npt.NDArray[np.float64]

_MAD_TO_SIGMA = 1.4826
_MAX_CLIP_ITERATIONS = 20


@dataclass(frozen=True)
class OffsetFit:
    """Picosecond fit of the residual between the streams after a clock model.

    ``model`` is the refined clock model; ``offset_stderr_ps`` the 1-sigma error
    of its offset at ``model.t_ref_ps``; ``drift_stderr`` that of its drift (0
    when the drift was held fixed); ``sigma_rel_ps`` the robust (MAD) estimate of
    the relative timing jitter; ``n_coincidences`` the pairs inside the final
    clip window of ``+-clip_sigma * sigma_rel_ps``.
    """

    model: ClockModel
    offset_stderr_ps: float
    drift_stderr: float
    sigma_rel_ps: float
    n_coincidences: int


@dataclass(frozen=True)
class ClockSyncResult:
    """Everything :func:`find_clock_offset` learned, stage by stage.

    ``fft_model`` is the clock model after the last FFT stage (pfind's result,
    good to about a tenth of ``final_bin_ps``); ``fit`` the picosecond refinement.
    """

    fit: OffsetFit
    coarse: FftPeak
    stages: tuple[tuple[FftPeak, ...], ...]
    fft_model: ClockModel

    @property
    def model(self) -> ClockModel:
        return self.fit.model

    @property
    def offset_ps(self) -> float:
        return self.fit.model.offset_ps

    @property
    def drift_ppm(self) -> float:
        return self.fit.model.drift_ppm


@dataclass(frozen=True)
class OffsetTrack:
    """Offset (B minus A) measured in consecutive intervals of A's clock.

    Intervals without coincidences hold NaN offsets and stderrs.
    """

    t_mid_ps: FloatArray
    offset_ps: FloatArray
    stderr_ps: FloatArray
    counts: npt.NDArray[np.int64]

    def fit(self, t_ref_ps: int, *, fit_drift: bool = True) -> tuple[ClockModel, float, float]:
        """Weighted line through the track: (model, offset stderr ps, drift stderr)."""
        line = fit_line(
            self.t_mid_ps,
            self.offset_ps,
            self.stderr_ps,
            t_ref=float(t_ref_ps),
            fit_slope=fit_drift,
        )
        return (
            ClockModel(line.offset, line.slope, int(t_ref_ps)),
            line.offset_stderr,
            line.slope_stderr,
        )


def _overlap(a: Timestamps, b_mapped: Timestamps) -> tuple[int, int]:
    lo = max(int(a[0]), int(b_mapped[0]))
    hi = min(int(a[-1]), int(b_mapped[-1])) + 1
    if hi <= lo:
        raise PeakNotFoundError(
            "clock offset search",
            0.0,
            0.0,
            problem="the streams do not overlap in time under the current clock model",
        )
    return lo, hi


def _slice(t: Timestamps, lo: int, hi: int) -> Timestamps:
    return t[np.searchsorted(t, lo) : np.searchsorted(t, hi)]


def _drift_stage(
    a: Timestamps,
    b: Timestamps,
    model: ClockModel,
    bin_width_ps: int,
    n_bins: int,
    min_significance: float,
    estimate_drift: bool,
    stage: str,
) -> tuple[ClockModel, tuple[FftPeak, ...], float]:
    """One refinement step: correlate halves of the data mapped by ``model``, update it.

    Also returns the 1-sigma smear the updated model leaves within one half of the
    data (drift error x half duration): the next stage's bins must not be finer.
    """
    mapped = model.map_b_to_a(b)
    lo, hi = _overlap(a, mapped)
    if not estimate_drift:
        peak = fft_offset(
            _slice(a, lo, hi),
            _slice(mapped, lo, hi),
            bin_width_ps,
            n_bins,
            min_significance=min_significance,
            stage=stage,
            check_sorted=False,
        )
        return model.compose(peak.offset_ps, 0.0), (peak,), 0.0
    mid = lo + (hi - lo) // 2
    peaks = []
    for s, e, half in ((lo, mid, "early"), (mid, hi, "late")):
        peaks.append(
            fft_offset(
                _slice(a, s, e),
                _slice(mapped, s, e),
                bin_width_ps,
                n_bins,
                min_significance=min_significance,
                stage=f"{stage} ({half} half)",
                check_sorted=False,
            )
        )
    t1 = 0.5 * (lo + mid)
    t2 = 0.5 * (mid + hi)
    eps = (peaks[1].offset_ps - peaks[0].offset_ps) / (t2 - t1)
    e0 = peaks[0].offset_ps + eps * (model.t_ref_ps - t1)
    # The slope error times half the data is the sum of the two centroid errors.
    smear = peaks[0].offset_stderr_ps + peaks[1].offset_stderr_ps
    return model.compose(e0, eps), tuple(peaks), smear


def _pair_residuals(
    a: Timestamps, b: Timestamps, model: ClockModel, half_window_ps: float
) -> tuple[FloatArray, FloatArray]:
    """(A time relative to t_ref, residual t_b mapped to A minus t_a) of pairs near the model."""
    mapped = model.map_b_to_a(b)
    width = 2 * math.ceil(half_window_ps) + 2  # +2 covers the rounding of the mapped stamps
    pairs = find_coincidences(a, mapped, width, 0, check_sorted=False)
    resid = model.a_from_b(b[pairs.index_b]) - a[pairs.index_a].astype(np.float64)
    t_rel = (a[pairs.index_a] - model.t_ref_ps).astype(np.float64)
    keep = np.abs(resid) <= half_window_ps
    return t_rel[keep], resid[keep]


def refine_offset(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    model: ClockModel,
    search_half_window_ps: float,
    *,
    fit_drift: bool = False,
    clip_sigma: float = 3.0,
    method: Literal["clipped", "gaussian"] = "clipped",
    check_sorted: bool = True,
) -> OffsetFit:
    """Picosecond offset (and optionally drift) from the coincidences around ``model``.

    Pairs within ``+-search_half_window_ps`` of the model give a robust width
    (MAD); then the residual is fitted (constant, or a line when ``fit_drift``) to
    the pairs within ``+-clip_sigma`` widths of the fit, iterating until the set
    of pairs stops changing. ``method="gaussian"`` instead fits a Gaussian plus a
    flat background to the histogram of residuals (offset only; drift kept).
    """
    a_ts = as_timestamps(a, "a", check_sorted=check_sorted)
    b_ts = as_timestamps(b, "b", check_sorted=check_sorted)
    half = positive_float(search_half_window_ps, "search_half_window_ps")
    clip = positive_float(clip_sigma, "clip_sigma")
    t_rel, resid = _pair_residuals(a_ts, b_ts, model, half)
    n_params = 2 if fit_drift else 1
    if resid.size < 3 * n_params:
        raise PeakNotFoundError(
            "picosecond offset fit",
            0.0,
            0.0,
            problem=f"only {resid.size} coincidences within +-{half:g} ps of the model "
            f"(need {3 * n_params})",
        )
    center = float(np.median(resid))
    sigma = max(_MAD_TO_SIGMA * float(np.median(np.abs(resid - center))), 0.5)
    if method == "gaussian":
        return _gaussian_fit(t_rel, resid, model, center, sigma, clip)
    if method != "clipped":
        raise TimingInputError(f"method: must be 'clipped' or 'gaussian' (got {method!r})")
    keep = np.abs(resid - center) <= clip * sigma
    for _ in range(_MAX_CLIP_ITERATIONS):
        line = fit_line(t_rel[keep], resid[keep], t_ref=0.0, fit_slope=fit_drift)
        # Re-estimate the width about the fitted line: a drift error in the input
        # model would otherwise inflate it.
        about = resid - (line.offset + line.slope * t_rel)
        sigma = max(_MAD_TO_SIGMA * float(np.median(np.abs(about))), 0.5)
        new_keep = np.abs(about) <= clip * sigma
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    line = fit_line(t_rel[keep], resid[keep], t_ref=0.0, fit_slope=fit_drift)
    inflation = _skipped_mean_inflation(clip)
    return OffsetFit(
        model=model.compose(line.offset, line.slope),
        offset_stderr_ps=line.offset_stderr * inflation * (1.0 + model.drift),
        drift_stderr=line.slope_stderr * inflation * (1.0 + model.drift),
        sigma_rel_ps=sigma,
        n_coincidences=int(keep.sum()),
    )


def _skipped_mean_inflation(clip: float) -> float:
    """Error of a fit that drops points beyond ``+-clip`` sigma of itself, relative to
    the naive scatter-of-kept-points error, for Gaussian data.

    The skipped mean's asymptotic variance is ``E[x^2; |x|<c] / (N (P_c - 2 c phi(c))^2)``
    with ``P_c = 2 Phi(c) - 1``; the naive error of the kept points is
    ``E[x^2; |x|<c] / (N P_c^2)``. Their ratio is ``(P_c / (P_c - 2 c phi(c)))^2``:
    1.027 in the standard error at 3 sigma.
    """
    p_c = math.erf(clip / math.sqrt(2.0))
    phi_c = math.exp(-0.5 * clip * clip) / math.sqrt(2.0 * math.pi)
    return p_c / (p_c - 2.0 * clip * phi_c)


def _gaussian(x: FloatArray, amp: float, mu: float, sig: float, bg: float) -> FloatArray:
    return amp * np.exp(-0.5 * ((x - mu) / sig) ** 2) + bg


def _gaussian_fit(
    t_rel: FloatArray,
    resid: FloatArray,
    model: ClockModel,
    center: float,
    sigma: float,
    clip: float,
) -> OffsetFit:
    del t_rel  # the Gaussian estimator fits the offset only
    span = max(2.0 * clip, 8.0) * sigma
    n_bins = 80
    edges = np.linspace(center - span, center + span, n_bins + 1)
    counts, _ = np.histogram(resid, bins=edges)
    x = 0.5 * (edges[:-1] + edges[1:])
    p0 = [float(counts.max()), center, sigma, float(np.median(counts[:10]))]
    # Poisson weights; empty bins get weight of one count so they still pull the tails.
    err = np.sqrt(np.maximum(counts, 1.0))
    try:
        popt, pcov = curve_fit(
            _gaussian,
            x,
            counts.astype(np.float64),
            p0=p0,
            sigma=err,
            absolute_sigma=True,
            maxfev=5000,
        )
    except RuntimeError as exc:
        raise PeakNotFoundError(
            "Gaussian offset fit", 0.0, 0.0, problem=f"the fit did not converge ({exc})"
        ) from None
    mu, sig = float(popt[1]), abs(float(popt[2]))
    n_in = int(np.count_nonzero(np.abs(resid - mu) <= clip * sig))
    return OffsetFit(
        model=model.compose(mu, 0.0),
        offset_stderr_ps=float(np.sqrt(pcov[1, 1])) * (1.0 + model.drift),
        drift_stderr=0.0,
        sigma_rel_ps=sig,
        n_coincidences=n_in,
    )


def find_clock_offset(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    uncertainty_ps: float = 500_000_000_000,
    offset_guess_ps: float = 0,
    coarse_bins: int = 1 << 19,
    fine_bins: int = 1 << 16,
    refine_factor: int = 32,
    final_bin_ps: int = 1000,
    estimate_drift: bool = True,
    min_significance: float = 6.0,
    clip_sigma: float = 3.0,
    method: Literal["clipped", "gaussian"] = "clipped",
    t_ref_ps: int | None = None,
) -> ClockSyncResult:
    """Find B's clock relative to A's from correlated timestamps (B = A + offset).

    The true offset may be anywhere in ``offset_guess_ps +- uncertainty_ps``. The
    returned model quotes the offset at ``t_ref_ps`` (default: A's first event).
    ``estimate_drift=False`` assumes both clocks tick at the same rate, which
    makes the picosecond offset a plain clipped mean with error ~ sigma/sqrt(N).

    Raises :class:`PeakNotFoundError` naming the stage whose correlation peak was
    not significant (too few pairs, too much drift, wrong uncertainty window).
    """
    a_ts = as_timestamps(a, "a")
    b_ts = as_timestamps(b, "b")
    if a_ts.size < 2 or b_ts.size < 2:
        raise TimingInputError(
            f"find_clock_offset: need events in both streams (got {a_ts.size}, {b_ts.size})"
        )
    u = positive_float(uncertainty_ps, "uncertainty_ps")
    nc = positive_int(coarse_bins, "coarse_bins")
    nf = positive_int(fine_bins, "fine_bins")
    factor = positive_int(refine_factor, "refine_factor")
    final = positive_int(final_bin_ps, "final_bin_ps")
    if factor < 2:
        raise TimingInputError(f"refine_factor: must be >= 2 (got {factor})")
    t_ref = int(a_ts[0]) if t_ref_ps is None else int(t_ref_ps)

    # Period >= 2 * uncertainty makes the folded correlation unambiguous.
    coarse_bin = max(1, math.ceil(2.0 * u / nc))
    coarse = fft_offset(
        a_ts,
        b_ts,
        coarse_bin,
        nc,
        offset_guess_ps,
        min_significance=min_significance,
        stage="coarse offset search",
        check_sorted=False,
    )
    model = ClockModel(coarse.offset_ps, 0.0, t_ref)
    stages: list[tuple[FftPeak, ...]] = []
    bin_ps = coarse_bin
    while True:
        stage = f"offset refinement at {bin_ps} ps bins"
        model, peaks, smear = _drift_stage(
            a_ts, b_ts, model, bin_ps, nf, min_significance, estimate_drift, stage
        )
        stages.append(peaks)
        if bin_ps <= final:
            break
        # Refine by `factor`, but keep a 3-sigma drift smear within ~2 bins: with
        # few pairs the ladder takes more, smaller steps instead of losing the peak.
        next_bin = max(final, bin_ps // factor, math.ceil(1.5 * smear))
        if next_bin >= bin_ps:
            raise PeakNotFoundError(
                stage,
                min(p.significance for p in peaks),
                min_significance,
                problem=f"drift too uncertain to refine below {bin_ps} ps bins "
                f"(1-sigma smear {smear:.0f} ps); take more data",
            )
        bin_ps = next_bin
    fit = refine_offset(
        a_ts,
        b_ts,
        model,
        4.0 * bin_ps,
        fit_drift=estimate_drift,
        clip_sigma=clip_sigma,
        method=method,
        check_sorted=False,
    )
    return ClockSyncResult(fit=fit, coarse=coarse, stages=tuple(stages), fft_model=model)


def track_clock_offset(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    model: ClockModel,
    interval_ps: int,
    half_window_ps: float,
    *,
    check_sorted: bool = True,
) -> OffsetTrack:
    """Offset measured in consecutive intervals of ``interval_ps`` (A's clock).

    Each interval's offset is the model's offset at the interval's mean pair time
    plus the mean residual of the pairs within ``+-half_window_ps`` of the model;
    the stderr is their standard deviation over sqrt(count). Use a window of a
    few sigma_rel (e.g. ``3 * fit.sigma_rel_ps``). Fit a line through the track
    with :meth:`OffsetTrack.fit` to get the drift.
    """
    a_ts = as_timestamps(a, "a", check_sorted=check_sorted)
    b_ts = as_timestamps(b, "b", check_sorted=check_sorted)
    step = positive_int(interval_ps, "interval_ps")
    half = positive_float(half_window_ps, "half_window_ps")
    if a_ts.size == 0:
        raise TimingInputError("a: no events to track")
    t_rel, resid = _pair_residuals(a_ts, b_ts, model, half)
    start = int(a_ts[0])
    n_int = (int(a_ts[-1]) - start) // step + 1
    idx = ((t_rel + model.t_ref_ps - start) // step).astype(np.int64)
    counts = np.bincount(idx, minlength=n_int)
    s1 = np.bincount(idx, weights=resid, minlength=n_int)
    s2 = np.bincount(idx, weights=resid * resid, minlength=n_int)
    st = np.bincount(idx, weights=t_rel, minlength=n_int)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / counts
        var = (s2 - counts * mean * mean) / (counts - 1)
        t_mid = st / counts + model.t_ref_ps
        stderr = np.sqrt(np.maximum(var, 0.0) / counts)
    stderr[counts < 2] = np.nan
    offset = model.offset_at(np.nan_to_num(t_mid).astype(np.int64)) + mean * (1.0 + model.drift)
    offset[counts == 0] = np.nan
    return OffsetTrack(t_mid, offset, stderr * (1.0 + model.drift), counts.astype(np.int64))
