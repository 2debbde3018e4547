"""Issue 15 acceptance: consecutive BB84 runs on one emulated bench reuse the polarization
calibration, and recalibrate when it is too old or the fibre changed.

The emulated world restarts at every run: the same seed and link settings give the same
fibre, another seed another fibre. Reuse is honest only if the stored voltages still
compensate the fibre of the new run: the check at those voltages (one verification
evaluation) decides, and the key's own QBER shows it.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.jobs import JobSummary, run_bb84_job, run_bb84_party_job
from qhil.orchestrator.profile import load_profile
from qhil.records import RunRecord, RunStore

NO_MU = ["experiments.bb84.verify_mus=false"]  # CI time: not what is tested

pytestmark = pytest.mark.slow


async def _run(tmp_path: Path, *overrides: str) -> RunRecord:
    summary = await run_bb84_job(
        None,
        [*NO_MU, *overrides],
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_party_mode_bob_starts_from_his_stored_calibration_and_only_verifies(
    tmp_path: Path,
) -> None:
    """Party mode, on a bench that keeps running between runs (as a lab's): Bob's second run
    starts his compensation over the channel at the first run's voltages, meets the target
    there and only verifies (2 evaluations), recorded as a reuse of the first run."""
    key = tmp_path / "psk.hex"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    common: dict[str, Any] = {
        "auth_key_file": key,
        "duration_s": 0.05,
        "data_dir": tmp_path / "data",
        "peer_timeout_s": 120.0,
    }

    async def both(lab: str) -> tuple[JobSummary, JobSummary]:
        port = _free_port()
        alice, bob = await asyncio.gather(
            run_bb84_party_job("alice", lab, NO_MU, listen=f"127.0.0.1:{port}", **common),
            run_bb84_party_job("bob", lab, NO_MU, connect=f"127.0.0.1:{port}", **common),
        )
        assert alice.status == bob.status == "success", (alice.reason, bob.reason)
        assert bob.results["secret_bits"] > 0
        return alice, bob

    with EmulatedBench(load_profile()) as bench:
        lab = tmp_path / "lab.toml"
        lab.write_bytes(tomli_w.dumps(bench.addressed_profile()).encode())
        _, first = asyncio.run(both(str(lab)))
        _, second = asyncio.run(both(str(lab)))
    store = RunStore(tmp_path / "data")
    one, two = store.get(first.run_id), store.get(second.run_id)
    assert one.results["polcal_reuse"] == "not reused: no polarization calibration recorded"
    assert one.results["calibration_polarization_run"] == one.run_id
    assert int(one.results["polcal_evaluations"]) > 2
    assert str(two.results["polcal_reuse"]).startswith(f"reused run {one.run_id} (")
    assert two.results["calibration_polarization_run"] == one.run_id
    assert int(two.results["polcal_evaluations"]) == 2  # the start (the check) and the verify
    assert two.results["polcal_check_holds"] is True
    assert second.as_dict()["polarization_calibration"] == two.results["polcal_reuse"]


async def test_an_aborted_runs_summary_names_its_polarization_calibration(
    tmp_path: Path,
) -> None:
    summary = await run_bb84_job(
        None,
        [*NO_MU, "experiments.bb84.polarization_max_age_s=0", "experiments.bb84.max_qber=0.0001"],
        duration_s=0.05,
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
        insecure_test_seed=15,
    )
    assert summary.status == "aborted", summary.reason
    shown = summary.as_dict()["polarization_calibration"]
    assert shown == "not reused: polarization_max_age_s = 0"
