"""Every run kind's plots, drawn from a record written through the records API alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from qhil.numerics.timing.stability import tdev
from qhil.plots import NothingToPlotError, PlotError, plot_paths, plots_dir, specs_for, write_plots
from qhil.plots.clock_sync import Track, draw_tdev
from qhil.plots.core import new_figure
from qhil.records import RunStore

from .synthetic import (
    TAU0_S,
    clock_sync_truth,
    record_bb84,
    record_calibrations,
    record_clock_sync,
)


def check_png(path: Path, pixels: tuple[int, int]) -> None:
    """The file decodes as a PNG of ``pixels`` (width, height) and is not blank."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert (img.shape[1], img.shape[0]) == pixels
    assert float(img[..., :3].std()) > 0.01  # something was drawn


def moved(data: Path, tmp_path: Path) -> RunStore:
    """The data directory copied elsewhere and the original removed: only the record is left."""
    copy = tmp_path / "elsewhere"
    shutil.copytree(data, copy)
    shutil.rmtree(data)
    return RunStore(copy, readonly=True)


@pytest.mark.slow  # eleven figures: ~4 s, ~15 s on a loaded 2-core host
def test_every_kind_draws_its_plots_from_a_copied_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = record_calibrations(data)
    ids["clock_sync"] = record_clock_sync(data)
    ids["bb84"] = record_bb84(data)
    store = moved(data, tmp_path)
    for kind, run_id in ids.items():
        record = store.get(run_id)
        report = write_plots(record)
        specs = [s for s in specs_for(kind) if s.drawable(record)]
        assert [p.name for p in report.written] == [f"{s.name}.png" for s in specs], kind
        assert report.folder == plots_dir(record)
        assert report.folder.parent == record.data_path.parent  # next to the record
        for spec, path in zip(specs, report.written, strict=True):
            check_png(path, spec.pixels)
        assert plot_paths(record) == sorted(report.written)
        (report.folder / ".blocks-x1y2.png").write_bytes(b"half")  # a write that crashed
        assert plot_paths(record) == sorted(report.written)
    assert [s.name for s in specs_for("clock_sync")] == [
        "residual",
        "tdev",
        "residual_b_to_a",
        "tdev_b_to_a",
    ]
    assert [s.name for s in specs_for("bb84")] == [
        "blocks",
        "intensities",
        "gain",
        "tracking",  # drawn only with drift tracking's rows
        "mean_photon_numbers",
    ]


@pytest.mark.parametrize(
    ("kind", "names"),
    [("bb84.alice", ["intensities", "mean_photon_numbers"]), ("bb84.bob", ["blocks"])],
)
def test_party_runs_draw_their_own_arrays(tmp_path: Path, kind: str, names: list[str]) -> None:
    store = RunStore(tmp_path)
    rid = record_bb84(tmp_path, kind=kind)
    report = write_plots(store.get(rid), tmp_path / "out")
    assert [p.stem for p in report.written] == names
    assert all(p.parent == tmp_path / "out" for p in report.written)


def test_bb84_with_every_block_discarded_still_draws(tmp_path: Path) -> None:
    rid = record_bb84(tmp_path, used=False)
    report = write_plots(RunStore(tmp_path).get(rid))
    assert [p.stem for p in report.written] == [
        "blocks",
        "intensities",
        "gain",
        "mean_photon_numbers",
    ]


def test_gain_pairs_alice_and_bob_rows_by_block(tmp_path: Path) -> None:
    from qhil.plots.bb84 import draw_gain

    record = RunStore(tmp_path).get(record_bb84(tmp_path))
    arrays = dict(record.arrays.items())
    alice, bob = arrays["alice/block"], arrays["bob/block"]
    arrays["alice/block"] = alice[::-1][1:]  # another order, and Alice's block 11 missing
    fig = new_figure((10.0, 7.0))
    draw_gain(record, arrays, fig)
    (points,) = [ln for ln in fig.axes[0].lines if ln.get_label() == "block"]
    pulses = alice["pulses_signal"] + alice["pulses_decoy"] + alice["pulses_vacuum"]
    np.testing.assert_array_equal(points.get_xdata(), np.arange(11))
    np.testing.assert_allclose(points.get_ydata(), (bob["detections"] / pulses)[:11])


