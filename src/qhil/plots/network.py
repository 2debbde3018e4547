"""Repeater-bench run kinds: ``teleport`` (the receiver's states by tomography, fidelity per
input against the prediction) and ``ping`` (fidelity and its lower bound per probe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qhil.numerics.tomography import TomographyError
from qhil.plots.core import Arrays, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from qhil.orchestrator.experiments.teleport.analysis import TeleportAnalysis

#: Bloch-plane projections drawn: (horizontal, vertical) component indices and names.
_PLANES = ((0, 2, "x (D)", "z (H)"), (1, 2, "y (R)", "z (H)"), (0, 1, "x (D)", "y (R)"))


def _teleport(record: RunRecord, arrays: Arrays) -> TeleportAnalysis | None:
    from qhil.orchestrator.experiments.teleport.analysis import analyse

    inputs = tuple(str(record.results.get("inputs") or "").split(","))
    if not inputs or inputs == ("",):
        inputs = tuple(record.parameters.get("states") or ())
    rows = arrays["shots"]
    try:
        return analyse(rows, inputs)
    except TomographyError:  # a run stopped before each input had a shot in each basis
        pass
    # what it has: the inputs measured in all three bases (renumbered in their order)
    ok = rows["outcome"] >= 0
    done = [
        k
        for k in range(len(inputs))
        if all(np.any(ok & (rows["input"] == k) & (rows["basis"] == b)) for b in range(3))
    ]
    if not done:
        return None
    keep = np.isin(rows["input"], done)
    part = rows[keep].copy()
    part["input"] = np.searchsorted(np.asarray(done), part["input"])
    try:
        return analyse(part, tuple(inputs[k] for k in done))
    except TomographyError:
        return None


def _partial(record: RunRecord, a: TeleportAnalysis) -> str:
    """' (interrupted: 1 of 6 inputs)' when the plot shows only part of the run's inputs."""
    planned = len(tuple(record.parameters.get("states") or ()))
    if planned <= len(a.inputs):
        return ""
    return f" ({record.status}: {len(a.inputs)} of {planned} inputs)"


@plot(
    "bloch",
    kinds=("teleport",),
    needs=("shots",),
    about="the receiver's Bloch vector per input by tomography (1 sigma per component) "
    "against the input, in the three planes of the Bloch ball",
    size_in=(15.0, 5.5),
)
def draw_bloch(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    axes = fig.subplots(1, 3)
    a = _teleport(record, arrays)
    if a is None:
        axes[0].set_title("too few measured shots for tomography")
        return
    circle = np.linspace(0.0, 2 * np.pi, 200)
    for ax, (i, j, xlabel, ylabel) in zip(axes, _PLANES, strict=True):
        ax.plot(np.cos(circle), np.sin(circle), "-", color="0.7", lw=1)
        ax.axhline(0, color="0.85", lw=0.8)
        ax.axvline(0, color="0.85", lw=0.8)
        for k, name in enumerate(a.inputs):
            c = f"C{k % 10}"
            t, r, s = a.targets[k], a.estimate.bloch[k], a.estimate.bloch_std[k]
            ax.plot(t[i], t[j], "o", mfc="none", mec=c, ms=12)
            ax.errorbar(
                r[i],
                r[j],
                xerr=s[i],
                yerr=s[j],
                fmt="x",
                color=c,
                capsize=2,
                label=f"{name}: F = {a.fidelity[k]:.3f} +- {a.fidelity_std[k]:.3f}",
            )
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-1.15, 1.15)
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0].set_title("input (o) and received (x), Bloch x-z" + _partial(record, a))
    axes[1].set_title("Bloch y-z")
    axes[2].set_title("Bloch x-y")
    axes[2].legend(fontsize="small", loc="lower right")


