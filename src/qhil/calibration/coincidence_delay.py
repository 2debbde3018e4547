"""The coincidence delay between two nodes: where the pairs' time differences peak.

A pair's two photons reach the nodes' taggers at times that differ by the path-delay
difference (fibres, patch cords, detectors, tagger inputs); the taggers count on their own
clocks, started at their own instants. After clock synchronisation's model maps bob's
timestamps onto alice's timebase (``t_b' = model.map_b_to_a(t_b)``), the differences
``t_b' - t_a`` of the pairs peak at the **coincidence delay**: what a coincidence search
centres its window on. What it holds depends on the clock model used:

* **one-way** (pairs from the central source): the model's offset *is* the peak of these
  pairs (stream offset plus the path-delay difference), so the delay left after it is what
  the model does not hold: the detector/channel differences between the H/V/D/A pairs of
  inputs and the clocks' wander since the model's reference instant.
* **two-way** (path delay cancelled): the model holds the stream offset only, and the delay
  is the central source's path-delay difference (bob's fibre minus alice's) plus the same
  channel terms.

Stored (``calibration.coincidence_delay``): ``delay_ps`` (after the model), its error, the
model's ``clock_offset_ps`` at ``clock_t_ps`` (alice's stream time: the acquisition's
centre) and ``clock_drift``, and their sum ``total_delay_ps``: the peak of raw stream
differences ``t_b - t_a`` at that instant, i.e. the stream offset plus the path-delay
difference. Its error holds the clocks' wander over the acquisition
(:func:`qhil.numerics.timing.interval_wander_error_ps`: the pairs measure the offset
averaged over it; a linear model misses the true one by ~60 ps over 1 s at 1.2
ppb/sqrt(s), most at the edges: quoted at the first tag the emulated bench was 160-200 ps
off, hence the centre). The path-delay difference alone needs a two-way model:
``path_delay_difference_ps`` is ``delay_ps`` then, None after a one-way model.

Estimate (as :mod:`qhil.calibration.delays`): the fullest bin of a coarse histogram of the
differences within ``+-search_ps``, then the mean of the differences within ``window_ps`` of
it less the flat background's share (accidentals, estimated from the rest of the search
range), re-centred until it moves by less than 1 ps. Its error is the signal's spread over
the square root of its count, with the background's share of the variance. The TDC1's 2 ns
ticks make one difference a +-2 ns triangle; the mean of many is good to picoseconds when
the clocks' drift dithers the ticks' phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from qhil.calibration.errors import CalibrationError
from qhil.numerics.timing import find_coincidences, interval_wander_error_ps

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Fewest background-corrected pairs in the peak for a delay.
MIN_PEAK_PAIRS = 20
#: Bins of the recorded histogram.
HISTOGRAM_BINS = 400


@dataclass(frozen=True)
class DelayPeak:
    """The peak of ``t_b - t_a``: its centre (the delay) and spread, with the counts behind it."""

    delay_ps: float
    delay_std_ps: float
    sigma_ps: float  # the signal's standard deviation (jitter, ticks)
    peak_pairs: float  # background-corrected pairs within the window
    window_pairs: int
    background_per_ps: float  # flat background density of the differences, pairs / ps
    window_ps: float
    search_ps: float
    pairs: int  # every difference within +-search_ps
    significance: float  # peak pairs over the background's Poisson sigma in the window


def fit_delay_peak(
    differences_ps: npt.ArrayLike,
    *,
    search_ps: float,
    window_ps: float = 6000.0,
    coarse_bin_ps: float = 1000.0,
    centre_ps: float = 0.0,
) -> DelayPeak:
    """The peak of the time differences (ps) within ``centre_ps +- search_ps``.

    Raises ValueError when there is no peak of ``MIN_PEAK_PAIRS`` pairs above the background.
    """
    d = np.asarray(differences_ps, dtype=np.float64)
    lo, hi = centre_ps - search_ps, centre_ps + search_ps
    d = d[(d >= lo) & (d < hi)]
    span = hi - lo
    if window_ps <= 0 or window_ps >= span / 2:
        raise ValueError(f"window_ps {window_ps:g} must be positive and under half the search")
    if d.size == 0:
        raise ValueError(f"no pair differences within {centre_ps:g} +- {search_ps:g} ps")
    edges = np.arange(lo, hi + coarse_bin_ps, coarse_bin_ps)
    hist, edges = np.histogram(d, bins=edges)
    k = int(np.argmax(hist))
    mu = 0.5 * (edges[k] + edges[k + 1])
    half = window_ps / 2.0
    for _ in range(20):
        inside = np.abs(d - mu) < half
        n_in = int(inside.sum())
        # Background from outside the window (flat), scaled to the window's width.
        outside_span = span - window_ps
        bg_density = (d.size - n_in) / outside_span
        bg = bg_density * window_ps
        signal = n_in - bg
        if signal <= 0:
            break
        # The window's mean less the background's share (its mean is the window's centre).
        new = (float(d[inside].sum()) - bg * mu) / signal
        moved = abs(new - mu)
        mu = new
        if moved < 1.0:
            break
    inside = np.abs(d - mu) < half
    n_in = int(inside.sum())
    bg_density = (d.size - n_in) / (span - window_ps)
    bg = bg_density * window_ps
    signal = n_in - bg
    if signal < MIN_PEAK_PAIRS:
        raise ValueError(
            f"no coincidence peak: {signal:.0f} pairs above background in a {window_ps:g} ps "
            f"window (of {d.size} within +-{search_ps:g} ps); need {MIN_PEAK_PAIRS}"
        )
    # Signal variance: the window's second moment less the flat background's (w^2 / 12).
    second = float(np.sum((d[inside] - mu) ** 2))
    var_signal = max((second - bg * window_ps**2 / 12.0) / signal, 1.0)
    # Error of the background-corrected mean: signal scatter plus the background's (delta method).
    var_mean = (signal * var_signal + bg * window_ps**2 / 12.0) / signal**2
    return DelayPeak(
        delay_ps=float(mu),
        delay_std_ps=math.sqrt(var_mean),
        sigma_ps=math.sqrt(var_signal),
        peak_pairs=float(signal),
        window_pairs=n_in,
        background_per_ps=float(bg_density),
        window_ps=float(window_ps),
        search_ps=float(search_ps),
        pairs=int(d.size),
        significance=float(signal / math.sqrt(max(bg, 1.0))),
    )


def pair_differences(
    t_a: npt.ArrayLike, t_b: npt.ArrayLike, *, search_ps: float, centre_ps: float = 0.0
) -> F64:
    """Every ``t_b - t_a`` within ``centre_ps +- search_ps`` (sorted int64 ps streams, on one
    timebase)."""
    w = 2 * math.ceil(search_ps)
    a = np.asarray(t_a, dtype=np.int64)
    b = np.asarray(t_b, dtype=np.int64)
    pairs = find_coincidences(a, b, w, delay_ps=round(centre_ps))
    return pairs.time_differences(a, b).astype(np.float64)


#: Run-record row per histogram bin of the differences.
HISTOGRAM_DTYPE = np.dtype([("centre_ps", np.float64), ("pairs", np.int64), ("model", np.float64)])


@dataclass(frozen=True)
class CoincidenceDelayCalibration:
    """The coincidence delay after a clock model, and what it is made of."""

    peak: DelayPeak
    clock_offset_ps: float  # the model's offset at clock_t_ps
    clock_t_ps: float  # alice's stream time the total is quoted at
    clock_drift: float
    clock_method: str  # "one-way" / "two-way"
    clock_run_id: str | None
    integration_s: float
    singles_a_hz: float
    singles_b_hz: float
    histogram: npt.NDArray[np.void]
    wander_error_ps: float = 0.0  # the clocks' wander over the acquisition, 1 sigma

    @property
    def total_delay_std_ps(self) -> float:
        return math.hypot(self.peak.delay_std_ps, self.wander_error_ps)

    @property
    def delay_ps(self) -> float:
        return self.peak.delay_ps

    @property
    def total_delay_ps(self) -> float:
        return self.clock_offset_ps + self.peak.delay_ps

    def to_results(self) -> dict[str, Any]:
        p = self.peak
        return {
            "delay_ps": p.delay_ps,
            "delay_std_ps": p.delay_std_ps,
            "sigma_ps": p.sigma_ps,
            "peak_pairs": p.peak_pairs,
            "window_pairs": p.window_pairs,
            "background_per_ps": p.background_per_ps,
            "significance": p.significance,
            "window_ps": p.window_ps,
            "search_ps": p.search_ps,
            "clock_offset_ps": self.clock_offset_ps,
            "clock_t_ps": self.clock_t_ps,
            "clock_drift": self.clock_drift,
            "clock_method": self.clock_method,
            "clock_run_id": self.clock_run_id,
            "total_delay_ps": self.total_delay_ps,
            "total_delay_std_ps": self.total_delay_std_ps,
            "wander_error_ps": self.wander_error_ps,
            "path_delay_difference_ps": p.delay_ps if self.clock_method == "two-way" else None,
            "integration_s": self.integration_s,
            "singles_alice_hz": self.singles_a_hz,
            "singles_bob_hz": self.singles_b_hz,
            # Accidentals expected in the window from the singles (S_A S_B w), for comparison
            # with the measured flat background.
            "expected_background_per_ps": self.singles_a_hz
            * self.singles_b_hz
            * self.integration_s
            * 1e-12,
        }


def histogram_rows(differences_ps: npt.ArrayLike, peak: DelayPeak, centre_ps: float) -> Any:
    """The differences' histogram over the search range with the fitted peak drawn as a
    Gaussian (centre, spread, pairs) on the flat background, one row per bin (for the plot:
    the estimate itself is the background-corrected mean, not this curve)."""
    d = np.asarray(differences_ps, dtype=np.float64)
    edges = np.linspace(centre_ps - peak.search_ps, centre_ps + peak.search_ps, HISTOGRAM_BINS + 1)
    counts, _ = np.histogram(d, bins=edges)
    width = float(edges[1] - edges[0])
    mid = 0.5 * (edges[:-1] + edges[1:])
    # The Gaussian's share of each bin (its integral: a peak narrower than a bin too).
    share = np.diff(ndtr((edges - peak.delay_ps) / peak.sigma_ps))
    out = np.zeros(mid.size, dtype=HISTOGRAM_DTYPE)
    out["centre_ps"], out["pairs"] = mid, counts
    out["model"] = peak.background_per_ps * width + peak.peak_pairs * share
    return out


def calibrate_from_streams(
    t_a: npt.ArrayLike,
    t_b_mapped: npt.ArrayLike,
    *,
    integration_s: float,
    clock_offset_ps: float,
    clock_drift: float,
    clock_method: str,
    clock_t_ps: float = 0.0,
    clock_run_id: str | None = None,
    search_ps: float = 50_000.0,
    window_ps: float = 6000.0,
    centre_ps: float = 0.0,
    wander_ppb_per_sqrt_s: float = 0.0,
) -> CoincidenceDelayCalibration:
    """The delay from alice's stream and bob's mapped onto her timebase (sorted int64 ps);
    ``clock_offset_ps`` is the model's offset at ``clock_t_ps`` (the acquisition's centre).

    A missing peak is a :class:`CalibrationError` saying what was seen.
    """
    a = np.asarray(t_a, dtype=np.int64)
    b = np.asarray(t_b_mapped, dtype=np.int64)
    diffs = pair_differences(a, b, search_ps=search_ps, centre_ps=centre_ps)
    try:
        peak = fit_delay_peak(diffs, search_ps=search_ps, window_ps=window_ps, centre_ps=centre_ps)
    except ValueError as exc:
        raise CalibrationError(
            f"coincidence delay: {exc}; singles alice {a.size / integration_s:.4g}/s, "
            f"bob {b.size / integration_s:.4g}/s over {integration_s:g} s. Check the pair "
            "source, the clock model (run qhil run clock-sync first) and search_ps"
        ) from None
    return CoincidenceDelayCalibration(
        peak=peak,
        clock_offset_ps=float(clock_offset_ps),
        clock_t_ps=float(clock_t_ps),
        clock_drift=float(clock_drift),
        clock_method=clock_method,
        clock_run_id=clock_run_id,
        integration_s=float(integration_s),
        singles_a_hz=a.size / integration_s,
        singles_b_hz=b.size / integration_s,
        histogram=histogram_rows(diffs, peak, centre_ps),
        wander_error_ps=(
            interval_wander_error_ps(wander_ppb_per_sqrt_s, integration_s)
            if wander_ppb_per_sqrt_s > 0
            else 0.0
        ),
    )
