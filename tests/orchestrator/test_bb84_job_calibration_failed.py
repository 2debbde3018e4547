"""A polarization compensation that fails on the bench (no light reaches Bob over 500 km
of fibre) aborts the BB84 run (recorded aborted, reason calibration_failed, CLI exit 3)
instead of being reported as a bad profile field with exit 2: the profile was fine."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from qhil.cli import main
from qhil.orchestrator.jobs import run_bb84_job
from qhil.records import KeyStore, RunStore

NO_LIGHT = [
    "world.links.alice-bob.length_km=500",  # 100 dB: nothing reaches the detectors
    "experiments.bb84.verify_mus=false",  # Alice's levels are fine; skip to the compensation
]


async def test_failed_compensation_aborts_the_recorded_run(tmp_path: Path) -> None:
    summary = await run_bb84_job(
        None, NO_LIGHT, duration_s=0.05, data_dir=tmp_path / "data", key_dir=tmp_path / "keys"
    )
    assert summary.status == "aborted"
    assert summary.reason is not None
    assert summary.reason.startswith("calibration_failed: polarization compensation failed: ")
    record = RunStore(tmp_path / "data").get(summary.run_id)
    assert record.status == "aborted"
    assert record.reason == summary.reason
    assert KeyStore(tmp_path / "keys").list_keys() == []


def test_cli_exits_3_on_a_failed_compensation(tmp_path: Path) -> None:
    args = ["run", "bb84", "--json", "--duration", "0.05", "--data-dir", str(tmp_path)]
    for o in NO_LIGHT:
        args += ["--set", o]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 3, out.output
    summary = json.loads(out.stdout)
    assert summary["status"] == "aborted"
    assert summary["reason"].startswith("calibration_failed: ")
