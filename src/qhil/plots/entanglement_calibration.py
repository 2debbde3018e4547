"""``calibration.mount_zero``: the H/V correlation fringe against the scanned mount's angle,
with the fit and its normalised residuals; ``calibration.coincidence_delay``: the histogram
of the pairs' time differences with the fitted peak on its background."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import Arrays, plot, result_number
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@plot(
    "fringe",
    kinds=("calibration.mount_zero",),
    needs=("points",),
    about="H/V correlation against the scanned mount's angle (1 sigma), the fitted fringe "
    "and its zero, the D/A correlation as a check, and the normalised residuals",
)
def draw_fringe(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["points"]
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = rows["position_deg"]
    top.errorbar(
        x,
        rows["correlation"],
        yerr=rows["correlation_std"],
        fmt="o",
        capsize=4,
        label="measured (HH + VV - HV - VH) / N",
    )
    zero = result_number(record, "zero_deg")
    amp = result_number(record, "visibility")
    offset = result_number(record, "correlation_offset") or 0.0
    if zero is not None and amp is not None:
        lo = float(np.min(x)) if x.size else 0.0
        grid = np.linspace(lo, lo + 90.0, 361)
        fit = offset + amp * np.cos(4.0 * np.radians(grid - zero))
        std = result_number(record, "zero_std_deg") or 0.0
        top.plot(
            grid,
            fit,
            "-",
            color="C1",
            label=f"fit: V = {amp:.3f}, zero {zero:.2f} +- {std:.2f} deg",
        )
        top.axvline(zero, color="C1", linestyle="--", linewidth=0.8)
    if "da_correlation" in (rows.dtype.names or ()) and np.any(np.isfinite(rows["da_model"])):
        da_zero = result_number(record, "da_zero_deg")
        diff = result_number(record, "hv_da_difference_sigma")
        top.errorbar(
            x,
            rows["da_correlation"],
            yerr=rows["da_correlation_std"],
            fmt="s",
            mfc="none",
            color="C2",
            capsize=3,
            label=f"D/A check: zero {da_zero:.2f} deg ({diff:.1f} sigma from H/V)"
            if da_zero is not None and diff is not None
            else "D/A check",
        )
    truth = result_number(record, "truth_plate_zero_deg")
    if truth is not None:
        top.axvline(
            truth,
            color="grey",
            linestyle=":",
            linewidth=1.0,
            label=f"emulator: plates parallel at {truth:.2f} deg",
        )
    node, mount = record.results.get("node", "?"), record.results.get("mount", "?")
    ref = record.results.get("reference_node", "?")
    ref_angle = result_number(record, "reference_angle_deg")
    top.set_ylabel("H/V correlation E")
    top.set_ylim(-1.05, 1.05)
    top.set_title(f"{node}.{mount} scanned, {ref}'s mount at {ref_angle} deg", fontsize=9)
    top.legend(fontsize=7, loc="lower right")
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = (rows["correlation"] - rows["model"]) / rows["correlation_std"]
    bottom.axhline(0.0, color="grey", linewidth=0.8)
    bottom.plot(x, resid, "o", color="C0", label="H/V")
    bottom.set_xlabel(f"{node}.{mount} angle (deg, as the mount reads it)")
    bottom.set_ylabel("residual (sigma)")


@plot(
    "delay_histogram",
    kinds=("calibration.coincidence_delay",),
    needs=("histogram",),
    about="the pairs' time differences after the clock model: whole search range (log) and "
    "the peak with the fitted curve on the accidentals' background",
    size_in=(11.0, 5.0),
)
def draw_delay_histogram(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["histogram"]
    left, right = fig.subplots(1, 2)
    x_ns = rows["centre_ps"] / 1e3
    width = float(x_ns[1] - x_ns[0]) if x_ns.size > 1 else 1.0
    for ax in (left, right):
        ax.bar(x_ns, rows["pairs"], width=width, color="C0", alpha=0.6, label="pairs")
        ax.plot(x_ns, rows["model"], "-", color="C1", label="fitted peak + background")
        ax.set_xlabel("t_b' - t_a (ns, after the clock model)")
    left.set_yscale("log")
    left.set_ylabel("pairs per bin")
    left.legend(fontsize=7)
    delay = result_number(record, "delay_ps") or 0.0
    sigma = result_number(record, "sigma_ps") or 1000.0
    half = max(5.0 * sigma, 3.0 * width * 1e3) / 1e3
    right.set_xlim(delay / 1e3 - half, delay / 1e3 + half)
    right.axvline(delay / 1e3, color="C1", linestyle="--", linewidth=0.8)
    std = result_number(record, "delay_std_ps") or 0.0
    total = result_number(record, "total_delay_ps")
    total_std = result_number(record, "total_delay_std_ps") or 0.0
    title = f"delay {delay:.1f} +- {std:.1f} ps after the model"
    if total is not None:
        title += f"; total {total / 1e6:.6f} us +- {total_std:.0f} ps"
    right.set_title(title, fontsize=8)
