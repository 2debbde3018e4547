"""The mount-zero fringe fit and routine, on synthetic counts and stand-in mounts."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from scipy.stats import norm

from qhil.calibration.errors import CalibrationError
from qhil.calibration.mount_zero import (
    calibrate_mount_zero,
    correlations,
    fit_fringe,
    scan_angles,
    wrap_deg,
)

# Detector efficiencies of the entanglement bench (alice H, V; bob H, V): a mismatch the
# fit must not mistake for a phase.
ETA = np.array([0.82 * 0.84, 0.82 * 0.78, 0.79 * 0.84, 0.79 * 0.78])


def fringe_counts(
    rng: np.random.Generator, angles: np.ndarray, zero: float, vis: float, pairs: float
) -> np.ndarray:
    e = vis * np.cos(4.0 * np.radians(angles - zero))
    p = np.column_stack([(1 + e) / 4, (1 - e) / 4, (1 - e) / 4, (1 + e) / 4]) * ETA
    return rng.poisson(pairs * p)


def test_correlation_of_known_counts() -> None:
    e, std, n = correlations([[40, 10, 10, 40], [0, 50, 50, 0]])
    assert e.tolist() == [0.6, -1.0]
    assert n.tolist() == [100, 100]
    assert std[0] == pytest.approx(np.sqrt((1 - 0.36) / 100))
    assert std[1] > 0  # a perfect anticorrelation still has an error


def test_noise_free_fringe_gives_the_zero_exactly() -> None:
    angles = scan_angles(12)
    for zero in (0.0, 13.7, 44.9, 89.2):
        e = 0.95 * np.cos(4 * np.radians(angles - zero))
        counts = np.round(1e6 * np.column_stack([1 + e, 1 - e, 1 - e, 1 + e])).astype(np.int64)
        fit = fit_fringe(angles, counts)
        assert abs(wrap_deg(fit.zero_deg - zero)) < 1e-3
        assert fit.amplitude == pytest.approx(0.95, abs=1e-5)
        assert 0.0 <= fit.zero_deg < 90.0


def test_zero_errors_are_honest_over_seeds() -> None:
    """Normalised deviations of the zero over 400 synthetic scans: mean 0 and rms 1 within
    99.9 % two-sided bounds, with the bench's detector mismatch."""
    rng = np.random.default_rng(20261207)
    angles = scan_angles(12)
    pulls = []
    for _ in range(400):
        zero = rng.uniform(0, 90)
        fit = fit_fringe(angles, fringe_counts(rng, angles, zero, 0.93, 400.0))
        pulls.append(wrap_deg(fit.zero_deg - zero) / fit.zero_std_deg)
    z = np.asarray(pulls)
    q = norm.ppf(0.9995)
    assert abs(z.mean()) < q / np.sqrt(z.size)
    # rms of 400 unit normals: 1 +- q / sqrt(2 n); the errors may only be inflated by
    # sqrt(chi2/dof) > 1 (a few %), never too small.
    assert 1 - q / np.sqrt(2 * z.size) < np.sqrt(np.mean(z**2)) < 1 + q / np.sqrt(2 * z.size)


def test_fit_refuses_too_few_points() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        fit_fringe([0, 10, 20], [[10, 10, 10, 10]] * 3)
    with pytest.raises(ValueError, match="do not span"):
        fit_fringe([0, 90, 180, 270], [[40, 10, 10, 40]] * 4)


class FakeMount:
    def __init__(self, read_error_deg: float = 0.0) -> None:
        self.angle = 0.0
        self.read_error = read_error_deg
        self.moves: list[float] = []

    async def home(self) -> None:
        self.angle = 0.0

    async def move_to_deg(self, angle_deg: float) -> None:
        self.angle = angle_deg % 360.0
        self.moves.append(self.angle)

    async def position_deg(self) -> float:
        return (self.angle + self.read_error) % 360.0


