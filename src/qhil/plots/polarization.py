"""``calibration.polarization``: the search, step by step (error fractions and voltages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import Arrays, parameter_number, plot
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
