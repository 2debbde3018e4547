"""A teleport record stopped after one input's shots plots that input (it drew "too few
measured shots for tomography")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qhil.orchestrator.experiments.teleport.protocol import INPUTS, SHOT_DTYPE
from qhil.records import RunStore


def _stopped_teleport(data: Path) -> str:
    rows = np.zeros(30, dtype=SHOT_DTYPE)  # input 0 (H) only, ten shots per basis
    rows["basis"] = np.arange(30) % 3
    rows["outcome"] = np.where(rows["basis"] == 2, 0, np.arange(30) % 2)  # Z: all +1
    rows["pair_fidelity"] = 0.9
    run = RunStore(data).start_run("teleport", parameters={"states": list(INPUTS)})
    with pytest.raises(KeyboardInterrupt), run:
        run.append("shots", rows)
        raise KeyboardInterrupt
    return run.run_id


def test_stopped_teleport_plots_the_inputs_it_has(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from qhil.plots.network import draw_bloch, draw_fidelity

    record = RunStore(tmp_path).get(_stopped_teleport(tmp_path))
    arrays = {"shots": record.arrays["shots"]}
    fig = Figure()
    draw_fidelity(record, arrays, fig)
    title = fig.axes[0].get_title()
    assert title == "teleportation: 30 measured of 30 shots (aborted: 1 of 6 inputs)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["H"]
    fig = Figure()
    draw_bloch(record, arrays, fig)
    assert fig.axes[0].get_title().endswith("(aborted: 1 of 6 inputs)")
