"""The fringes and CHSH plots, drawn from a record alone (written through the records API
with the arrays and results the jobs record)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qhil.numerics.entanglement import fit_fringe
from qhil.plots import specs_for, write_plots
from qhil.records import RunStore


def _png_ok(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert float(imread(path)[..., :3].std()) > 0.01  # something was drawn


def test_fringes_draw_from_the_record(tmp_path: Path) -> None:
    angles = np.arange(0.0, 90.0, 11.25)
    counts = 100 * (1 + 0.95 * np.cos(np.radians(4 * angles - 20))) / 2 + 1
    store = RunStore(tmp_path)
    with store.start_run("visibility") as run:
        run.append("fringe/angle_deg", angles)
        run.append("fringe/counts_hv", counts)
        run.append("fringe/accidentals_hv", np.ones_like(angles))
        fit = fit_fringe(angles, counts, 1.0)
        run.log_results(
            {
                "visibility_hv": fit.visibility,
                "visibility_hv_stderr": fit.visibility_stderr,
                "phase_hv_deg": fit.phase_deg,
                "amplitude_hv": fit.amplitude,
                "scanned_node": "alice",
            }
        )
    report = write_plots(store.get(run.run_id))
    assert [p.name for p in report.written] == ["fringes.png"]
    _png_ok(report.written[0])
    assert [s.name for s in specs_for("visibility")] == ["fringes"]


@pytest.mark.parametrize("with_results", [True, False])
def test_chsh_draws_from_the_record(tmp_path: Path, with_results: bool) -> None:
    store = RunStore(tmp_path)
    e = np.array([0.68, -0.68, 0.68, 0.68])
    with store.start_run("chsh") as run:
        run.append("chsh/alice_deg", np.array([0.0, 0.0, 45.0, 45.0]))
        run.append("chsh/bob_deg", np.array([22.5, 67.5, 22.5, 67.5]))
        run.append("chsh/e", e)
        run.append("chsh/e_stderr", np.full(4, 0.02))
        run.append("chsh/signs", np.array([1, -1, 1, 1]))
        if with_results:  # without them the plot computes S from the arrays
            run.log_results({"s": 2.72, "s_stderr": 0.04, "truth_s": 2 * math.sqrt(2) * 0.96})
    report = write_plots(store.get(run.run_id))
    assert [p.name for p in report.written] == ["chsh.png"]
    _png_ok(report.written[0])
