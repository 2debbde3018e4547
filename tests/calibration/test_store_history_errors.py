"""``qhil calibrate history``: bad output folders and non-finite values, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from qhil.calibration.store import CalibrationStore
from qhil.calibration.store.history import history_json
from qhil.cli import main
from qhil.records import RunStore


def _history(data: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["calibrate", "history", *args, "--data-dir", str(data)])
    return r.exit_code, r.output


def _record(store: RunStore, kind: str, results: dict[str, object]) -> str:
    run = store.start_run(kind, profile={"bench": {"name": "t"}}, seed=1)
    run.log_results(results)
    run.finish("success")
    return run.run_id


def test_plot_out_under_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    _record(store, "calibration.foo", {"x": 1.0})
    a_file = tmp_path / "f"
    a_file.write_text("")
    code, out = _history(store.data_dir, "foo", "--plot", "--out", str(a_file / "sub"))
    assert code == 2, out
    (line,) = out.strip().splitlines()
    assert line.startswith("qhil: error: calibrate history --out: cannot create") and "sub" in line


def test_a_non_finite_result_is_unusable_and_history_json_stays_strict(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    good = _record(store, "calibration.foo", {"x": 1.0, "x_std": float("nan")})
    bad = _record(store, "calibration.foo", {"x": float("nan")})
    cs = CalibrationStore(store)
    assert [c.run_id for c in cs.history("foo")] == [good]
    found = cs.find("foo", identities={}, max_age_s=3600)
    assert found.calibration is not None and found.calibration.run_id == good
    (nan,) = [c for c in cs.history("foo", include_unusable=True) if c.run_id == bad]
    assert json.dumps(history_json({"foo": [nan]}), allow_nan=False).count('"NaN"') == 1
    code, out = _history(store.data_dir, "foo", "--json")
    assert code == 0, out
    assert [c["run_id"] for c in json.loads(out)["history"]["foo"]] == [good]


def test_a_nan_polarization_voltage_is_not_reused_and_says_why(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    polcal = {"target_met": True, "v1_mv": float("nan"), "v2_mv": 5, "half_wave_v1_mv": 3000.0}
    _record(store, "calibration.polarization", polcal)
    found = CalibrationStore(store).find("polarization", identities={}, max_age_s=3600)
    assert found.calibration is None
    assert found.reason.endswith(": non-finite v1_mv")
    # a half-wave voltage not learned (NaN) does not make the voltages unusable
    polcal = {**polcal, "v1_mv": 7, "half_wave_v1_mv": float("nan")}
    run_id = _record(store, "calibration.polarization", polcal)
    found = CalibrationStore(store).find("polarization", identities={}, max_age_s=3600)
    assert found.calibration is not None and found.calibration.run_id == run_id
