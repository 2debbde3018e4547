"""What the clock-sync plots draw: the measured offsets less a line fitted over the run
(not measured - tracked, which the loop keeps at a few ps), and a white-PM reference that
is visible even when the TDEV has a single averaging time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qhil.plots.clock_sync import draw_residual, draw_tdev
from qhil.plots.core import new_figure
from qhil.records import RunStore

from .synthetic import clock_sync_truth, record_clock_sync


def test_residual_draws_the_measured_offsets_less_a_weighted_line(tmp_path: Path) -> None:
    cols = clock_sync_truth()
    cols["track/stderr_ps"] = np.linspace(15.0, 30.0, cols["track/t_s"].size)
    record = RunStore(tmp_path).get(record_clock_sync(tmp_path, cols))
    fig = new_figure((11.0, 9.0))
    draw_residual(record, dict(record.arrays.items()), fig)
    (bars,) = fig.axes[0].containers
    drawn = np.asarray(bars.lines[0].get_ydata(), dtype=float)
    # the weighted least-squares line, solved here independently of the plot's code
    t, y, s = cols["track/t_s"], cols["track/offset_measured_ps"], cols["track/stderr_ps"]
    use = cols["track/locked"] & np.isfinite(y)
    a = np.column_stack([np.ones(use.sum()), t[use]]) / s[use, None]
    coef = np.linalg.lstsq(a, (y[use] - y[use][0]) / s[use], rcond=None)[0]
    want = y - y[use][0] - (coef[0] + coef[1] * t)
    np.testing.assert_allclose(drawn[use], want[use], atol=1e-6)
    assert np.isnan(drawn[~use]).all()
    # what it shows: the per-interval scatter (20 ps) and the walk, not the loop's few ps
    assert 15.0 < float(np.std(drawn[use])) < 200.0


def test_the_white_pm_reference_is_visible_with_a_single_tau(tmp_path: Path) -> None:
    cols = {k: v[:4] for k, v in clock_sync_truth().items()}  # 4 intervals: TDEV at tau0 only
    record = RunStore(tmp_path).get(record_clock_sync(tmp_path, cols))
    fig = new_figure((8.0, 6.0))
    draw_tdev(record, dict(record.arrays.items()), fig)
    ax = fig.axes[0]
    (ref,) = [ln for ln in ax.lines if str(ln.get_label()).startswith("white PM")]
    x = np.asarray(ref.get_xdata(), dtype=float)
    visible = np.unique(x).size >= 2 or ref.get_marker() not in (None, "None", "", " ")
    assert visible, (x, ref.get_marker())
    assert {c.lines[0].get_xdata()[0] for c in ax.containers} == {float(x[0])}
