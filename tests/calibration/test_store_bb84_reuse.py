"""Issue 15 acceptance: consecutive BB84 runs on one emulated bench reuse the polarization
calibration, and recalibrate when it is too old or the fibre changed.

The emulated world restarts at every run: the same seed and link settings give the same
fibre, another seed another fibre. Reuse is honest only if the stored voltages still
compensate the fibre of the new run: the check at those voltages (one verification
evaluation) decides, and the key's own QBER shows it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qhil.orchestrator.jobs import run_bb84_job
from qhil.records import RunRecord, RunStore

pytestmark = pytest.mark.slow


async def _run(tmp_path: Path, *overrides: str) -> RunRecord:
    summary = await run_bb84_job(
        None,
        ["experiments.bb84.verify_mus=false", *overrides],  # CI time: not what is tested
        duration_s=0.05,
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
        insecure_test_seed=15,  # the search's and parties' choices too: deterministic
    )
    assert summary.status == "success", summary.reason
    record = RunStore(tmp_path / "data").get(summary.run_id)
    assert int(record.results["secret_bits"]) > 0
    assert float(record.results["qber_test_signal"]) < 0.02  # the fibre is compensated
    # what qhil run bb84 prints says it too
    assert summary.as_dict()["polarization_calibration"] == record.results["polcal_reuse"]
    return record


async def test_second_run_reuses_then_stale_and_changed_fibre_recalibrate(
    tmp_path: Path,
) -> None:
    first = await _run(tmp_path)
    assert first.results["polcal_reuse"] == "not reused: no polarization calibration recorded"
    assert first.results["calibration_polarization_run"] == first.run_id
    assert int(first.results["polcal_evaluations"]) > 2

    second = await _run(tmp_path)  # the same bench: no compensation step, a reference
    assert str(second.results["polcal_reuse"]).startswith(f"reused run {first.run_id} (")
    assert second.results["calibration_polarization_run"] == first.run_id
    assert "polcal_evaluations" not in second.results
    assert second.results["polcal_check_holds"] is True
    assert float(second.results["polcal_check_e_z"]) < 0.01
    assert float(second.results["polcal_check_e_x"]) < 0.01
    np.testing.assert_array_equal(
        second.arrays["polarization_voltages_mv"], first.arrays["polarization_voltages_mv"]
    )

    # aged past its limit (the settings field): compensated again, from scratch
    stale = await _run(tmp_path, "experiments.bb84.polarization_max_age_s=1e-3")
    assert f"run {first.run_id} is stale" in str(stale.results["polcal_reuse"])
    assert stale.results["calibration_polarization_run"] == stale.run_id
    assert int(stale.results["polcal_evaluations"]) > 2

    # another fibre (another world seed), same instruments: the check catches it
    changed = await _run(tmp_path, "bench.seed=7")
    reason = str(changed.results["polcal_reuse"])
    assert reason.startswith(f"not reused: run {stale.run_id}: contradicted by the data: ")
    assert changed.results["polcal_check_holds"] is False
    assert changed.results["calibration_polarization_run"] == changed.run_id
    assert int(changed.results["polcal_evaluations"]) > 2
