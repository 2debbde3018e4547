"""The recorded BB84 job names the likely cause when no block can be aligned.

On the default emulated bench (its fibre starts at a random polarization) with
``experiments.bb84.calibrate_polarization = false``, every block is discarded; the
run's abort reason (what ``qhil run bb84`` prints) must say the polarization was not
compensated, and what compensates it. Before, it said only "none of N blocks could be
aligned".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qhil.orchestrator.jobs import run_bb84_job
from qhil.records import RunStore

pytestmark = pytest.mark.slow


async def test_uncompensated_bench_abort_names_the_polarization(tmp_path: Path) -> None:
    summary = await run_bb84_job(
        None,
        ["experiments.bb84.calibrate_polarization=false"],
        duration_s=0.2,  # two 100 ms blocks, both discarded: the cause counted over blocks
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
    )
    assert summary.status == "aborted"
    assert summary.reason is not None
    assert summary.reason.startswith("no_data: ")
    assert "could be aligned; likely cause (2 of 2 discarded blocks): polarization not " in (
        summary.reason
    )
    assert "calibrate_polarization = true compensates it" in summary.reason
    # The run record carries the same reason.
    record = RunStore(tmp_path / "data").get(summary.run_id)
    assert record.reason == summary.reason
