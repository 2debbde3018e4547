"""The plot registry and the writer: run kind -> plot functions -> PNGs next to the record.

A plot function sees the :class:`~qhil.records.RunRecord` (parameters, results, status)
and the arrays it declared, read from the run's HDF5 file, and draws on a matplotlib
``Figure`` it is handed. Nothing else: no profile file, no bench, no re-running, so a
copy of the data directory redraws every plot on another machine.

matplotlib is imported only when a figure is drawn (``qhil --help`` stays fast), and only
its object-oriented API with the Agg canvas is used: no pyplot, no global backend state.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qhil.errors import QhilError
from qhil.records import ArrayDataError, RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Resolution of every PNG; a plot's pixel size is its ``size_in`` times this.
DPI = 100
#: Bob's four detectors, in the order the calibrations record them.
DETECTORS = ("H", "V", "D", "A")
#: Folder of a run's plots, next to its HDF5 file: ``data/<YYYY-MM>/<run_id>.plots/``.
PLOTS_SUFFIX = ".plots"

Arrays = Mapping[str, npt.NDArray[Any]]
DrawFn = Callable[[RunRecord, Arrays, "Figure"], None]

# The modules that register plots (imported on first use, not with qhil.plots).
_MODULES = (
    "qhil.plots.bb84",
    "qhil.plots.clock_sync",
    "qhil.plots.polarization",
    "qhil.plots.detector_efficiency",
    "qhil.plots.delays",
    "qhil.plots.mean_photon_number",
    "qhil.plots.entanglement",
    "qhil.plots.entanglement_calibration",
    "qhil.plots.bbm92",
    "qhil.plots.memory",
    "qhil.plots.continuous",
    "qhil.plots.network",
)


class PlotError(QhilError):
    """A run cannot be plotted (unknown kind, no arrays, an unwritable folder)."""


class NothingToPlotError(PlotError):
    """The run recorded none of the arrays its kind's plots need (e.g. it stopped early)."""


@dataclass(frozen=True)
class PlotSpec:
    """One PNG of a run kind: drawn when every array in ``needs`` has rows."""

    name: str  # the file's stem: <name>.png
    kinds: tuple[str, ...]  # run kinds (fnmatch patterns, e.g. "bb84*")
    needs: tuple[str, ...]
    about: str
    draw: DrawFn
    optional: tuple[str, ...] = ()  # read too when the run has them
    size_in: tuple[float, float] = (10.0, 7.0)

    def applies_to(self, kind: str) -> bool:
        return any(fnmatch.fnmatchcase(kind, pattern) for pattern in self.kinds)

    def drawable(self, record: RunRecord) -> bool:
        return all(_has_rows(record, n) for n in self.needs)

    @property
    def pixels(self) -> tuple[int, int]:
        return round(self.size_in[0] * DPI), round(self.size_in[1] * DPI)


def _has_rows(record: RunRecord, name: str) -> bool:
    info = record.array_index.get(name)
    return info is not None and bool(info.shape) and info.shape[0] > 0


_REGISTRY: list[PlotSpec] = []
_loaded = False


def plot(
    name: str,
    *,
    kinds: Sequence[str],
    needs: Sequence[str],
    about: str,
    optional: Sequence[str] = (),
    size_in: tuple[float, float] = (10.0, 7.0),
) -> Callable[[DrawFn], DrawFn]:
    """Register ``draw`` as plot ``name`` of the run kinds ``kinds``."""

    def register(draw: DrawFn) -> DrawFn:
        add_plot(PlotSpec(name, tuple(kinds), tuple(needs), about, draw, tuple(optional), size_in))
        return draw

    return register


def add_plot(spec: PlotSpec) -> None:
    clash = [s for s in _REGISTRY if s.name == spec.name and set(s.kinds) & set(spec.kinds)]
    if clash:
        raise ValueError(f"plot {spec.name!r} is registered twice for kinds {spec.kinds}")
    _REGISTRY.append(spec)


def registry() -> list[PlotSpec]:
    """Every registered plot (loads the plot modules on first call)."""
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(module)
        _loaded = True
    return list(_REGISTRY)


def specs_for(kind: str) -> list[PlotSpec]:
    return [s for s in registry() if s.applies_to(kind)]


def plotted_kinds() -> list[str]:
    """The run kinds (patterns) that have plots, for messages and ``--help``."""
    return sorted({k for s in registry() for k in s.kinds})


@dataclass
class PlotReport:
    """What :func:`write_plots` did: the files written, and the plots left out and why."""

    run_id: str
    folder: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def plots_dir(record: RunRecord) -> Path | None:
    """Where a run's plots go by default: next to its array file (None: it has none)."""
    if record.data_path is None:
        return None
    return record.data_path.parent / f"{record.run_id}{PLOTS_SUFFIX}"


def plot_paths(record: RunRecord) -> list[Path]:
    """The PNGs already written in the run's default plot folder, by name."""
    folder = plots_dir(record)
    if folder is None or not folder.is_dir():
        return []
    # not the hidden temporary files of a write in progress (or of one that crashed)
    return sorted(p for p in folder.glob("*.png") if p.is_file() and not p.name.startswith("."))


