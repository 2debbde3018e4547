"""``qhil calibrate history``: each calibrated quantity over time, with its error.

Text (one table per kind: a row per calibration, a column per quantity, ``value ± std``),
JSON (the typed records) and a PNG trend (one panel per quantity, error bars, x = when
it was measured).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qhil.calibration.store.model import KINDS, Calibration
from qhil.calibration.store.store import CalibrationStore
from qhil.errors import QhilError
from qhil.records import RunStore
from qhil.records.jsonable import strict_json


def kind_name(cli_name: str) -> str:
    """A kind as the CLI writes it (``mean-photon-number``) as the store names it."""
    return cli_name.replace("-", "_")


def recorded_kinds(runs: RunStore) -> list[str]:
    """The registered kinds plus every ``calibration.<name>`` recorded in the store."""
    names = dict.fromkeys(KINDS)
    for record in runs.list_runs(kind="calibration.*"):
        name = record.kind.removeprefix("calibration.")
        if not any(record.kind in k.sources for k in KINDS.values()):
            names[name] = None
    return list(names)


def collect(runs: RunStore, kind: str | None) -> dict[str, list[Calibration]]:
    """Each kind's calibrations, oldest first (kinds with none left out unless asked for)."""
    store = CalibrationStore(runs)
    if kind is not None:
        name = kind_name(kind)
        known = recorded_kinds(runs)
        if name not in known:
            raise QhilError(
                f"calibrate history: unknown calibration kind {kind!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        return {name: store.history(name)}
    out = {k: store.history(k) for k in recorded_kinds(runs)}
    return {k: v for k, v in out.items() if v}


def _cell(q: Any) -> str:
    if q is None:
        return "-"
    if getattr(q, "bound", None) is not None:  # "> 41.3 (95 %)"
        sign = ">" if q.bound == "lower" else "<"
        cl = f" ({q.confidence * 100:g} %)" if q.confidence is not None else ""
        return f"{sign} {q.value:.3g}{cl}"
    if q.std is None or not math.isfinite(q.std) or q.std <= 0:
        return f"{q.value:.6g}"
    digits = max(0, 1 - math.floor(math.log10(q.std)))  # two significant digits of the error
    if abs(q.value) >= 1e6 or digits > 8:
        return f"{q.value:.6g} ± {q.std:.2g}"
    return f"{q.value:.{digits}f} ± {q.std:.{digits}f}"


def format_history(history: dict[str, list[Calibration]]) -> str:
    """Aligned tables, one per kind; ``no calibrations`` when empty."""
    if not history:
        return "no calibrations"
    blocks: list[str] = []
    for kind, cals in history.items():
        names = list(dict.fromkeys(n for c in cals for n in c.quantities))
        header = ["RUN ID", "MADE (UTC)", *names]
        rows = [
            [
                c.run_id,
                c.made_at.strftime("%Y-%m-%d %H:%M:%S"),
                *(_cell(c.quantities.get(n)) for n in names),
            ]
            for c in cals
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [f"{kind} ({len(cals)} calibration{'s' if len(cals) != 1 else ''})"]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]
        ]
        if not cals:
            lines.append("none recorded")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def history_json(history: dict[str, list[Calibration]]) -> dict[str, Any]:
    """Strict JSON: non-finite floats as ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as
    ``qhil runs export`` writes them)."""
    return {kind: [strict_json(c.as_dict()) for c in cals] for kind, cals in history.items()}


def plot_history(kind: str, cals: list[Calibration], folder: Path) -> Path:
    """``<folder>/calibration_history_<kind>.png``: one panel per quantity, 1-sigma bars."""
    from qhil.plots.core import new_figure, save_png

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. --out under a file: one line, exit 2
        raise QhilError(
            f"calibrate history --out: cannot create {folder}: {exc.strerror}"
        ) from None
    names = list(dict.fromkeys(n for c in cals for n in c.quantities))
    if not names:
        raise QhilError(f"calibrate history --plot: no {kind} calibration recorded")
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    fig = new_figure((6.0 * cols, 2.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for ax, name in zip(axes.flat, names, strict=False):
        pts = [(c.made_at, c.quantities[name]) for c in cals if name in c.quantities]
        x = [t for t, _ in pts]
        y = [q.value for _, q in pts]
        err = [q.std if q.std is not None else 0.0 for _, q in pts]
        lower = [q.bound == "lower" for _, q in pts]
        upper = [q.bound == "upper" for _, q in pts]
        if any(lower) or any(upper):  # a bound: an arrow from it, away from the excluded side
            bounded = [lo or up for lo, up in zip(lower, upper, strict=True)]
            arrow = [0.1 * abs(v) if b else 0.0 for v, b in zip(y, bounded, strict=True)]
            err = [a or e for a, e in zip(arrow, err, strict=True)]
        ax.errorbar(x, y, yerr=err, lolims=lower, uplims=upper, fmt="o-", ms=4, capsize=3)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("measured (UTC)")
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(f"calibration history: {kind} ({len(cals)} runs, 1-sigma errors)")
    return save_png(fig, folder / f"calibration_history_{kind}.png")


def history_command(
    runs: RunStore, kind: str | None, as_json: bool, plot: bool, out_dir: str | Path | None
) -> str:
    """What ``qhil calibrate history`` prints; with ``plot`` it writes the PNGs first
    (``out_dir``, default ``<data dir>/calibration_history/``)."""
    history = collect(runs, kind)
    folder = Path(out_dir) if out_dir is not None else runs.data_dir / "calibration_history"
    plots = [str(plot_history(k, cals, folder)) for k, cals in history.items()] if plot else []
    if as_json:
        return json.dumps(
            {"history": history_json(history), "plots": plots}, allow_nan=False, indent=2
        )
    return "\n".join([format_history(history), *(f"plot: {p}" for p in plots)])
