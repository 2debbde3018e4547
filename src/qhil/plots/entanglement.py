"""``visibility`` and ``chsh`` runs (issue 10): fringes with their fit, CHSH correlators.

Drawn from the record alone: the fringe arrays (``fringe/*``) and the fit's results
(``visibility_<b>``, ``phase_<b>_deg``, ``amplitude_<b>``), the CHSH arrays (``chsh/*``) and
``s``/``s_stderr``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from qhil.plots.core import Arrays, plot
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_BASES = (("hv", "H/V: H & H"), ("da", "D/A: D & D"))


def _num(record: RunRecord, key: str) -> float | None:
    value = record.results.get(key)
    return float(value) if isinstance(value, int | float) else None


@plot(
    "fringes",
    kinds=("visibility",),
    needs=("fringe/angle_deg",),
    optional=(
        "fringe/counts_hv",
        "fringe/counts_da",
        "fringe/accidentals_hv",
        "fringe/accidentals_da",
    ),
    about="coincidences against the scanned plate's axis, H/V and D/A, with the fitted fringe",
    size_in=(10.0, 5.0),
)
def draw_fringes(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    ax = fig.subplots(1, 1)
    angles = np.asarray(arrays["fringe/angle_deg"], dtype=float)
    fine = np.linspace(float(angles.min()), float(angles.max()), 400)
    for i, (b, label) in enumerate(_BASES):
        if f"fringe/counts_{b}" not in arrays:
            continue
        n = np.asarray(arrays[f"fringe/counts_{b}"], dtype=float)
        acc = np.asarray(arrays.get(f"fringe/accidentals_{b}", np.zeros_like(n)), dtype=float)
        ax.errorbar(angles, n, yerr=np.sqrt(np.maximum(n, 1.0)), fmt="o", color=f"C{i}", capsize=3)
        vis, amp = _num(record, f"visibility_{b}"), _num(record, f"amplitude_{b}")
        phase, err = _num(record, f"phase_{b}_deg"), _num(record, f"visibility_{b}_stderr")
        if vis is None or amp is None or phase is None:
            ax.plot([], [], "o", color=f"C{i}", label=f"{label} (no fit)")
            continue
        model = amp * (1 + vis * np.cos(np.radians(4 * fine - phase))) / 2 + float(acc.mean())
        ax.plot(
            fine,
            model,
            color=f"C{i}",
            label=f"{label}: V = {vis:.4f} +- {err if err is not None else math.nan:.4f}",
        )
        ax.plot(angles, acc, "x", color=f"C{i}", alpha=0.6)
    node = record.results.get("scanned_node", "scanned")
    ax.set_xlabel(f"{node}'s half-wave plate axis from its zero (deg)")
    ax.set_ylabel("coincidences per point (x: accidentals)")
    truth = _num(record, "truth_visibility")
    title = "two-photon visibility: N = A (1 + V cos(4 theta - phi)) / 2 + acc"
    if truth is not None:
        title += f"; emulator truth V = {truth:.4f}"
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


@plot(
    "chsh",
    kinds=("chsh",),
    needs=("chsh/e", "chsh/e_stderr", "chsh/alice_deg", "chsh/bob_deg"),
    optional=("chsh/signs",),
    about="the four correlators E(a, b) with their errors, and S against the bounds",
    size_in=(10.0, 5.0),
)
def draw_chsh(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    e = np.asarray(arrays["chsh/e"], dtype=float)
    err = np.asarray(arrays["chsh/e_stderr"], dtype=float)
    a, b = np.asarray(arrays["chsh/alice_deg"]), np.asarray(arrays["chsh/bob_deg"])
    signs = np.asarray(arrays.get("chsh/signs", np.ones(e.size)), dtype=float)
    x = np.arange(e.size)
    left.bar(x, e, yerr=err, capsize=5, color=["C0" if s > 0 else "C3" for s in signs])
    ideal = np.cos(2 * np.radians(a - b))
    left.plot(x, ideal, "k_", markersize=30, label="ideal phi+ (V = 1)")
    left.set_xticks(
        x,
        [
            f"a={ai:g}\nb={bi:g}\n({'+' if s > 0 else '-'})"
            for ai, bi, s in zip(a, b, signs, strict=True)
        ],
    )
    left.axhline(0, color="grey", linewidth=0.8)
    left.set_ylim(-1.05, 1.05)
    left.set_ylabel("correlator E(a, b), 1 sigma")
    left.legend(fontsize=8)
    s, s_err = _num(record, "s"), _num(record, "s_stderr")
    if s is None:
        s = float(np.sum(signs * e))
        s_err = float(np.sqrt(np.sum(err**2)))
    right.errorbar([0], [s], yerr=[s_err or 0.0], fmt="o", capsize=6, color="k")
    right.axhline(2.0, color="C3", linestyle="--", label="local bound 2")
    right.axhline(2 * math.sqrt(2), color="C2", linestyle=":", label="Tsirelson 2 sqrt 2")
    truth = _num(record, "truth_s")
    if truth is not None:
        right.axhline(truth, color="C1", linewidth=0.8, label=f"emulator truth {truth:.3f}")
    right.set_xticks([])
    right.set_ylim(min(1.5, s - 3 * (s_err or 0)), 3.0)
    right.set_ylabel("S")
    right.legend(fontsize=7, loc="lower right")
    sig = (s - 2.0) / s_err if s_err else math.nan
    fig.suptitle(
        f"CHSH: S = {s:.3f} +- {s_err or math.nan:.3f}, (S - 2)/sigma = {sig:.1f}", fontsize=10
    )