def test_polarization_scan_fit_refits_the_recorded_scan(tmp_path: Path) -> None:
    from qhil.calibration.polarization import step_dtype
    from qhil.plots.polarization import draw_scan_fit

    steps = np.zeros(14, dtype=step_dtype(2))
    steps["step"] = np.arange(14)
    steps["phase"] = [0, *[1] * 11, 5, 5]  # start, the scan of v1, verification
    v = np.linspace(-4000, 4000, 11)
    steps["v1_mv"][1:12] = v
    steps["v2_mv"] = 700
    steps["e_z"][1:12] = 0.5 + 0.2 * np.cos(np.pi / 2000 * v - 0.3)
    steps["e_x"][1:12] = 0.4 - 0.1 * np.cos(np.pi / 2000 * v + 1.0)
    store = RunStore(tmp_path)
    with store.start_run("calibration.polarization") as run:
        run.append("steps", steps)
        run.log_results({"half_wave_v1_mv": 2000.0})
    record = store.get(run.run_id)
    fig = new_figure((10.0, 7.0))
    draw_scan_fit(record, dict(record.arrays.items()), fig)
    residuals = [ln.get_ydata() for ln in fig.axes[1].lines if len(ln.get_xdata()) == 11]
    assert len(residuals) == 2
    np.testing.assert_allclose(np.concatenate(residuals), 0.0, atol=1e-9)
    fits = [ln for ln in fig.axes[0].lines if str(ln.get_label()).endswith(" fit")]
    assert [str(ln.get_label()) for ln in fits] == ["e_Z fit", "e_X fit"]


def test_tdev_of_the_error_against_truth_leaves_out_intervals_out_of_lock(tmp_path: Path) -> None:
    cols = clock_sync_truth()
    record = RunStore(tmp_path).get(record_clock_sync(tmp_path, cols))
    arrays = dict(record.arrays.items())
    fig = new_figure((8.0, 6.0))
    draw_tdev(record, arrays, fig)
    curve = fig.axes[0].containers[0].lines[0]  # the first errorbar: tracked - truth
    err = cols["track/offset_tracked_ps"] - cols["track/truth_offset_ps"]
    err[~cols["track/locked"]] = np.nan
    want = tdev(err * 1e-12, TAU0_S)
    some = want.n_terms > 0  # at m = 64 every term touches the gap
    assert not some.all()
    np.testing.assert_allclose(curve.get_xdata(), want.tau_s[some])
    np.testing.assert_allclose(curve.get_ydata(), want.dev[some] * 1e12, rtol=1e-9)


def test_track_puts_missing_intervals_on_the_grid_as_gaps(tmp_path: Path) -> None:
    cols = clock_sync_truth()
    keep = np.ones(cols["track/t_s"].size, dtype=bool)
    keep[50:60] = False  # ten intervals never recorded
    cols = {k: v[keep] for k, v in cols.items()}
    record = RunStore(tmp_path).get(record_clock_sync(tmp_path, cols))
    tr = Track.of(record, dict(record.arrays.items()))
    assert tr.tau0_s == TAU0_S
    grid = tr.on_grid(tr.truth_error)
    assert grid.size == 240
    assert np.isnan(grid[50:60]).all() and np.isnan(grid[100:110]).all()
    assert np.isfinite(grid[:50]).all() and np.isfinite(grid[110:]).all()
    lost, regained = tr.transitions()
    np.testing.assert_allclose(lost, [100.5 * TAU0_S])
    np.testing.assert_allclose(regained, [110.5 * TAU0_S])


def test_two_way_clock_sync_draws_both_directions(tmp_path: Path) -> None:
    cols = clock_sync_truth()
    back = clock_sync_truth(seed=6)
    both = {**cols, **{k.replace("track/", "track_b_to_a/"): v for k, v in back.items()}}
    del both["track_b_to_a/truth_offset_ps"]  # a run without truth that way
    record = RunStore(tmp_path).get(record_clock_sync(tmp_path, both))
    report = write_plots(record)
    names = ["residual", "tdev", "residual_b_to_a", "tdev_b_to_a"]
    assert [p.stem for p in report.written] == names
    arrays = dict(record.arrays.items())
    fig = new_figure((8.0, 6.0))
    draw_tdev(record, arrays, fig, prefix="track_b_to_a")
    (curve,) = [c.lines[0] for c in fig.axes[0].containers]  # no truth that way: measured only
    measured = back["track/offset_measured_ps"]  # TDEV ignores the line the plot removes
    want = tdev((measured - measured[0]) * 1e-12, TAU0_S)  # NaN out of lock
    some = want.n_terms > 0
    np.testing.assert_allclose(curve.get_ydata(), want.dev[some] * 1e12, rtol=1e-6)


