"""``calibration.mean_photon_number``: the power meter's readings per level and the mean
photon numbers with their errors (also drawn for BB84's ``mucal_*`` check)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import Arrays, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def draw_levels(
    record: RunRecord,
    arrays: Arrays,
    fig: Figure,
    *,
    prefix: str = "",
    configured: str | None = None,
) -> None:
    """Readings (dropped ones hollow) and ``mus`` +- ``mus_std``; ``configured`` names a
    parameter holding the levels the run was configured with, drawn for comparison."""
    readings = arrays[f"{prefix}readings"]
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    levels = np.unique(readings["level"])
    for i, level in enumerate(levels):
        mine = readings[readings["level"] == level]
        kept = mine["kept"].astype(bool)
        color = f"C{i % 10}"
        left.plot(
            mine["reading"][kept],
            mine["power_w"][kept] * 1e9,
            "o",
            color=color,
            markersize=4,
            label=f"level {level}",
        )
        left.plot(
            mine["reading"][~kept],
            mine["power_w"][~kept] * 1e9,
            "o",
            color=color,
            markersize=4,
            markerfacecolor="none",
        )
    left.set_yscale("symlog", linthresh=1e-3)
    left.set_xlabel("reading (hollow: dropped)")
    left.set_ylabel("power at the meter (nW)")
    left.legend(fontsize=8)

    mus = arrays.get(f"{prefix}mus")
    if mus is None or mus.size == 0:
        right.text(
            0.5,
            0.5,
            "no mean photon numbers recorded\n(the run stopped before)",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
        return
    mu = np.asarray(mus[-1], dtype=float)
    std_rows = arrays.get(f"{prefix}mus_std")
    std = np.asarray(std_rows[-1], dtype=float) if std_rows is not None and std_rows.size else None
    x = np.arange(mu.size)
    right.errorbar(x, mu, yerr=std, fmt="o", capsize=4, label="measured (1 sigma)")
    wanted = record.parameters.get(configured) if configured else None
    if isinstance(wanted, list) and len(wanted) == mu.size:
        right.plot(x, wanted, "x", color="C3", markersize=9, label="configured")
    if (mu > 0).all():
        right.set_yscale("log")
    right.set_xticks(x, [f"level {i}" for i in x])
    right.set_ylabel("mean photon number per pulse")
    right.legend(fontsize=8)


plot(
    "levels",
    kinds=("calibration.mean_photon_number",),
    needs=("readings",),
    optional=("mus", "mus_std"),
    about="power-meter readings per level, and mean photon numbers with errors",
)(draw_levels)
