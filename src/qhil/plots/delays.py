"""``calibration.delays``: each channel's delay relative to the reference detector, with
its error, and the spread of its peak."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import DETECTORS, Arrays, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@plot(
    "delays",
    kinds=("calibration.delays",),
    needs=("channels",),
    about="delay of each channel relative to the reference (1 sigma) and its peak's spread",
    size_in=(10.0, 5.0),
)
def draw_delays(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["channels"]
    left, right = fig.subplots(1, 2)
    x = np.arange(rows.size)
    labels = [
        f"{DETECTORS[d] if 0 <= d < len(DETECTORS) else d}\n(ch {c})"
        for d, c in zip(rows["detector"], rows["channel"], strict=True)
    ]
    left.errorbar(x, rows["delay_ps"], yerr=rows["delay_std_ps"], fmt="o", capsize=5)
    left.axhline(0.0, color="grey", linewidth=0.8)
    left.set_xticks(x, labels)
    reference = record.parameters.get("reference")
    left.set_ylabel(f"delay relative to {reference or 'the reference'} (ps), 1 sigma")
    right.bar(x, rows["spread_ps"], color="C1", alpha=0.7)
    right.set_xticks(x, labels)
    right.set_ylabel("peak spread (ps)")
    twin = right.twinx()
    twin.plot(x, rows["peak_clicks"], "k.", label="clicks in peak")
    twin.set_ylabel("clicks in the peak (background-corrected)")
    twin.set_ylim(bottom=0)