def test_clock_sync_without_truth_or_frequency_draws_what_it_has(tmp_path: Path) -> None:
    cols = {
        k: v
        for k, v in clock_sync_truth().items()
        if k not in ("track/truth_offset_ps", "track/frequency_ppb", "track/locked")
    }
    record = RunStore(tmp_path).get(record_clock_sync(tmp_path, cols))
    report = write_plots(record)
    assert [p.stem for p in report.written] == ["residual", "tdev"]


def test_a_plot_with_only_some_of_its_arrays_is_reported_skipped(tmp_path: Path) -> None:
    cols = clock_sync_truth()
    cols["track_b_to_a/t_s"] = cols["track/t_s"]  # the other direction's offsets are missing
    report = write_plots(RunStore(tmp_path).get(record_clock_sync(tmp_path, cols)))
    assert [p.stem for p in report.written] == ["residual", "tdev"]
    why = "missing or empty track_b_to_a/offset_tracked_ps"
    assert report.skipped == [("residual_b_to_a", why), ("tdev_b_to_a", why)]


def test_warnings_of_a_panel_do_not_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI prints one line per problem: matplotlib's and numpy's warnings stay inside."""
    import warnings

    import qhil.plots.core as core

    def draw(record: object, arrays: object, fig: object) -> None:
        ax = fig.subplots()  # type: ignore[attr-defined]
        ax.plot([0, 1], [0, 0])
        ax.set_yscale("log")  # UserWarning: no positive values
        np.nanmedian(np.full(3, np.nan))  # RuntimeWarning: all-NaN slice

    core.registry()
    monkeypatch.setattr(core, "_REGISTRY", list(core._REGISTRY))
    core.add_plot(core.PlotSpec("warns", ("test.warns",), ("x",), "test", draw))
    store = RunStore(tmp_path)
    with store.start_run("test.warns") as run:
        run.append("x", np.arange(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = write_plots(store.get(run.run_id))
    assert [p.stem for p in report.written] == ["warns"]


def test_a_kind_without_plots_is_a_clear_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.start_run("test.unknown") as run:
        run.append("x", np.arange(3))
    with pytest.raises(
        PlotError, match=r"run kind 'test\.unknown' has no plots \(kinds with plots: bb84"
    ):
        write_plots(store.get(run.run_id))


def test_a_run_without_arrays_says_nothing_to_plot(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.start_run("calibration.delays") as run:
        run.abort("stopped before measuring")
    with pytest.raises(NothingToPlotError, match=r"nothing to plot: .*\(channels\); arrays: none"):
        write_plots(store.get(run.run_id))


def test_a_missing_array_file_is_a_plot_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rid = record_calibrations(tmp_path)["calibration.delays"]
    record = store.get(rid)
    assert record.data_path is not None
    record.data_path.unlink()
    with pytest.raises(PlotError, match="cannot read its arrays: .*missing"):
        write_plots(record)


def test_unknown_plot_name_is_refused(tmp_path: Path) -> None:
    rid = record_clock_sync(tmp_path)
    with pytest.raises(
        PlotError,
        match=r"no plot named nope \(its plots: residual, tdev, residual_b_to_a, tdev_b_to_a\)",
    ):
        write_plots(RunStore(tmp_path).get(rid), names=["nope"])
    only = write_plots(RunStore(tmp_path).get(rid), names=["tdev"])
    assert [p.stem for p in only.written] == ["tdev"]


def test_importing_qhil_plots_does_not_import_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, qhil.plots, qhil.cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bands_cover_what_they_say() -> None:
    """The pooled band holds >= 95 % of blocks drawn at the pooled rate (discreteness only
    adds), and the Jeffreys 68 % interval covers the true rate ~68 % of the time; 20000
    seeded draws, two-sided within 4 standard errors."""
    from qhil.plots.core import binomial_band, expected_range

    rng = np.random.default_rng(31)
    n, p, draws = 20_000, 0.01, 20_000
    k = rng.binomial(n, p, size=draws)
    lo, hi = expected_range(p, np.full(draws, n))
    inside = float(np.mean((k / n >= lo) & (k / n <= hi)))
    se = np.sqrt(0.95 * 0.05 / draws)
    assert 0.95 - 4 * se < inside < 0.97, inside
    jlo, jhi = binomial_band(k, np.full(draws, n))
    covered = float(np.mean((jlo <= p) & (p <= jhi)))
    assert abs(covered - 0.6827) < 4 * np.sqrt(0.68 * 0.32 / draws) + 0.01, covered
    assert np.isnan(expected_range(p, [0])[0]).all() and np.isnan(binomial_band([0], [0])[1]).all()
