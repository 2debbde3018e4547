"""The calibration store: typed calibrations read from recorded runs, the latest valid one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from qhil.calibration.store import (
    CalibrationStore,
    Quantity,
    kind_for,
    pair_quantities,
)
from qhil.records import RunStore

BENCH = {"alice.awg": "KEYSIGHT,33622B,MY0001,1.0", "bob.polctrl": "EPC-400,SN42,2.1"}


def _record(
    store: RunStore,
    kind: str,
    results: dict[str, Any],
    identities: dict[str, str] | None = None,
    status: str = "success",
) -> str:
    run = store.start_run(kind, profile={"bench": {"name": "t"}}, seed=1)
    run.set_identities(identities if identities is not None else BENCH)
    run.log_results(results)
    run.finish(status, None if status == "success" else "test")
    return run.run_id


POLCAL = {
    "target_met": True,
    "v1_mv": 100,
    "v2_mv": -200,
    "v3_mv": 0,
    "v4_mv": 5,
    "e_z_after": 0.004,
    "e_z_after_std": 0.001,
    "stop_reason": "target met",
}


def test_errors_are_paired_by_name_and_not_quantities_themselves() -> None:
    q = pair_quantities(
        {
            "relative_h": 1.02,
            "relative_h_std": 0.01,
            "delay_v_ps": 12.0,
            "delay_v_std_ps": 3.0,
            "offset_ps": 5.0,
            "offset_stderr_ps": 0.5,
            "mu_0": 0.5,
            "flag": True,
            "name": "x",
        }
    )
    assert q == {
        "relative_h": Quantity(1.02, 0.01),
        "delay_v_ps": Quantity(12.0, 3.0),
        "offset_ps": Quantity(5.0, 0.5),
        "mu_0": Quantity(0.5, None),
    }
    assert set(pair_quantities({"relative_h": 1.0, "chi2": 3.0}, ("relative_?",))) == {"relative_h"}


def test_latest_valid_polarization_from_calibration_and_bb84_runs(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    cs = CalibrationStore(runs)
    assert cs.find("polarization", identities=BENCH, max_age_s=3600).reason == (
        "no polarization calibration recorded"
    )
    first = _record(runs, "calibration.polarization", POLCAL)
    # a bb84 run that compensated holds it under polcal_ (and its other results are not it)
    second = _record(runs, "bb84", {"qber": 0.01, **{f"polcal_{k}": v for k, v in POLCAL.items()}})
    _record(runs, "bb84", {"qber": 0.01})  # did not compensate: not a calibration
    found = cs.find("polarization", identities=BENCH, max_age_s=3600)
    assert found.calibration is not None and found.calibration.run_id == second
    cal = found.calibration
    assert cal.kind == "polarization" and cal.run_kind == "bb84" and cal.schema == 1
    assert cal.value("v2_mv") == -200 and cal.quantities["e_z_after"].std == 0.001
    assert "qber" not in cal.quantities and cal.identities == BENCH
    assert [c.run_id for c in cs.history("polarization")] == [first, second]


def test_not_reused_for_other_instruments_stale_failed_or_target_missed(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    cs = CalibrationStore(runs)
    rid = _record(runs, "calibration.polarization", POLCAL)
    other = {**BENCH, "bob.polctrl": "EPC-400,SN43,2.1"}
    found = cs.find("polarization", identities=other, max_age_s=3600)
    assert found.calibration is None
    assert found.reason == f"run {rid} was made with other instruments (bob.polctrl)"
    later = datetime.now(UTC) + timedelta(hours=2)
    found = cs.find("polarization", identities=BENCH, max_age_s=3600, now=later)
    assert found.calibration is None and "is stale" in found.reason
    assert cs.latest("polarization", identities=BENCH, max_age_s=3 * 3600, now=later)
    # a newer run that missed its target or failed is never used; the older valid one is
    missed = _record(runs, "calibration.polarization", {**POLCAL, "target_met": False})
    _record(runs, "calibration.polarization", POLCAL, status="failed")
    cal = cs.latest("polarization", identities=BENCH, max_age_s=3600)
    assert cal is not None and cal.run_id == rid
    assert [c.run_id for c in cs.history("polarization", include_unusable=True)][:2] == [
        rid,
        missed,
    ]


def test_a_new_calibration_is_a_kind_without_registration(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    _record(runs, "calibration.mount_zero", {"zero_deg": 3.5, "zero_std_deg": 0.2})
    assert kind_for("mount_zero").sources == {"calibration.mount_zero": ""}
    (cal,) = CalibrationStore(runs).history("mount_zero")
    assert cal.quantities == {"zero_deg": Quantity(3.5, 0.2)}


def test_clock_and_mean_photon_number_kinds_read_their_runs(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    _record(
        runs,
        "clock_sync",
        {
            "method": "two-way",
            "offset_ps": 1250.0,
            "offset_stderr_ps": 3.5,
            "frequency_offset_ppb": 12.0,
            "frequency_offset_stderr_ppb": 0.2,
            "path_delay_s": 4.9e-5,
            "path_delay_stderr_s": 1e-11,
            "coincidences": 9000,
        },
    )
    _record(runs, "bb84", {"mucal_mu_0": 0.5, "mucal_mu_0_std": 0.02, "mucal_mu_0_lo": 0.45})
    cs = CalibrationStore(runs)
    (clock,) = cs.history("clock")
    assert clock.quantities == {
        "offset_ps": Quantity(1250.0, 3.5),
        "frequency_offset_ppb": Quantity(12.0, 0.2),
        "path_delay_s": Quantity(4.9e-5, 1e-11),
    }
    assert clock.extra == {"method": "two-way"}
    (mu,) = cs.history("mean_photon_number")
    assert mu.quantities == {"mu_0": Quantity(0.5, 0.02)}


async def test_max_age_zero_compensates_without_looking(tmp_path: Path) -> None:
    from qhil.calibration.store.reuse import reuse_stored_polarization

    runs = RunStore(tmp_path)
    _record(runs, "calibration.polarization", POLCAL)
    with runs.start_run("bb84", profile={"bench": {"name": "t"}}, seed=1) as run:
        # no instrument is touched: None stands for each (an access would raise)
        used = await reuse_stored_polarization(
            runs,
            BENCH,
            0.0,
            None,
            None,
            None,
            None,
            run,  # type: ignore[arg-type]
        )
    assert used is None
    assert runs.get(run.run_id).results["polcal_reuse"] == (
        "not reused: polarization_max_age_s = 0"
    )


def test_a_party_run_that_only_verified_is_not_a_new_calibration(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    bob = {"bob.polctrl": BENCH["bob.polctrl"]}
    first = _record(runs, "bb84.bob", {f"polcal_{k}": v for k, v in POLCAL.items()}, bob)
    verified = {**POLCAL, "reuse": f"reused run {first} (5 s old), checked over the channel"}
    _record(runs, "bb84.bob", {f"polcal_{k}": v for k, v in verified.items()}, bob)
    cal = CalibrationStore(runs).latest("polarization", identities=bob, max_age_s=3600)
    assert cal is not None and cal.run_id == first  # its age counts from the measurement


def test_an_aborted_bb84_run_keeps_its_compensation_a_calibration_run_does_not(
    tmp_path: Path,
) -> None:
    runs = RunStore(tmp_path)
    _record(runs, "calibration.polarization", POLCAL, status="aborted")
    cs = CalibrationStore(runs)
    found = cs.find("polarization", identities=BENCH, max_age_s=3600)
    assert found.calibration is None and found.reason.endswith("ended aborted")
    # compensated (target met) before the key exchange, which then aborted (no_key)
    bb84 = _record(runs, "bb84", {f"polcal_{k}": v for k, v in POLCAL.items()}, status="aborted")
    found = cs.find("polarization", identities=BENCH, max_age_s=3600)
    assert found.calibration is not None and found.calibration.run_id == bb84
    missed = {**POLCAL, "target_met": False}
    _record(runs, "bb84", {f"polcal_{k}": v for k, v in missed.items()}, status="aborted")
    found = cs.find("polarization", identities=BENCH, max_age_s=3600)
    assert found.calibration is not None and found.calibration.run_id == bb84
    assert cs.history("polarization", include_unusable=True)[-1].extra["target_met"] is False


def test_drift_trackings_last_recompensation_is_the_runs_calibration(tmp_path: Path) -> None:
    from qhil.calibration.polarization import PolarizationCalibration, PolarizationMeasurement
    from qhil.orchestrator.experiments.bb84.tracking import BobTracking, tracked_polarization

    m = PolarizationMeasurement((7, 8, 9, 10), (5000, 20, 2500, 2500), (2500, 2500, 5000, 30), 0.02)
    last = PolarizationCalibration(
        voltages_mv=(7, 8, 9, 10),
        start_voltages_mv=(100, -200, 0, 5),
        before=m,
        after=m,
        target_error=0.01,
        confidence=0.95,
        target_met=True,
        stop_reason="target met",
        half_wave_voltages_mv=(3000.0,) * 4,
        half_wave_voltage_sources=("given",) * 4,
        half_wave_voltage_stds_mv=None,
        acquisitions=12,
        settle_gates=0,
        steps=(),
    )
    tracking = BobTracking(None, None, last)  # type: ignore[arg-type]
    assert tracked_polarization(tracking) == {}  # no re-compensation: nothing new
    tracking.recompensations = 1
    runs = RunStore(tmp_path)
    results = {f"polcal_{k}": v for k, v in POLCAL.items()}
    run_id = _record(runs, "bb84", {**results, **tracked_polarization(tracking)})
    cal = CalibrationStore(runs).latest("polarization", identities=BENCH, max_age_s=3600)
    assert cal is not None and cal.run_id == run_id
    assert [cal.value(f"v{i}_mv") for i in range(1, 5)] == [7, 8, 9, 10]
    assert cal.value("half_wave_v1_mv") == 3000.0


def test_polarization_max_age_must_be_a_number(tmp_path: Path) -> None:
    import pytest

    from qhil.errors import QhilError
    from qhil.orchestrator.jobs import bb84_settings
    from qhil.orchestrator.profile import load_profile

    key = "experiments.bb84.polarization_max_age_s"
    for bad in ("true", '"10"'):
        with pytest.raises(QhilError, match=key):
            bb84_settings(load_profile(None, [f"{key}={bad}"]), 1.0)
    assert bb84_settings(load_profile(None, [f"{key}=10"]), 1.0).polarization_max_age_s == 10.0
