"""Drift tracking after a reused polarization calibration starts from the check that
confirmed it (its error rates as the expectation) and the stored half-wave voltages, not
from the first key block, which may already have drifted (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhil.calibration.binomial import ErrorFraction
from qhil.calibration.polarization import PolarizationMeasurement
from qhil.calibration.settings import PolarizationSettings
from qhil.calibration.store import reuse
from qhil.orchestrator.experiments.bb84.tracking import BobTracking, QberWatch
from qhil.records import RunStore

BENCH = {"bob.polctrl": "EPC-400,SN42,2.1"}
STORED = {
    "target_met": True,
    "stop_reason": "target met",
    **{f"v{i}_mv": v for i, v in enumerate((100, -200, 0, 5), start=1)},
    **{f"half_wave_v{i}_mv": hw for i, hw in enumerate((3100.0, 2900.0, 3050.0, 3000.0), 1)},
    "e_z_after": 0.004,  # its own verification: 16 of 4000 under H, 5 of 1000 under D
    "e_z_after_clicks": 4000,
    "e_x_after": 0.005,
    "e_x_after_clicks": 1000,
}


class _Controller:
    channels = 4

    async def set_voltages_mv(self, v: list[int]) -> None:
        self.v = v


async def test_a_reused_calibration_starts_tracking_from_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = RunStore(tmp_path)
    first = runs.start_run("calibration.polarization", profile={"bench": {"name": "t"}}, seed=1)
    first.set_identities(BENCH)
    first.log_results(STORED)
    first.finish("success")
    # the check at the stored voltages: H then D reference counts (H, V, D, A)
    check = PolarizationMeasurement(
        (100, -200, 0, 5), (5000, 30, 2500, 2500), (2500, 2500, 5000, 30), 0.02
    )

    async def measure_at(*args: Any, **kwargs: Any) -> PolarizationMeasurement:
        return check

    monkeypatch.setattr(reuse, "measure_at", measure_at)
    ps = PolarizationSettings(channel_map={"H": 1, "V": 2, "D": 3, "A": 4}, rep_rate_hz=1e5)
    with runs.start_run("bb84", profile={"bench": {"name": "t"}}, seed=1) as run:
        start = await reuse.reuse_stored_polarization(
            runs,
            BENCH,
            3600.0,
            None,
            None,
            _Controller(),
            ps,
            run,  # type: ignore[arg-type]
        )
    assert start is not None
    assert runs.get(run.run_id).results["calibration_polarization_run"] == first.run_id
    tracking = BobTracking(ps, _Controller(), start)  # type: ignore[arg-type]
    watch = QberWatch(1e-3, ps.confidence)
    watch.expect_from(start)
    # the expectation is not the first block's: per basis the lower upper bound of the
    # stored verification (Z: 16/4000 beats the check's 30/5030) and the check (X: 30/5030
    # beats 5/1000)
    assert watch.expected == (
        ErrorFraction(16, 4000).upper(ps.confidence),
        check.e_x.upper(ps.confidence),
    )
    v = watch.check(0, np.asarray([400, 400]), np.asarray([12, 14]))  # a drifted first block
    assert v.triggered
    # a re-compensation skips the scan: the stored half-wave voltages are given
    assert tracking.search_settings().half_wave_voltage_mv == [3100.0, 2900.0, 3050.0, 3000.0]
