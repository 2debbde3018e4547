"""``qhil calibrate history``: bad output folders and non-finite values, no traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

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
