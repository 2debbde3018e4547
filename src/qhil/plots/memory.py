"""``calibration.memory``: each node's memory decay against storage time: the efficiency,
the population contrast (T1) and coherence (T2), the Bloch-average fidelity, with the fits
(refitted from the recorded counts, as the run did) and their normalised residuals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.calibration.errors import CalibrationError
from qhil.calibration.memory import MemoryFits, fit_memory
from qhil.plots.core import Arrays, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _series(fits: MemoryFits) -> list[tuple[str, str, np.ndarray, np.ndarray, object]]:
    """(label, quantity, values, 1-sigma errors, fitted curve) of the three fitted decays."""
    e = fits.estimates
    return [
        ("efficiency", "eta", e.efficiency, e.efficiency_std, fits.efficiency),
        ("contrast z_H - z_V (T1)", "dz", e.contrast, e.contrast_std, fits.t1),
        ("coherence (T2)", "c", e.coherence, e.coherence_std, fits.t2),
    ]


def _draw_node(axes: list[Axes], res: list[Axes], node: str, k: int, fits: MemoryFits) -> None:
    e = fits.estimates
    t_ms = e.t_s * 1e3
    fine = np.linspace(0.0, float(e.t_s.max()), 200)
    colour, marker = f"C{k}", "os^vD"[k % 5]
    for (label, _, y, err, fit), ax, rx in zip(_series(fits), axes[:3], res[:3], strict=True):
        tau = getattr(fit, "time_s", float("nan"))
        tau_std = getattr(fit, "time_std_s", float("nan"))
        ax.errorbar(t_ms, y, yerr=err, fmt=marker, color=colour, capsize=3, label=f"{node}")
        ax.plot(
            fine * 1e3,
            fit(fine),  # type: ignore[operator]
            "-",
            color=colour,
            label=f"{node} fit: {tau * 1e3:.3g} +- {tau_std * 1e3:.2g} ms",
        )
        ax.set_title(label)
        with np.errstate(invalid="ignore", divide="ignore"):
            pulls = (y - fit(e.t_s)) / err  # type: ignore[operator]
        rx.plot(t_ms, pulls, marker, color=colour)
    # The Bloch-sphere average follows from the two Bloch fits: 1/2 + (dz + 4 c) / 12.
    avg = axes[3]
    avg.errorbar(t_ms, e.fidelity, yerr=e.fidelity_std, fmt=marker, color=colour, capsize=3)
    curve = 0.5 + (fits.t1(fine) + 4.0 * fits.t2(fine)) / 12.0
    avg.plot(fine * 1e3, curve, "-", color=colour, label=f"{node}: 1/2 + (dz + 4c)/12 fits")
    avg.set_title("average fidelity (six inputs)")
    with np.errstate(invalid="ignore", divide="ignore"):
        model = 0.5 + (fits.t1(e.t_s) + 4.0 * fits.t2(e.t_s)) / 12.0
        res[3].plot(t_ms, (e.fidelity - model) / e.fidelity_std, marker, color=colour)


@plot(
    "memory_decay",
    kinds=("calibration.memory",),
    needs=("points",),
    about="efficiency, T1 contrast, T2 coherence and average fidelity against storage time "
    "(1 sigma), the exponential fits with their times, and the normalised residuals",
    size_in=(16.0, 7.0),
)
def draw_memory_decay(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["points"]
    nodes = str(record.results.get("nodes") or "").split(",")
    grid = fig.subplots(2, 4, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    axes, res = list(grid[0]), list(grid[1])
    for k in np.unique(rows["node"]):
        name = nodes[k] if 0 <= k < len(nodes) and nodes[k] else f"node #{k}"
        try:
            fits = fit_memory(rows, int(k))
        except CalibrationError:  # too few points (a run that stopped early): data only
            continue
        _draw_node(axes, res, name, int(k), fits)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for rx in res:
        rx.axhline(0.0, color="grey", linewidth=0.8)
        rx.set_xlabel("storage time (ms)")
        rx.set_ylabel("(data - fit) / sigma")
    fig.suptitle(f"quantum memory characterisation, run {record.run_id}")
