"""The bb84 ``tracking`` plot: drawn from ``bob/tracking`` (and ``bob/recompensation``)
rows when a run has them, left out when it has not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qhil.orchestrator.experiments.bb84.tracking import RECOMPENSATION_ROW, TRACKING_ROW
from qhil.plots import specs_for, write_plots
from qhil.records import RunStore


def test_tracking_rows_are_plotted_only_when_recorded(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rows = np.zeros(6, dtype=TRACKING_ROW)
    rows["block"] = np.arange(6)
    rows["revealed_z"] = rows["revealed_x"] = 400
    rows["errors_z"] = [3, 4, 16, 3, 4, 3]
    rows["errors_x"] = [4, 3, 18, 4, 3, 5]
    rows["expected_z"] = rows["expected_x"] = 0.02
    rows["expected_z"][0] = rows["expected_x"][0] = np.nan
    rows["p_value"] = [1, 0.5, 1e-5, 0.6, 0.5, 0.4]
    rows["triggered"] = [0, 0, 1, 0, 0, 0]
    events = np.zeros(1, dtype=RECOMPENSATION_ROW)
    events["block"], events["ok"], events["e_z_after"], events["e_x_after"] = 2, 1, 0.006, 0.007
    with store.start_run("bb84", profile={"bench": {"name": "t"}}, seed=1) as run:
        run.append("bob/tracking", rows)
        run.append("bob/recompensation", events)
    report = write_plots(store.get(run.run_id), tmp_path / "out", names=["tracking"])
    assert [p.name for p in report.written] == ["tracking.png"] or len(report.written) == 1
    assert report.written[0].stat().st_size > 0
    with store.start_run("bb84", profile={"bench": {"name": "t"}}, seed=1) as plain:
        plain.append("bob/other", np.zeros(1))
    (spec,) = [s for s in specs_for("bb84") if s.name == "tracking"]
    assert not spec.drawable(store.get(plain.run_id))
