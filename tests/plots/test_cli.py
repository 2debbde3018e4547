"""qhil runs plot / runs show's plot listing / the end-of-run plots of run and calibrate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qhil.cli import _plots_after_run, _print_summary, main
from qhil.records import RunStore

from .synthetic import record_clock_sync


def invoke(args: list[str], data: Path) -> Any:
    result = CliRunner().invoke(main, [*args], env={"QHIL_DATA_DIR": str(data)})
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}"
    )
    return result


def one_line_error(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qhil: error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_runs_plot_writes_the_pngs_and_prints_their_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rid = record_clock_sync(data)
    r = invoke(["runs", "plot", rid[:15], "--data-dir", str(data)], tmp_path / "other")
    assert r.exit_code == 0, r.stderr
    paths = [Path(line) for line in r.stdout.splitlines()]
    assert [p.name for p in paths] == ["residual.png", "tdev.png"]
    assert all(p.is_file() and p.parent.name == f"{rid}.plots" for p in paths)

    shown = invoke(["runs", "show", rid], data)
    assert shown.exit_code == 0
    tail = shown.stdout.split("\nplots: ", 1)[1].splitlines()
    assert tail == [str(paths[0].parent), "  residual.png", "  tdev.png"]
    as_json = json.loads(invoke(["runs", "show", rid, "--json"], data).stdout)
    assert as_json["plots"] == [str(p) for p in paths]


def test_runs_plot_out_dir_and_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rid = record_clock_sync(data)
    out = tmp_path / "figures"
    r = invoke(["runs", "plot", rid, "--out", str(out), "--json"], data)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc == {
        "run_id": rid,
        "plots": [str(out / "residual.png"), str(out / "tdev.png")],
        "skipped": {},
    }
    # --out leaves the run's own plot folder empty: runs show says what plot would draw
    shown = invoke(["runs", "show", rid], data).stdout
    assert shown.rstrip().endswith(f"plots: none ('qhil runs plot {rid}' draws: residual, tdev)")


def test_runs_plot_bad_run_id_is_one_line_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    record_clock_sync(data)
    one_line_error(invoke(["runs", "plot", "nosuch"], data), "no run 'nosuch'", "runs.sqlite")
    one_line_error(
        invoke(["runs", "plot", "x", "--data-dir", str(tmp_path / "none")], data),
        "no such directory",
    )


def test_runs_plot_kind_without_arrays_or_plots_is_one_line_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = RunStore(data)
    with store.start_run("calibration.delays") as run:
        run.abort("stopped before measuring")
    one_line_error(invoke(["runs", "plot", run.run_id], data), "nothing to plot", "channels")
    with store.start_run("test.other") as other:
        other.append("x", np.arange(3))
    one_line_error(invoke(["runs", "plot", other.run_id], data), "'test.other' has no plots")
    assert "plots: none\n" in invoke(["runs", "show", run.run_id], data).stdout + "\n"


def test_runs_plot_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rid = record_clock_sync(data)
    afile = tmp_path / "f.png"
    afile.write_text("")
    one_line_error(invoke(["runs", "plot", rid, "--out", str(afile)], data), "--out")


def test_summary_gives_the_plots_folder_and_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = record_clock_sync(tmp_path)
    _print_summary({"run_id": rid, "status": "success"}, str(tmp_path), False, False)
    lines = capsys.readouterr().out.splitlines()
    folder = RunStore(tmp_path).get(rid).data_path.parent / f"{rid}.plots"  # type: ignore[union-attr]
    assert lines[-1].split() == ["plots", f"{folder}/", "(residual.png,", "tdev.png)"]
    _print_summary({"run_id": rid, "status": "success"}, str(tmp_path), False, True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["plots"] == [str(folder / "residual.png"), str(folder / "tdev.png")]
    _print_summary({"run_id": rid, "status": "success"}, str(tmp_path), True, True)
    assert "plots" not in json.loads(capsys.readouterr().out)


def test_plots_after_run_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import qhil.plots

    data = tmp_path / "data"
    rid = record_clock_sync(data)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("renderer\nexploded")

    monkeypatch.setattr(qhil.plots, "write_plots", broken)
    assert _plots_after_run(rid, str(data), False) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"qhil: warning: run {rid}: plots not written (RuntimeError: renderer exploded); "
        f"'qhil runs plot {rid}' retries"
    ]
    assert _plots_after_run(rid, str(data), True) is None  # --no-plots: not even tried
    assert capsys.readouterr().err == ""


def test_plots_after_run_of_a_run_without_arrays_is_silent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RunStore(tmp_path)
    with store.start_run("bb84") as run:
        run.abort("no_data: nothing aligned")
    assert _plots_after_run(run.run_id, str(tmp_path), False) == []
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_calibrate_draws_its_plots_unless_no_plots(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = invoke(["calibrate", "delays", "--json", "--data-dir", str(data)], tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [Path(p).name for p in doc["plots"]] == ["delays.png"]
    assert Path(doc["plots"][0]).is_file()
    r = invoke(["calibrate", "delays", "--json", "--no-plots", "--data-dir", str(data)], tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "plots" not in doc
    record = RunStore(data).get(doc["run_id"])
    assert record.data_path is not None
    assert not (record.data_path.parent / f"{record.run_id}.plots").exists()


def test_a_failing_plot_leaves_the_command_successful(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `qhil calibrate delays` itself (its job replaced by one that records a run):
    plotting raises, the command still exits 0 with its summary, and warns in one line."""
    import qhil.calibration.jobs as jobs
    import qhil.plots
    from qhil.calibration.jobs import CalibrationSummary

    data = tmp_path / "data"
    rid = record_clock_sync(data)

    async def fake_job(*args: Any, **kwargs: Any) -> CalibrationSummary:
        return CalibrationSummary(rid, "calibration.delays", "success")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("no room for the figure")

    monkeypatch.setattr(jobs, "run_delay_calibration", fake_job)
    monkeypatch.setattr(qhil.plots, "write_plots", broken)
    r = invoke(["calibrate", "delays", "--json", "--data-dir", str(data)], tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["run_id"] == rid and doc["status"] == "success" and "plots" not in doc
    assert r.stderr.strip().splitlines() == [
        f"qhil: warning: run {rid}: plots not written (MemoryError: no room for the figure); "
        f"'qhil runs plot {rid}' retries"
    ]