def make_counter(
    mount: FakeMount,
    ref: FakeMount,
    offset: float,
    ref_offset: float,
    vis: float,
    seed: int,
    da_shift: float = 0.0,
):  # type: ignore[no-untyped-def]
    """Coincidences of |phi+> through the two plates; ``da_shift`` moves the D/A fringe (what
    an elliptical rotation in a fibre does), which |phi+> through compensated fibres cannot."""
    rng = np.random.default_rng(seed)

    def four(c: np.ndarray) -> tuple[int, int, int, int]:
        return int(c[0]), int(c[1]), int(c[2]), int(c[3])

    async def count(integration_s: float):  # type: ignore[no-untyped-def]
        # Plates' axes: mount angle + how each sits in its mount; only the difference counts.
        rel = np.array([(mount.angle + offset) - (ref.angle + ref_offset)])
        hv = fringe_counts(rng, rel, 0.0, vis, 2000 * integration_s)[0]
        da = fringe_counts(rng, rel, da_shift, vis, 2000 * integration_s)[0]
        return four(hv), four(da), 1.5

    return count


def test_routine_finds_the_relative_zero_and_leaves_the_mount_there() -> None:
    mount, ref = FakeMount(), FakeMount()
    count = make_counter(mount, ref, offset=1.7, ref_offset=-0.8, vis=0.95, seed=3)
    seen: list[float] = []

    async def on_point(p) -> None:  # type: ignore[no-untyped-def]
        seen.append(p.angle_deg)

    cal = asyncio.run(
        calibrate_mount_zero(mount, ref, count, reference_angle_deg=5.0, on_point=on_point)
    )
    # Max where mount + 1.7 = 5 - 0.8: zero 2.5 deg.
    truth = 5.0 - 0.8 - 1.7
    assert abs(wrap_deg(cal.zero_deg - truth)) < 3.29 * cal.zero_std_deg
    assert ref.moves == [5.0]
    assert mount.angle == pytest.approx(cal.zero_deg)
    assert len(seen) == 12 and cal.rows().size == 12
    res = cal.to_results()
    assert res["zero_alice_deg"] == cal.zero_deg and res["zero_bob_deg"] == 5.0
    assert res["zero_std_deg"] == cal.zero_std_deg > 0
    # The D/A fringe agrees (|phi+>, compensated): within 3.29 sigma.
    assert abs(wrap_deg(res["da_zero_deg"] - truth)) < 3.29 * res["da_zero_std_deg"]
    assert res["hv_da_difference_sigma"] < 3.29
    rows = cal.rows()
    assert rows["dd"].tolist() == [p.da_counts[0] for p in cal.points]
    assert np.all(np.isfinite(rows["da_model"])) and np.all(np.isfinite(rows["model"]))


def test_a_d_a_fringe_elsewhere_is_reported() -> None:
    """An elliptical rotation left in a fibre moves the D/A fringe: the calibration fails
    (max_hv_da_sigma 5); reported only, the zero stays the H/V fringe's (the definition) and
    the disagreement shows, far beyond its error."""
    mount, ref = FakeMount(), FakeMount()
    count = make_counter(mount, ref, offset=0.0, ref_offset=0.0, vis=0.95, seed=9, da_shift=6.0)
    with pytest.raises(CalibrationError, match=r"D/A fringe .* disagrees .* compensate"):
        asyncio.run(calibrate_mount_zero(mount, ref, count))
    mount, ref = FakeMount(), FakeMount()
    count = make_counter(mount, ref, offset=0.0, ref_offset=0.0, vis=0.95, seed=9, da_shift=6.0)
    cal = asyncio.run(calibrate_mount_zero(mount, ref, count, max_hv_da_sigma=None))
    res = cal.to_results()
    assert abs(wrap_deg(res["zero_deg"])) < 3.29 * res["zero_std_deg"]
    assert res["hv_da_difference_deg"] == pytest.approx(
        6.0, abs=5 * res["hv_da_difference_std_deg"]
    )
    assert res["hv_da_difference_sigma"] > 5


def test_routine_fits_the_angles_the_mount_reports() -> None:
    """A mount whose encoder reads 0.5 deg high: the zero is in its own reading."""
    mount, ref = FakeMount(read_error_deg=0.5), FakeMount()
    count = make_counter(mount, ref, offset=-20.0, ref_offset=0.0, vis=0.97, seed=4)
    cal = asyncio.run(calibrate_mount_zero(mount, ref, count, integration_s=2.0))
    assert abs(wrap_deg(cal.zero_deg - (20.0 + 0.5))) < 3.29 * cal.zero_std_deg