def write_plots(
    record: RunRecord, out_dir: str | os.PathLike[str] | None = None, *, names: Iterable[str] = ()
) -> PlotReport:
    """Draw every plot of the run's kind that its arrays allow, as PNGs in ``out_dir``
    (default: :func:`plots_dir`). Raises :class:`PlotError` when there is nothing to draw."""
    specs = specs_for(record.kind)
    wanted = set(names)
    if wanted:
        unknown = wanted - {s.name for s in specs}
        if unknown:
            known = ", ".join(s.name for s in specs) or "none"
            raise PlotError(
                f"run {record.run_id} ({record.kind}): no plot named "
                f"{', '.join(sorted(unknown))} (its plots: {known})"
            )
        specs = [s for s in specs if s.name in wanted]
    if not specs:
        raise PlotError(
            f"run {record.run_id}: run kind {record.kind!r} has no plots "
            f"(kinds with plots: {', '.join(plotted_kinds())})"
        )
    drawable = [s for s in specs if s.drawable(record)]
    if not drawable:
        needed = sorted({n for s in specs for n in s.needs})
        have = ", ".join(sorted(record.array_index)) or "none"
        raise NothingToPlotError(
            f"run {record.run_id} ({record.kind}, {record.status.value}): nothing to plot: "
            f"it recorded none of the arrays its plots need ({', '.join(needed)}); "
            f"arrays: {have}"
        )
    folder = Path(out_dir).expanduser() if out_dir is not None else plots_dir(record)
    assert folder is not None  # a drawable plot means the run has an array file
    _make_folder(folder)
    report = PlotReport(record.run_id, folder)
    # A plot none of whose arrays the run has does not apply (e.g. the second direction of
    # a two-way clock sync on a one-way run); one with some of them is reported.
    report.skipped = [
        (s.name, "missing or empty " + ", ".join(n for n in s.needs if not _has_rows(record, n)))
        for s in specs
        if s not in drawable and any(n in record.array_index for n in s.needs)
    ]
    try:
        with record.arrays as arrays, warnings.catch_warnings():
            # matplotlib's and numpy's warnings about a panel's data (nothing positive for
            # a log axis, an all-NaN median) would break the CLI's one-line output; the
            # panels say in words when they have nothing to show.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            for spec in drawable:
                data = {n: arrays[n] for n in (*spec.needs, *spec.optional) if n in arrays}
                fig = new_figure(spec.size_in)
                spec.draw(record, data, fig)
                fig.suptitle(f"{record.kind}  {record.run_id}  ({record.status.value})")
                report.written.append(save_png(fig, folder / f"{spec.name}.png"))
    except ArrayDataError as exc:
        raise PlotError(f"run {record.run_id}: cannot read its arrays: {exc}") from None
    return report


def new_figure(size_in: tuple[float, float]) -> Figure:
    """An Agg-backed figure of exactly ``size_in`` inches at :data:`DPI` (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write atomically: a reader (or a crash) never sees half a PNG."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=DPI)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlotError(
            f"plot folder {folder}: cannot create it: {exc.strerror or exc} "
            "(write the plots elsewhere: qhil runs plot --out DIR)"
        ) from None
    if not os.access(folder, os.W_OK):
        raise PlotError(
            f"plot folder {folder}: not writable (write the plots elsewhere: "
            "qhil runs plot --out DIR)"
        )


# --- helpers shared by the plot modules ---------------------------------------------------


def field_or_none(rows: npt.NDArray[Any], name: str) -> npt.NDArray[Any] | None:
    """A structured array's field, or None when an older record lacks it."""
    names = rows.dtype.names or ()
    return rows[name] if name in names else None


def binomial_band(
    k: npt.ArrayLike, n: npt.ArrayLike, confidence: float = 0.6827
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Jeffreys interval of k successes in n trials (NaN where n = 0)."""
    from scipy.stats import beta

    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        lo = np.where(k_arr > 0, beta.ppf(tail, k_arr + 0.5, n_arr - k_arr + 0.5), 0.0)
        hi = np.where(k_arr < n_arr, beta.ppf(1 - tail, k_arr + 0.5, n_arr - k_arr + 0.5), 1.0)
    bad = n_arr <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def expected_range(
    p: float, n: npt.ArrayLike, confidence: float = 0.95
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The central ``confidence`` range of the fraction k/n when k ~ Binomial(n, p): where
    a block of n trials falls if every block shares the rate p (NaN where n = 0)."""
    from scipy.stats import binom

    n_arr = np.asarray(n, dtype=float)
    tail = (1.0 - confidence) / 2.0
    safe = np.where(n_arr > 0, n_arr, 1.0)
    lo = binom.ppf(tail, safe, p) / safe
    hi = binom.ppf(1.0 - tail, safe, p) / safe
    bad = n_arr <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def result_number(record: RunRecord, name: str) -> float | None:
    value = record.results.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parameter_number(record: RunRecord, name: str) -> float | None:
    value = record.parameters.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def note(ax: Any, text: str) -> None:
    """A short text in an axis' corner (e.g. the run's totals)."""
    ax.text(
        0.99,
        0.97,
        text,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "linewidth": 0.5},
    )


def empty(ax: Any, text: str) -> None:
    """Say on the axis why it is empty (a plot that has nothing for one of its panels)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
