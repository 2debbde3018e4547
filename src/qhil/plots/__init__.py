"""Plots (PNG) of every run kind, drawn from the run record alone.

``write_plots(record)`` draws each plot registered for the run's kind (see
:mod:`qhil.plots.core`) into ``data/<YYYY-MM>/<run_id>.plots/`` next to the run's arrays,
or into ``out_dir``. matplotlib is imported only when a figure is drawn. See README.md.
"""

from qhil.plots.core import (
    DPI,
    NothingToPlotError,
    PlotError,
    PlotReport,
    PlotSpec,
    plot_paths,
    plots_dir,
    plotted_kinds,
    registry,
    specs_for,
    write_plots,
)

__all__ = [
    "DPI",
    "NothingToPlotError",
    "PlotError",
    "PlotReport",
    "PlotSpec",
    "plot_paths",
    "plots_dir",
    "plotted_kinds",
    "registry",
    "specs_for",
    "write_plots",
]