def test_no_fringe_is_a_calibration_error() -> None:
    mount, ref = FakeMount(), FakeMount()
    count = make_counter(mount, ref, offset=0.0, ref_offset=0.0, vis=0.0, seed=5)
    with pytest.raises(CalibrationError, match="below min_visibility"):
        asyncio.run(calibrate_mount_zero(mount, ref, count))


def _record(store, identities, node, ref, zero, status="success"):  # type: ignore[no-untyped-def]
    mount = FakeMount()
    count = make_counter(mount, FakeMount(), offset=-zero, ref_offset=0.0, vis=0.95, seed=8)
    cal = asyncio.run(
        calibrate_mount_zero(mount, FakeMount(), count, node=node, reference_node=ref)
    )
    with store.start_run("calibration.mount_zero", identities=identities) as run:
        run.append("points", cal.rows())
        run.log_results(cal.to_results())
        run.finish(status)
    return cal


def test_experiments_read_the_latest_zeros_of_their_bench(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qhil.calibration.mount_zero import latest_mount_zeros
    from qhil.records import RunStore

    store = RunStore(tmp_path)
    ids = {"alice.hwp": "ELL14 1", "bob.hwp": "ELL14 2"}
    assert latest_mount_zeros(tmp_path, ids) is None
    _record(store, ids, "alice", "bob", 10.0)
    newest = _record(store, ids, "bob", "alice", 33.0)
    _record(store, ids, "alice", "bob", 50.0, status="failed")  # never used
    _record(store, {**ids, "bob.hwp": "ELL14 9"}, "alice", "bob", 70.0)  # another mount
    zeros = latest_mount_zeros(tmp_path, ids)
    assert zeros is not None
    assert zeros.zeros_deg == {"bob": newest.zero_deg, "alice": 0.0}
    assert zeros.zeros_std_deg["bob"] == newest.zero_std_deg > 0
    assert zeros.zeros_std_deg["alice"] == 0.0
    assert zeros.mounts == {"bob": "hwp", "alice": "hwp"}
    assert zeros.angle_for("bob", 22.5) == pytest.approx((newest.zero_deg + 22.5) % 360)
    assert latest_mount_zeros(tmp_path, ids, max_age_s=-1.0) is None  # too old


@pytest.mark.slow  # matplotlib's first figure: 3-5 s on a loaded host
def test_fringe_plot_from_a_copy_of_the_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from qhil.plots import write_plots
    from qhil.records import RunStore

    _record(RunStore(tmp_path / "a"), {}, "alice", "bob", 21.0)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (rec,) = RunStore(tmp_path / "b", readonly=True).list_runs()
    report = write_plots(rec, out_dir=tmp_path / "png")
    assert [p.name for p in report.written] == ["fringe.png"]
    assert (tmp_path / "png" / "fringe.png").stat().st_size > 10_000


def test_a_stored_clock_correction_seeds_the_frequency(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The jobs' prior: the stored clock-sync correction of these two taggers (by their
    'node.instrument' names), unless switched off or expired."""
    from types import SimpleNamespace

    from qhil.calibration.entanglement_jobs import MountZeroSettings, _stored_prior
    from qhil.numerics.timing import ClockModel
    from qhil.orchestrator.experiments.clock_sync.corrections import save_correction

    bench = SimpleNamespace(name="ent-bench")
    nodes = SimpleNamespace(
        alice_tagger=SimpleNamespace(name="alice.tagger"),
        bob_tagger=SimpleNamespace(name="bob.tagger"),
    )
    on = MountZeroSettings()
    assert _stored_prior(bench, on, nodes, tmp_path) == (None, None)  # type: ignore[arg-type]
    result = SimpleNamespace(
        model=ClockModel(1234.0, -3.9e-5, 0),
        offset_stderr_ps=20.0,
        drift_stderr=1e-13,  # valid for 1 ns / 1e-13 = 10^4 s
        method="one-way",
        delay_ps=None,
    )
    save_correction(tmp_path, "ent-bench", ("alice.tagger", "bob.tagger"), result, run_id="r1")
    model, run_id = _stored_prior(bench, on, nodes, tmp_path)  # type: ignore[arg-type]
    assert run_id == "r1" and model is not None and model.drift == -3.9e-5
    off = MountZeroSettings(use_clock_correction=False)
    assert _stored_prior(bench, off, nodes, tmp_path) == (None, None)  # type: ignore[arg-type]
