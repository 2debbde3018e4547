"""``clock_sync`` runs: the residual offset over time (with loss of lock and re-acquisition
marked) and its time deviation (TDEV) against averaging time.

From the ``track/*`` arrays, one row per tracking interval (the experiment's README):
the *measured offsets minus a straight line* (offset and frequency) weighted-fitted over
the run's locked intervals, with their 1-sigma errors: the per-interval scatter and the
clocks' wander against a constant frequency. (``measured - tracked`` is not drawn: the
loop follows each measurement, so it showed a few ps against +-60 ps error bars.) On an
emulated bench, whose record carries ``<prefix>/truth_offset_ps`` (what that direction
measures), the *error against truth* is ``offset_tracked_ps - truth``. TDEV is computed
from each sampled every ``tracking_interval_s`` (NIST SP 1065,
:mod:`qhil.numerics.timing.stability`; the line changes nothing there, TDEV ignores
offset and frequency); intervals out of lock are gaps, not zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing.stability import tdev
from qhil.plots.core import Arrays, empty, note, parameter_number, plot, result_number
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

F64 = npt.NDArray[np.float64]

# Columns of a direction's arrays, ``<prefix>/<column>``: ``track/`` (one-way, or the
# a_to_b direction of a two-way run) and ``track_b_to_a/`` (two-way).
DIRECTIONS = (("track", "", "A to B"), ("track_b_to_a", "_b_to_a", "B to A"))
T = "t_s"
TRACKED = "offset_tracked_ps"
MEASURED = "offset_measured_ps"
STDERR = "stderr_ps"
COUNTS = "counts"
SIGNIFICANCE = "significance"
LOCKED = "locked"
FREQUENCY = "frequency_ppb"
TRUTH = "truth_offset_ps"
_OPTIONAL = (MEASURED, STDERR, COUNTS, SIGNIFICANCE, LOCKED, FREQUENCY, TRUTH)


def columns(arrays: Arrays, prefix: str) -> dict[str, npt.NDArray[Any]]:
    """One direction's arrays by column name, trimmed to the rows all of them have
    (a live run may lag by a row; the truth is added at the end of a run)."""
    mine = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
    n = min(a.shape[0] for a in mine.values())
    return {k: np.asarray(v[:n]) for k, v in mine.items()}


def detrend(t_s: F64, offset_ps: F64, stderr_ps: F64 | None, locked: npt.NDArray[np.bool_]) -> F64:
    """``offset_ps`` minus the straight line weighted-fitted (1/stderr^2) over the locked,
    finite rows; NaN everywhere when fewer than three such rows (no line to speak of)."""
    use = locked & np.isfinite(offset_ps)
    if stderr_ps is not None:
        use &= np.isfinite(stderr_ps) & (stderr_ps > 0)
    if int(use.sum()) < 3:
        return np.full(offset_ps.shape, np.nan)
    t0 = float(t_s[use].mean())  # centred: the ps offsets are ~1e12, keep the fit exact
    w = None if stderr_ps is None else 1.0 / stderr_ps[use]
    slope, icept = np.polyfit(t_s[use] - t0, offset_ps[use] - offset_ps[use][0], 1, w=w)
    return np.asarray(offset_ps - offset_ps[use][0] - (icept + slope * (t_s - t0)), dtype=float)


@dataclass(frozen=True)
class Track:
    """The tracking series of a run, trimmed to the rows every array has."""

    t_s: F64
    locked: npt.NDArray[np.bool_]
    detrended: F64 | None  # measured - the line fitted over the run, ps
    truth_error: F64 | None  # tracked - truth, ps
    stderr: F64 | None
    tau0_s: float

    @classmethod
    def of(cls, record: RunRecord, arrays: Arrays, prefix: str = "track") -> Track:
        col = columns(arrays, prefix)
        n = col[T].size
        t = col[T].astype(float)
        tracked = col[TRACKED].astype(float)
        locked = col[LOCKED].astype(bool) if LOCKED in col else np.ones(n, dtype=bool)
        truth = tracked - col[TRUTH] if TRUTH in col else None
        tau0 = parameter_number(record, "tracking_interval_s")
        if not tau0 or tau0 <= 0:
            steps = np.diff(t)
            tau0 = float(np.median(steps)) if steps.size else 1.0
        stderr = col[STDERR].astype(float) if STDERR in col else None
        detrended = (
            detrend(t, col[MEASURED].astype(float), stderr, locked) if MEASURED in col else None
        )
        return cls(t, locked, detrended, truth, stderr, tau0)

    def on_grid(self, values: F64) -> F64:
        """The residual on the regular grid of tracking intervals: missing intervals and
        intervals out of lock are NaN (gaps for TDEV)."""
        if self.t_s.size == 0:
            return np.zeros(0)
        idx = np.rint((self.t_s - self.t_s[0]) / self.tau0_s).astype(np.int64)
        ok = idx >= 0
        grid = np.full(int(idx[ok].max()) + 1 if ok.any() else 0, np.nan)
        keep = ok & self.locked & np.isfinite(values)
        grid[idx[keep]] = values[keep]
        return grid

    def transitions(self) -> tuple[F64, F64]:
        """Times the lock was lost and regained (re-acquired)."""
        change = np.diff(self.locked.astype(np.int8))
        lost = self.t_s[1:][change < 0]
        regained = self.t_s[1:][change > 0]
        return lost, regained


def draw_residual(record: RunRecord, arrays: Arrays, fig: Figure, *, prefix: str = "track") -> None:
    """Residual offset over time with lock marks; frequency; coincidences, significance."""
    tr = Track.of(record, arrays, prefix)
    col = columns(arrays, prefix)
    top, mid, bottom = fig.subplots(3, 1, sharex=True, height_ratios=(3, 2, 2))
    if tr.truth_error is not None:
        top.plot(
            tr.t_s, tr.truth_error, "-", color="C2", linewidth=1.2, label="tracked - emulator truth"
        )
    if tr.detrended is not None and np.isfinite(tr.detrended).any():
        top.errorbar(
            tr.t_s,
            tr.detrended,
            yerr=tr.stderr,
            fmt=".",
            markersize=3,
            color="C0",
            elinewidth=0.5,
            alpha=0.7,
            label="measured - line fitted over the run (1 sigma)",
        )
    elif tr.truth_error is None:
        empty(top, "no measured or true offset recorded: no residual to show")
    top.axhline(0.0, color="grey", linewidth=0.6)
    top.set_ylabel("residual offset (ps)")
    if any(k.startswith("track_b_to_a/") for k in record.array_index):  # two-way: which one
        top.set_title(f"direction {dict((p, d) for p, _, d in DIRECTIONS)[prefix]}")
    _lock_marks((top, mid, bottom), tr)
    top.legend(fontsize=8, loc="upper left")
    summary = _summary(record)
    if summary:
        note(top, summary)

    freq = col.get(FREQUENCY)
    if freq is not None:
        mid.plot(tr.t_s, freq.astype(float), "-", color="C1")
        mid.set_ylabel("tracked frequency\noffset B vs A (ppb)")
    else:
        empty(mid, "no tracked frequency recorded")

    counts = col.get(COUNTS)
    if counts is not None:
        bottom.step(tr.t_s, counts, where="mid", color="C0")
        bottom.set_ylabel("coincidences\nper interval", color="C0")
    sig = col.get(SIGNIFICANCE)
    if sig is not None:
        twin = bottom.twinx()
        twin.plot(tr.t_s, sig.astype(float), ".", color="C3", markersize=3)
        twin.set_ylabel("peak significance\n(sigma)", color="C3")
    bottom.set_xlabel("time on A's timebase (s)")


def _lock_marks(axes: tuple[Any, ...], tr: Track) -> None:
    """Shade the intervals out of lock; lines where it was lost (red) and regained (green)."""
    out = ~tr.locked
    if out.any():
        edges = np.diff(np.concatenate(([0], out.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges > 0), np.flatnonzero(edges < 0) - 1
        half = tr.tau0_s / 2
        for ax in axes:  # one span per loss of lock (a handful), not per interval
            for a, b in zip(starts, stops, strict=True):
                ax.axvspan(tr.t_s[a] - half, tr.t_s[b] + half, color="C3", alpha=0.12, lw=0)
    lost, regained = tr.transitions()
    for ax in axes:
        for t in lost:
            ax.axvline(t, color="C3", linestyle="--", linewidth=0.9)
        for t in regained:
            ax.axvline(t, color="C2", linestyle="--", linewidth=0.9)
    if lost.size or regained.size:
        axes[0].plot([], [], "--", color="C3", label=f"lock lost ({lost.size})")
        axes[0].plot([], [], "--", color="C2", label=f"re-acquired ({regained.size})")


def _summary(record: RunRecord) -> str:
    lines = []
    method = record.results.get("method")
    if isinstance(method, str):
        lines.append(f"method: {method}")
    off, off_err = result_number(record, "offset_s"), result_number(record, "offset_stderr_s")
    if off is not None:
        lines.append(f"offset {off:.12g} s" + (f" +- {off_err:.2g}" if off_err is not None else ""))
    f, f_err = (
        result_number(record, "frequency_offset_ppb"),
        result_number(record, "frequency_offset_stderr_ppb"),
    )
    if f is not None:
        lines.append(f"frequency {f:.6g} ppb" + (f" +- {f_err:.2g}" if f_err is not None else ""))
    err = result_number(record, "offset_error_s")
    if err is not None:
        lines.append(f"error vs emulator truth {err * 1e12:.3g} ps")
    for name in ("coincidences", "lock_losses", "reacquisitions"):
        value = result_number(record, name)
        if value is not None:
            lines.append(f"{name} {value:g}")
    return "\n".join(lines)


def draw_tdev(record: RunRecord, arrays: Arrays, fig: Figure, *, prefix: str = "track") -> None:
    """TDEV of the residuals against averaging time, with the white-PM reference."""
    tr = Track.of(record, arrays, prefix)
    ax = fig.subplots()
    longest = 0.0  # the reference line spans the averaging times drawn
    series = (
        ("tracked - emulator truth", tr.truth_error, "C2", "o"),
        ("measured offset (line removed)", tr.detrended, "C0", "s"),
    )
    for label, values, color, marker in series:
        if values is None:
            continue
        x = tr.on_grid(values) * 1e-12
        if int(np.isfinite(x).sum()) < 3:
            continue
        s = tdev(x, tr.tau0_s)
        ok = s.n_terms > 0
        if not ok.any():
            continue
        ax.errorbar(
            s.tau_s[ok],
            s.dev[ok] * 1e12,
            yerr=s.err[ok] * 1e12,
            fmt=f"{marker}-",
            color=color,
            markersize=4,
            capsize=3,
            label=label,
        )
        longest = max(longest, float(s.tau_s[ok].max()))
    if not longest:
        empty(ax, "too few locked intervals with a residual for a TDEV (need 3)")
        return
    if tr.stderr is not None and np.isfinite(tr.stderr).any():
        # What the measured offsets' TDEV is if the stated per-interval errors are all
        # there is; a single tau is a mark, not an invisible line of one point.
        sigma = float(np.nanmedian(tr.stderr))
        one = longest <= tr.tau0_s * (1 + 1e-9)
        tau = np.array([tr.tau0_s]) if one else np.geomspace(tr.tau0_s, longest, 20)
        ax.plot(
            tau,
            sigma / np.sqrt(tau / tr.tau0_s),
            ":",
            marker="_" if one else None,
            markersize=18,
            markeredgewidth=1.5,
            color="grey",
            label=f"white PM of the per-interval error ({sigma:.3g} ps) / sqrt(m)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"averaging time tau (s); tau0 = {tr.tau0_s:g} s")
    ax.set_ylabel("TDEV (ps), 1 sigma")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)


for _prefix, _suffix, _direction in DIRECTIONS:
    _which = f" ({_direction}, two-way runs)" if _suffix else ""
    plot(
        f"residual{_suffix}",
        kinds=("clock_sync", "clock_sync.*"),
        needs=(f"{_prefix}/{T}", f"{_prefix}/{TRACKED}"),
        optional=tuple(f"{_prefix}/{c}" for c in _OPTIONAL),
        about="residual clock offset over time with loss of lock / re-acquisition marked; "
        f"tracked frequency; coincidences and peak significance per interval{_which}",
        size_in=(11.0, 9.0),
    )(partial(draw_residual, prefix=_prefix))
    plot(
        f"tdev{_suffix}",
        kinds=("clock_sync", "clock_sync.*"),
        needs=(f"{_prefix}/{T}", f"{_prefix}/{TRACKED}"),
        optional=tuple(f"{_prefix}/{c}" for c in _OPTIONAL),
        about=f"time deviation (TDEV) of the residual offset against averaging time{_which}",
        size_in=(8.0, 6.0),
    )(partial(draw_tdev, prefix=_prefix))
