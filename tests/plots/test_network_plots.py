"""teleport and ping plots, drawn from records written through the records API alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qhil.numerics.tomography import bloch_vector
from qhil.orchestrator.experiments.teleport.analysis import analyse
from qhil.orchestrator.experiments.teleport.protocol import INPUTS, SHOT_DTYPE
from qhil.plots import specs_for, write_plots
from qhil.records import RunStore

from .test_plots import check_png, moved

PROBE_DTYPE = np.dtype(  # R2's ping record (one row per probe)
    [
        ("probe", np.int64),
        ("requested", np.int64),
        ("delivered", np.int64),
        ("measured", np.int64),
        ("agree", np.int64),
        ("latency_s", np.float64),
        ("lower_bound", np.float64),
        ("fidelity", np.float64),
        ("clock_s", np.float64),
    ]
)


def _shots(shots: int) -> np.ndarray:
    """Shots of the six inputs received with Bloch vectors shrunk to 0.85."""
    rng = np.random.default_rng(2)
    rows = np.zeros(6 * shots, dtype=SHOT_DTYPE)
    rows["input"] = np.repeat(np.arange(6), shots)
    rows["basis"] = np.tile(np.arange(shots) % 3, 6)
    target = np.array([bloch_vector(s) for s in INPUTS])[rows["input"], rows["basis"]]
    rows["outcome"] = rng.random(rows.size) >= (1 + 0.85 * target) / 2
    rows["pair_fidelity"] = 0.85
    return rows


def record_teleport(data: Path, rows: np.ndarray) -> str:
    with RunStore(data).start_run("teleport", parameters={"states": list(INPUTS)}) as run:
        for start in range(0, rows.size, 50):
            run.append("shots", rows[start : start + 50])
        if rows.size:
            run.log_results(analyse(rows, INPUTS).to_results())
        return run.run_id


def record_ping(data: Path) -> str:
    rows = np.zeros(8, dtype=PROBE_DTYPE)
    rows["probe"] = np.arange(8)
    rows["delivered"] = 20
    rows["fidelity"] = np.linspace(0.8, 0.85, 8)
    rows["lower_bound"] = rows["fidelity"] - 0.1
    rows["latency_s"] = 0.02
    with RunStore(data).start_run("ping") as run:
        run.append("probes", rows)
        run.log_results({"reachable": True, "threshold": 0.6, "confidence": 0.95})
        return run.run_id


@pytest.mark.slow  # three figures: ~5 s on a loaded 2-core host
def test_teleport_and_ping_draw_from_a_copied_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = {"teleport": record_teleport(data, _shots(30)), "ping": record_ping(data)}
    store = moved(data, tmp_path)
    for kind, run_id in ids.items():
        record = store.get(run_id)
        report = write_plots(record)
        specs = specs_for(kind)
        assert [p.name for p in report.written] == [f"{s.name}.png" for s in specs], kind
        for spec, path in zip(specs, report.written, strict=True):
            check_png(path, spec.pixels)
    assert [s.name for s in specs_for("teleport")] == ["bloch", "fidelity"]
    assert [s.name for s in specs_for("ping")] == ["probes"]


def test_teleport_stopped_before_tomography_still_draws(tmp_path: Path) -> None:
    rows = np.zeros(2, dtype=SHOT_DTYPE)  # two shots: bases X and Y of the first input only
    rows["basis"] = [0, 1]
    with RunStore(tmp_path).start_run("teleport", parameters={"states": ["H"]}) as run:
        run.append("shots", rows)
        rid = run.run_id
    report = write_plots(RunStore(tmp_path).get(rid), tmp_path / "out")
    assert [p.stem for p in report.written] == ["bloch", "fidelity"]
