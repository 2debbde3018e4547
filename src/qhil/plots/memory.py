"""``calibration.memory``: each node's memory decay against storage time: the efficiency,
the population contrast (T1) and coherence (T2), the Bloch-average fidelity, with the fits
(refitted from the recorded counts, as the run did; a decay not measurable within the
storage times shows its lower bound) and their normalised residuals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.calibration.errors import CalibrationError
from qhil.calibration.memory import DecayFit, MemoryFits, fit_memory
from qhil.plots.core import Arrays, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _series(fits: MemoryFits) -> list[tuple[str, str, np.ndarray, np.ndarray, DecayFit]]:
    """(label, decay time's name, values, 1-sigma errors, fit) of the three fitted decays."""
    e = fits.estimates
    return [
        ("efficiency", "tau", e.efficiency, e.efficiency_std, fits.efficiency),
        ("contrast z_H - z_V (T1)", "T1", e.contrast, e.contrast_std, fits.t1),
        ("coherence (T2)", "T2", e.coherence, e.coherence_std, fits.t2),
    ]


def _fit_label(node: str, name: str, fit: DecayFit, unit: str, per_s: float) -> str:
    """The legend of a fitted decay: its time +- error, or its lower bound."""
    if fit.bounded:
        assert fit.lower_bound_s is not None and fit.confidence is not None
        return f"{node} fit: {name} > {fit.lower_bound_s:.3g} s ({fit.confidence * 100:g} %)"
    return f"{node} fit: {fit.time_s * per_s:.3g} +- {fit.time_std_s * per_s:.2g} {unit}"


def _draw_node(
    axes: list[Axes], res: list[Axes], node: str, k: int, fits: MemoryFits, unit: str
) -> None:
    e = fits.estimates
    per_s = _PER_S[unit]
    t_x = e.t_s * per_s
    fine = np.linspace(0.0, float(e.t_s.max()), 200)
    colour, marker = f"C{k}", "os^vD"[k % 5]
    for (label, name, y, err, fit), ax, rx in zip(_series(fits), axes[:3], res[:3], strict=True):
        ax.errorbar(t_x, y, yerr=err, fmt=marker, color=colour, capsize=3, label=f"{node}")
        ax.plot(
            fine * per_s,
            fit(fine),
            "-",
            color=colour,
            label=_fit_label(node, name, fit, unit, per_s),
        )
        if fit.bounded:  # the fastest decay the bound allows: the data lie above it
            assert fit.lower_bound_s is not None
            steepest = fit.amplitude * np.exp(-fine / fit.lower_bound_s)
            ax.plot(
                fine * per_s,
                steepest,
                "--",
                color=colour,
                linewidth=0.8,
                label=f"{node}: decay at the bound",
            )
        ax.set_title(label)
        with np.errstate(invalid="ignore", divide="ignore"):
            pulls = (y - fit(e.t_s)) / err
        rx.plot(t_x, pulls, marker, color=colour)
    # The Bloch-sphere average follows from the two Bloch fits: 1/2 + (dz + 4 c) / 12.
    avg = axes[3]
    avg.errorbar(t_x, e.fidelity, yerr=e.fidelity_std, fmt=marker, color=colour, capsize=3)
    curve = 0.5 + (fits.t1(fine) + 4.0 * fits.t2(fine)) / 12.0
    avg.plot(fine * per_s, curve, "-", color=colour, label=f"{node}: 1/2 + (dz + 4c)/12 fits")
    avg.set_title("average fidelity (six inputs)")
    with np.errstate(invalid="ignore", divide="ignore"):
        model = 0.5 + (fits.t1(e.t_s) + 4.0 * fits.t2(e.t_s)) / 12.0
        res[3].plot(t_x, (e.fidelity - model) / e.fidelity_std, marker, color=colour)


_PER_S = {"ms": 1e3, "s": 1.0}


@plot(
    "memory_decay",
    kinds=("calibration.memory",),
    needs=("points",),
    about="efficiency, T1 contrast, T2 coherence and average fidelity against storage time "
    "(1 sigma), the exponential fits with their times (or, for a decay not measurable "
    "within the storage times, the lower bound and the decay at the bound, dashed), and "
    "the normalised residuals",
    size_in=(16.0, 7.0),
)
def draw_memory_decay(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["points"]
    nodes = str(record.results.get("nodes") or "").split(",")
    grid = fig.subplots(2, 4, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    axes, res = list(grid[0]), list(grid[1])
    unit = "s" if rows.size and float(rows["storage_time_s"].max()) >= 1.0 else "ms"
    confidence = float((record.parameters or {}).get("confidence", 0.95))
    for k in np.unique(rows["node"]):
        name = nodes[k] if 0 <= k < len(nodes) and nodes[k] else f"node #{k}"
        try:
            fits = fit_memory(rows, int(k), confidence)
        except CalibrationError:  # too few points (a run that stopped early): data only
            continue
        _draw_node(axes, res, name, int(k), fits, unit)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for rx in res:
        rx.axhline(0.0, color="grey", linewidth=0.8)
        rx.set_xlabel(f"storage time ({unit})")
        rx.set_ylabel("(data - fit) / sigma")
    fig.suptitle(f"quantum memory characterisation, run {record.run_id}")
