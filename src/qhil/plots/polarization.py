"""``calibration.polarization``: the search, step by step (error fractions and voltages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import Arrays, empty, note, parameter_number, plot, result_number
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@plot(
    "search",
    kinds=("calibration.polarization",),
    needs=("steps",),
    about="e_Z and e_X at each evaluation of the search, and the controller's voltages",
)
def draw_search(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    steps = arrays["steps"]
    top, bottom = fig.subplots(2, 1, sharex=True)
    s = steps["step"]
    floor = 1e-4  # an error fraction of 0 still shows on the log axis
    top.plot(s, np.maximum(steps["e_z"], floor), "o-", markersize=3, label="e_Z")
    top.plot(s, np.maximum(steps["e_x"], floor), "s-", markersize=3, label="e_X")
    target = parameter_number(record, "target_error")
    if target is not None:
        top.axhline(target, color="C3", linestyle="--", linewidth=1, label="target")
    top.set_yscale("log")
    top.set_ylabel("error fraction")
    top.legend(fontsize=8)
    # Phase changes (learning scan, search, verification) as vertical lines.
    phase = steps["phase"]
    for at in s[1:][np.diff(phase) != 0]:
        top.axvline(at - 0.5, color="grey", linewidth=0.6, linestyle=":")
        bottom.axvline(at - 0.5, color="grey", linewidth=0.6, linestyle=":")
    channels = [n for n in steps.dtype.names or () if n.startswith("v") and n.endswith("_mv")]
    for name in channels:
        bottom.plot(s, steps[name], ".-", label=name.removesuffix("_mv"))
    bottom.set_ylabel("controller voltage (mV)")
    bottom.set_xlabel("evaluation (dotted: next phase of the search)")
    bottom.legend(fontsize=8, ncol=len(channels) or 1)


# Phase.SCAN of qhil.calibration.polarization: one channel swept over its range.
SCAN = 1


@plot(
    "scan_fit",
    kinds=("calibration.polarization",),
    needs=("steps",),
    about="the learning scan: e_Z, e_X against the swept channel's voltage with the "
    "sinusoid of the half-wave voltage found, and the fit's residuals",
    size_in=(10.0, 7.0),
)
def draw_scan_fit(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    """Refit from the recorded scan (the record holds the points and the half-wave
    voltage, not the fit's coefficients); a least-squares sinusoid at the known rate."""
    from qhil.calibration.trig_fit import fit_sinusoid

    steps = arrays["steps"]
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    scan = steps[steps["phase"] == SCAN]
    channels = [n for n in steps.dtype.names or () if n.startswith("v") and n.endswith("_mv")]
    if scan.size < 3 or not channels:
        empty(top, "no voltage scan in this run (half-wave voltages known beforehand)")
        empty(bottom, "")
        return
    swept = max(channels, key=lambda c: float(np.ptp(scan[c])))
    v = scan[swept].astype(float)
    half_wave = result_number(record, f"half_wave_{swept.removesuffix('_mv')}_mv")
    half_wave = half_wave or result_number(record, "half_wave_voltage_mv")
    fine = np.linspace(v.min(), v.max(), 400)
    for i, (name, label) in enumerate((("e_z", "e_Z"), ("e_x", "e_X"))):
        y = scan[name].astype(float)
        top.plot(v, y, "os"[i], color=f"C{i}", label=f"{label} measured")
        if half_wave:
            fit = fit_sinusoid(v, y, np.pi / half_wave)
            top.plot(fine, fit(fine), "-", color=f"C{i}", linewidth=1, label=f"{label} fit")
            bottom.plot(v, y - fit(v), "os"[i], color=f"C{i}")
    top.set_ylabel("error fraction")
    top.legend(fontsize=8)
    if half_wave:
        note(top, f"{swept.removesuffix('_mv')} swept; half-wave voltage {half_wave:.1f} mV")
    bottom.axhline(0.0, color="grey", linewidth=0.6)
    bottom.set_ylabel("residual")
    bottom.set_xlabel(f"{swept.removesuffix('_mv')} (mV)")
