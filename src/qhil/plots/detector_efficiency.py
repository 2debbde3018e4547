"""``calibration.detector_efficiency``: relative efficiencies with errors, and each gate's
count rates (light and background)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import DETECTORS, Arrays, empty, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@plot(
    "efficiencies",
    kinds=("calibration.detector_efficiency",),
    needs=("gates",),
    optional=("relative", "relative_std"),
    about="relative efficiency of each detector (1 sigma), and count rates per gate",
)
def draw_efficiencies(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    gates = arrays["gates"]
    left, right = fig.subplots(1, 2)
    rel = arrays.get("relative")
    if rel is not None and rel.size:
        std_rows = arrays.get("relative_std")
        std = std_rows[-1] if std_rows is not None and std_rows.size else None
        x = np.arange(rel.shape[-1])
        left.bar(x, rel[-1], yerr=std, capsize=5, color="C0", alpha=0.7)
        left.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        left.set_xticks(x, list(DETECTORS[: x.size]))
        left.set_ylabel("relative efficiency (mean = 1), 1 sigma")
    else:
        empty(left, "no efficiencies recorded (the run stopped before)")
    duration = np.where(gates["integration_s"] > 0, gates["integration_s"], np.nan)
    light = gates["light"] == 1
    for i, d in enumerate(DETECTORS):
        rate = gates[f"counts_{d.lower()}"] / duration
        right.plot(gates["gate"][light], rate[light], "o-", color=f"C{i}", label=f"{d} light")
        right.plot(gates["gate"][~light], rate[~light], "x", color=f"C{i}", label=f"{d} dark")
    right.set_yscale("symlog", linthresh=1.0)
    right.set_xlabel("gate")
    right.set_ylabel("count rate (1/s)")
    right.legend(fontsize=7, ncol=2)
