"""The bbm92 plot, drawn from a record alone (written through the records API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plots.test_plots import check_png
from qhil.plots import specs_for, write_plots
from qhil.records import RunStore


def _record(data: Path, results: dict[str, Any]) -> str:
    store = RunStore(data)
    with store.start_run("bbm92", parameters={"max_qber": 0.11}) as run:
        m = np.diag([1000, 990, 1010, 980]).astype(np.int64) + 10
        run.append("acquisition/matrix", m.reshape(1, 4, 4))
        run.append("acquisition/accidentals", np.full((1, 4, 4), 0.3))
        run.log_results(results)
        run.finish("success")
        return run.run_id


@pytest.mark.parametrize(
    "results",
    [
        {
            "qber_test": 0.018,
            "test_basis_bits": 2000,
            "qber_key": 0.02,
            "key_basis_bits": 2010,
            "qber": 0.019,
            "sifted_bits": 4010,
            "predicted_qber": 0.0174,
            "secret_bits": 172,
            "finite_key_mu": 0.146,
        },
        {},  # stopped before sifting: the matrix still, the QBER panel says why not
    ],
)
def test_bbm92_plot_from_the_record(tmp_path: Path, results: dict[str, Any]) -> None:
    run_id = _record(tmp_path, results)
    record = RunStore(tmp_path, readonly=True).get(run_id)
    report = write_plots(record)
    (spec,) = specs_for("bbm92")
    assert [p.name for p in report.written] == ["bbm92.png"]
    check_png(report.written[0], spec.pixels)
