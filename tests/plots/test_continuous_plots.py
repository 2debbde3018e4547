"""Plots of continuous key generation (issue 13) and of every run kind a command records
(issue 15): each redrawn from a copy of the data directory alone."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from qhil.orchestrator.experiments.bb84.continuous_job import KEY_ROW, PAUSE_ROW
from qhil.plots import specs_for, write_plots
from qhil.records import RunStore

from .test_plots import check_png, moved

SRC = Path(__file__).resolve().parents[2] / "src" / "qhil"
CONTINUOUS = ("bb84.continuous", "bb84.continuous.alice", "bb84.continuous.bob")


def _keys(n: int, dropped: tuple[int, ...] = ()) -> np.ndarray:
    rows = np.zeros(n, KEY_ROW)
    rows["key"] = np.arange(n)
    rows["committed"] = [i not in dropped for i in range(n)]
    rows["secret_bits"] = np.where(rows["committed"] == 1, 5000 + 100 * np.arange(n), 0)
    rows["acquisition_s"] = 1.0
    rows["qber_test_signal"] = np.where(rows["committed"] == 1, 0.02, 0.15)
    rows["t_s"] = 1.5 * (np.arange(n) + 1) + 4.0 * (np.arange(n) >= 4)  # a 4-s pause
    return rows


def _record(store: RunStore, kind: str, rows: np.ndarray, pauses: bool) -> str:
    parties = ("alice", "bob") if kind.count(".") == 1 else (kind.rsplit(".", 1)[1],)
    with store.start_run(kind, parameters={"max_qber": 0.11, "continuous": True}) as run:
        for party in parties:
            run.append(f"{party}/keys", rows)
        if pauses:
            run.append(f"{parties[0]}/pauses", np.array([(6.1, 10.0)], PAUSE_ROW))
        run.log_results({"keys_committed": 5, "dropped_qber_too_high": 1, "paused_s": 3.9})
        run.finish("success", "SIGTERM")
        return run.run_id


@pytest.mark.slow  # five figures: ~3.5 s
def test_continuous_runs_draw_their_keys_from_a_copied_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = RunStore(data)
    ids = {kind: _record(store, kind, _keys(6, dropped=(2,)), True) for kind in CONTINUOUS}
    ids["bbm92.continuous"] = _record(store, "bbm92.continuous", _keys(3), False)
    # an older record: keys without times (drawn against their index)
    old = np.zeros(3, [(n, KEY_ROW[n]) for n in KEY_ROW.names if n != "t_s"])
    old["key"], old["committed"], old["secret_bits"] = np.arange(3), 1, 400
    ids["old"] = _record(store, "bb84.continuous.bob", old, False)
    copy = moved(data, tmp_path)
    for name, run_id in ids.items():
        record = copy.get(run_id)
        (spec,) = specs_for(record.kind)
        report = write_plots(record, tmp_path / "out" / name)
        assert [p.name for p in report.written] == ["keys.png"], name
        check_png(report.written[0], spec.pixels)


def test_a_bbm92_partys_record_draws_its_outcomes_and_qber(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with RunStore(data).start_run("bbm92.bob", parameters={"max_qber": 0.11}) as run:
        run.append("bob/outcomes", np.array([[1000, 990, 1010, 1005]]))
        run.log_results({"qber_test": 0.021, "test_basis_bits": 4000, "qber": 0.02,
                         "sifted_bits": 8000, "secret_bits": 900})  # fmt: skip
        run.finish("success")
        run_id = run.run_id
    record = moved(data, tmp_path).get(run_id)
    (spec,) = specs_for("bbm92.bob")
    (path,) = write_plots(record, tmp_path / "out").written
    check_png(path, spec.pixels)


def recorded_kinds() -> set[str]:
    """Every run kind a command of qhil records, from the ``start_run(`` calls in src/
    (parties' ``{party}`` expanded; calibrations, the entanglement experiments and the
    continuous key loops name their kind through one helper each)."""
    kinds: set[str] = set()
    computed = 0
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for f, kind in re.findall(r'(?<!def )start_run\(\s*(f?)"([^"]+)"', text):
            kinds |= {kind.replace("{party}", p) for p in ("alice", "bob")} if f else {kind}
        computed += len(re.findall(r'(?<!def )start_run\((?!\s*f?")', text))
        kinds |= {f"calibration.{n}" for n in re.findall(r'_recorded\(\s*"(\w+)"', text)}
        kinds |= set(re.findall(r'_run_job\(\s*"(\w+)"', text))
        for f, kind in re.findall(r'(?<!def )continuous_loop\(\s*(f?)"([^"]+)"', text):
            kinds |= {kind.replace("{party}", p) for p in ("alice", "bob")} if f else {kind}
    # the three helpers above are the only calls with a computed kind: a new one must be
    # taught here (and given plots)
    assert computed == 3, f"{computed} start_run( calls with a computed kind"
    return kinds


def test_every_recorded_kind_has_plots() -> None:
    kinds = recorded_kinds()
    assert {"bb84.continuous", "bb84.continuous.alice", "bbm92.continuous", "bbm92.alice",
            "calibration.mount_zero", "chsh", "ping", "teleport"} <= kinds  # fmt: skip
    missing = sorted(k for k in kinds if not specs_for(k))
    assert missing == [], f"run kinds without plots: {missing}"
