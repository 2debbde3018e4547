"""Relative delays of Bob's detector channels, from the tagger's own timestamps.

Alice sends a sparse pulse train: one bright pulse (a random BB84 state, so all four
detectors see light) every ``period_pulses`` pulses, vacuum in between. Bob's clicks
are folded onto that train's grid (:func:`qhil.numerics.timing.estimate_pulse_grid`
finds its period on Bob's clock, drift included, and its phase); each channel's
clicks then sit in a narrow peak at that channel's delay. Per channel: the peak bin
of a coarse histogram, then the mean of the clicks within ``window_ps`` of it, less
the flat background's share (dark counts, background light; estimated from outside
the window). Delays are relative to the ``reference`` detector and unambiguous
within +- half the train's period (``period_pulses / rep_rate_hz``).

The tagger's bin limits a single click (2 ns on a TDC1); the mean of many clicks is
finer when the bins do not fall at the same phase of every pulse (clock drift
between the nodes dithers them). ``apply=True`` first zeroes the tagger's input
delays of the four channels, measures, then sets each channel's input delay to
minus its relative delay, so that all four line up with the reference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qhil.calibration.errors import CalibrationError
from qhil.calibration.reference import DETECTORS, ReferenceSource, check_channel_map
from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.numerics.timing import AlignmentError, TimingInputError
from qhil.numerics.timing.pulse_alignment import PulseGrid, estimate_pulse_grid

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Fewest clicks a channel needs in its peak for a delay.
MIN_PEAK_CLICKS = 10

#: Run-record row per detector.
CHANNEL_DTYPE = np.dtype(
    [
        ("detector", np.int64),  # 0..3 = H, V, D, A
        ("channel", np.int64),
        ("clicks", np.int64),
        ("peak_clicks", np.float64),  # background-corrected clicks in the window
        ("peak_ps", np.float64),  # position on the train's grid
        ("delay_ps", np.float64),  # relative to the reference detector
        ("delay_std_ps", np.float64),
        ("spread_ps", np.float64),  # robust spread of the peak (jitter and binning)
    ]
)


@dataclass(frozen=True)
class DelayCalibration:
    """Delays of the H, V, D and A channels relative to the reference detector."""

    reference: str
    delays_ps: F64
    delays_std_ps: F64
    peak_ps: F64
    spread_ps: F64
    clicks: I64
    peak_clicks: F64
    period_ps: float  # the sparse train's period on Bob's clock
    drift: float  # Bob's clock rate relative to Alice's, minus one
    rayleigh_z: float
    applied_input_delays_ps: dict[int, int] | None  # channel -> input delay set (apply=True)
    channel_map: dict[str, int]

    def rows(self) -> npt.NDArray[np.void]:
        out = np.zeros(4, dtype=CHANNEL_DTYPE)
        out["detector"] = np.arange(4)
        out["channel"] = [self.channel_map[d] for d in DETECTORS]
        out["clicks"], out["peak_clicks"] = self.clicks, self.peak_clicks
        out["peak_ps"], out["delay_ps"] = self.peak_ps, self.delays_ps
        out["delay_std_ps"], out["spread_ps"] = self.delays_std_ps, self.spread_ps
        return out

    def to_results(self) -> dict[str, float | int | str | bool]:
        out: dict[str, float | int | str | bool] = {
            "reference": self.reference,
            "period_ps": self.period_ps,
            "drift_ppm": self.drift * 1e6,
            "rayleigh_z": self.rayleigh_z,
            "applied": self.applied_input_delays_ps is not None,
        }
        for i, d in enumerate(DETECTORS):
            k = d.lower()
            out[f"delay_{k}_ps"] = float(self.delays_ps[i])
            out[f"delay_{k}_std_ps"] = float(self.delays_std_ps[i])
            out[f"spread_{k}_ps"] = float(self.spread_ps[i])
            out[f"clicks_{k}"] = int(self.clicks[i])
        return out


def _wrap(x: F64, period: float) -> F64:
    return (x + period / 2) % period - period / 2


@dataclass(frozen=True)
class PeakEstimate:
    position_ps: float
    std_ps: float
    spread_ps: float
    clicks: float  # background-corrected clicks in the window


def peak_position(
    residuals_ps: F64, period_ps: float, window_ps: float, coarse_bin_ps: float
) -> PeakEstimate:
    """Where one channel's clicks cluster on a periodic grid (residuals in one period).

    Coarse: the fullest ``coarse_bin_ps`` bin. Fine: the mean within ``window_ps``
    of it (cyclically), corrected for a flat background estimated outside.
    """
    r = np.asarray(residuals_ps, dtype=np.float64)
    if r.size == 0:
        raise CalibrationError("no clicks on a channel")
    n_bins = max(1, int(period_ps // coarse_bin_ps))
    width = period_ps / n_bins
    idx = np.floor((r + period_ps / 2) / width).astype(np.int64).clip(0, n_bins - 1)
    hist = np.bincount(idx, minlength=n_bins)
    # Sum of three neighbouring bins (cyclic): a peak split across a bin edge still wins.
    smooth = hist + np.roll(hist, 1) + np.roll(hist, -1)
    center = -period_ps / 2 + (int(np.argmax(smooth)) + 0.5) * width
    for _ in range(2):  # re-centre once on the window's mean
        d = _wrap(r - center, period_ps)
        inside = np.abs(d) <= window_ps
        n_in = int(inside.sum())
        n_out = r.size - n_in
        # Flat background: its share of the window, centred (mean offset 0).
        outside_span = period_ps - 2 * window_ps
        n_bg = n_out * (2 * window_ps / outside_span) if outside_span > 0 else 0.0
        signal = n_in - n_bg
        if signal < MIN_PEAK_CLICKS:
            raise CalibrationError(
                f"only {signal:.0f} clicks above background in the peak "
                f"(of {r.size}): acquire longer or raise the intensity"
            )
        shift = float(d[inside].sum()) / signal
        center = center + shift
    d = _wrap(r - center, period_ps)
    inside = np.abs(d) <= window_ps
    spread = float(np.std(d[inside]))
    std = spread / math.sqrt(signal)
    return PeakEstimate(float(_wrap(np.array([center]), period_ps)[0]), std, spread, signal)


def _peaks(
    resid: F64, ch: I64, channels: list[int], period_ps: float, window_ps: float, bin_ps: float
) -> list[PeakEstimate]:
    out = []
    for d, c in zip(DETECTORS, channels, strict=True):
        try:
            out.append(peak_position(resid[ch == c], period_ps, window_ps, bin_ps))
        except CalibrationError as exc:
            raise CalibrationError(f"detector {d} (channel {c}): {exc}") from None
    return out


async def calibrate_delays(
    generator: PatternGenerator,
    tagger: TimeTagger,
    *,
    channel_map: Mapping[str, int],
    rep_rate_hz: float,
    vacuum_intensity_index: int,
    intensity_index: int = 0,
    reference: str = "H",
    period_pulses: int = 256,
    bright_pulses: int = 64,
    integration_s: float = 0.1,
    settle_s: float = 1e-3,
    window_ps: float = 5000.0,
    coarse_bin_ps: float = 1000.0,
    max_drift: float = 1e-4,
    apply: bool = False,
    rng: np.random.Generator | None = None,
) -> DelayCalibration:
    """Delays of Bob's H, V, D, A channels (``channel_map``) relative to ``reference``.

    ``vacuum_intensity_index`` is the pattern level with mean photon number zero (the
    dark pulses of the sparse train), ``intensity_index`` the level of its bright
    pulses. ``window_ps`` must cover a peak (jitter and the tagger's bin, e.g. 2 ns).
    """
    cm = check_channel_map(channel_map)
    if reference not in DETECTORS:
        raise ValueError(f"reference must be one of H, V, D, A, got {reference!r}")
    if period_pulses < 2 or bright_pulses < 4:
        raise ValueError(
            f"need period_pulses >= 2 and bright_pulses >= 4, got {period_pulses}, {bright_pulses}"
        )
    if not 8 <= period_pulses * bright_pulses <= 1 << 24:
        raise ValueError("period_pulses * bright_pulses must be 8..16 Mi symbols")
    if not 0 <= vacuum_intensity_index <= 7 or vacuum_intensity_index == intensity_index:
        raise ValueError(
            f"vacuum_intensity_index must be 0..7 and differ from intensity_index "
            f"({intensity_index}), got {vacuum_intensity_index}"
        )
    period_ps = period_pulses * 1e12 / rep_rate_hz
    if not 0 < 2 * window_ps < period_ps:
        raise ValueError(f"window_ps must be in (0, period/2 = {period_ps / 2:g} ps)")
    source = ReferenceSource(
        generator,
        tagger,
        cm,
        rep_rate_hz,
        pattern_length=8,
        intensity_index=intensity_index,
        rng=rng,
    )

    def train() -> npt.NDArray[np.uint8]:
        # Vacuum everywhere but one bright pulse per period, states in a fresh random order
        # with equal shares (every detector sees light whatever the fibre does).
        pattern = np.full(period_pulses * bright_pulses, vacuum_intensity_index << 2, np.uint8)
        states = np.resize(np.arange(4, dtype=np.uint8), bright_pulses)
        pattern[::period_pulses] = source.rng.permutation(states) | (intensity_index << 2)
        return pattern

    channels = [cm[d] for d in DETECTORS]
    if apply:
        for c in channels:
            await tagger.set_input_delay_ps(c, 0)
    await generator.set_output(True)
    try:
        await source.load_fresh(train, "sparse pulse train")
        await source.settle(settle_s)
        block = await tagger.acquire(integration_s)
    finally:
        try:
            await generator.set_output(False)
        except Exception as exc:
            log.warning("delays: could not switch the pattern generator off: %s", exc)
    if block.lost:
        raise CalibrationError(f"the tagger lost {block.lost} tags: acquire for less time")
    ts = np.asarray(block.timestamps_ps, dtype=np.int64)
    ch = np.asarray(block.channels, dtype=np.int64)
    keep = np.isin(ch, channels)
    ts, ch = ts[keep], ch[keep]
    order = np.argsort(ts, kind="stable")
    ts, ch = ts[order], ch[order]
    try:
        grid: PulseGrid = estimate_pulse_grid(ts, period_ps, max_drift=max_drift)
    except (AlignmentError, TimingInputError) as exc:
        raise CalibrationError(
            f"the clicks show no pulse train at {period_ps:g} ps: {exc}"
        ) from exc
    resid = grid.residuals_ps(ts)
    x = (ts - ts[0]).astype(np.float64)
    rate_correction = 0.0
    # The grid's period can be off by a few tenths of a ppm: over the acquisition that
    # smears every peak (0.2 ppm x 0.1 s = 20 ns). Fit the residual slope from the clicks
    # near their channel's peak, remove it, and narrow the window step by step.
    widest = min(grid.period_ps / 8, 64 * window_ps)
    for w in (widest, max(window_ps, widest / 8), 2 * window_ps, window_ps):
        w = min(w, widest)
        peaks = _peaks(resid, ch, channels, grid.period_ps, w, coarse_bin_ps)
        offset = np.zeros(resid.size)
        for c, p in zip(channels, peaks, strict=True):
            offset[ch == c] = p.position_ps
        d = _wrap(resid - offset, grid.period_ps)
        inside = np.abs(d) <= w
        if inside.sum() < 3:
            break
        slope = float(np.polyfit(x[inside], d[inside], 1)[0])
        resid = _wrap(resid - slope * x, grid.period_ps)
        rate_correction += slope  # residuals growing with time: the true period is longer
    peaks = _peaks(resid, ch, channels, grid.period_ps, window_ps, coarse_bin_ps)
    pos = np.array([p.position_ps for p in peaks])
    ref = DETECTORS.index(reference)
    delays = _wrap(pos - pos[ref], grid.period_ps)
    std = np.array([p.std_ps for p in peaks])
    delays_std = np.sqrt(std**2 + std[ref] ** 2)
    delays_std[ref] = 0.0
    applied: dict[int, int] | None = None
    if apply:
        applied = {c: -round(float(x)) for c, x in zip(channels, delays, strict=True)}
        for c, x in applied.items():
            await tagger.set_input_delay_ps(c, x)
    return DelayCalibration(
        reference=reference,
        delays_ps=delays,
        delays_std_ps=delays_std,
        peak_ps=pos,
        spread_ps=np.array([p.spread_ps for p in peaks]),
        clicks=np.array([int(np.sum(ch == c)) for c in channels], dtype=np.int64),
        peak_clicks=np.array([p.clicks for p in peaks]),
        period_ps=float(grid.period_ps * (1 + rate_correction)),
        drift=float((1 + grid.drift) * (1 + rate_correction) - 1),
        rayleigh_z=float(grid.rayleigh_z),
        applied_input_delays_ps=applied,
        channel_map=cm,
    )