@plot(
    "fidelity",
    kinds=("teleport",),
    needs=("shots",),
    about="teleportation fidelity per input (1 sigma) and their mean against (2F + 1)/3 of "
    "the pairs used, with the classical limit 2/3",
    size_in=(8.0, 5.5),
)
def draw_fidelity(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    ax = fig.subplots()
    a = _teleport(record, arrays)
    if a is None:
        ax.set_title("too few measured shots for tomography")
        return
    x = np.arange(len(a.inputs))
    ax.errorbar(x, a.fidelity, yerr=a.fidelity_std, fmt="o", capsize=4, label="measured")
    avg, std = a.average
    ax.axhspan(avg - std, avg + std, color="C0", alpha=0.15)
    ax.axhline(avg, color="C0", lw=1, label=f"mean {avg:.4f} +- {std:.4f}")
    ax.axhline(
        a.predicted,
        color="C3",
        ls="--",
        label=f"(2F + 1)/3 = {a.predicted:.4f} (F = {a.pair_fidelity:.4f})",
    )
    ax.axhline(2.0 / 3.0, color="0.5", ls=":", label="classical limit 2/3")
    ax.set_xticks(x, list(a.inputs))
    ax.set_xlabel("input state")
    ax.set_ylabel("fidelity with the input")
    ax.set_title(f"teleportation: {a.measured} measured of {a.shots} shots" + _partial(record, a))
    ax.legend(fontsize="small")


def _interrupted_title(record: RunRecord, arrays: Arrays) -> str:
    """A ping record without a verdict: what the sequential test had decided on the
    outcomes recorded so far (the run's own settings), not "not reachable"."""
    from qhil.orchestrator.experiments.network.frames import Sprt

    probes = int(arrays["probes"].size)
    head = f"ping interrupted ({record.status}) after {probes} probe{'s' * (probes != 1)}"
    outcomes = arrays.get("outcomes")
    p = record.parameters.get("ping") or {}
    try:
        sprt = Sprt(
            float(p["min_fidelity"]), float(p["delta"]), float(p["alpha"]), float(p["beta"])
        )
    except (KeyError, TypeError, ValueError):
        return f"{head}: no verdict"
    agree = (
        outcomes["agree"]
        if outcomes is not None and "agree" in (outcomes.dtype.names or ())
        else np.zeros(0, dtype=bool)
    )
    decision = sprt.update(agree)
    if decision is None:
        return f"{head}: undecided after {agree.size} measured pairs"
    verdict = "reachable" if decision else "not reachable"
    return f"{head}: decided {verdict} after {sprt.decided_after} pairs"


@plot(
    "probes",
    kinds=("ping",),
    needs=("probes",),
    optional=("outcomes",),
    about="per probe: the fidelity estimate and its lower bound against the threshold; "
    "pairs delivered and latency",
    size_in=(9.0, 7.0),
)
def draw_probes(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["probes"]
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    names = rows.dtype.names or ()
    probe = rows["probe"] if "probe" in names else np.arange(rows.size)
    if "fidelity" in names:
        top.plot(probe, rows["fidelity"], "o", label="fidelity estimate")
    if "lower_bound" in names:
        conf = record.results.get("confidence")
        what = (
            f"lower bound ({float(conf):.3g})" if isinstance(conf, int | float) else "lower bound"
        )
        top.plot(probe, rows["lower_bound"], "v", color="C3", label=what)
    threshold = record.results.get("threshold")
    if isinstance(threshold, int | float):
        top.axhline(float(threshold), color="0.4", ls="--", label=f"threshold {threshold:g}")
    top.axhline(0.5, color="0.7", ls=":", lw=1)
    reachable = record.results.get("reachable")
    if reachable is None:  # no verdict recorded: the run was stopped (or is still going)
        top.set_title(_interrupted_title(record, arrays))
    else:
        top.set_title(
            f"ping: {'reachable' if reachable else 'not reachable'}"
            + (
                f" ({record.results.get('reason')})"
                if not reachable and record.results.get("reason")
                else ""
            )
        )
    top.set_ylabel("fidelity")
    top.legend(fontsize="small")
    if "delivered" in names:
        bottom.bar(probe, rows["delivered"], color="C0", alpha=0.6, label="pairs delivered")
        bottom.set_ylabel("pairs")
    if "latency_s" in names:
        lat = bottom.twinx()
        lat.plot(probe, rows["latency_s"] * 1e3, "s-", color="C1", label="latency")
        lat.set_ylabel("latency (ms, bench time)")
    bottom.set_xlabel("probe")
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
