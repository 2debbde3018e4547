"""BBM92 end to end on the emulated entanglement bench (the issue's acceptance).

One fixed seed each; statistical comparisons two-sided at 99.9 %.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from qhil.orchestrator.experiments.bbm92.job import run_bbm92_job
from qhil.records import KeyStore, RunStore

from .support import PROFILE, Z999, overrides

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_identical_keys_and_the_ma_fung_lo_prediction(tmp_path: Path) -> None:
    summary = await run_bbm92_job(
        PROFILE,
        overrides(),
        duration_s=2.0,
        data_dir=tmp_path,
        key_dir=tmp_path / "keys",
        insecure_test_seed=7,
    )
    r = summary.results
    assert summary.status == "success", summary.reason
    assert r["key_committed"] and r["secret_bits"] > 0
    assert r["alice_key_sha256"] == r["bob_key_sha256"]
    keys = KeyStore(tmp_path / "keys")
    stored = keys.list_keys()
    assert len(stored) == 2 and {k.sha256 for k in stored} == {r["alice_key_sha256"]}
    a, b = (keys.load(k.key_id) for k in stored)
    assert a == b
    # Sifted rate: Poisson count over the acquisition; QBER: binomial over both bases.
    t, n = r["acquisition_s"], r["sifted_bits"]
    assert abs(r["sifted_rate_hz"] - r["predicted_sifted_rate_hz"]) < Z999 * math.sqrt(n) / t
    q0 = r["predicted_qber"]
    assert abs(r["qber"] - q0) < Z999 * math.sqrt(q0 * (1 - q0) / n)
    record = RunStore(tmp_path, readonly=True).get(summary.run_id)
    assert record.status == "success"
    # no mount-zero calibration in this data directory: the table's zeros were used
    assert r["mount_zero_source"].startswith("settings")
    assert f"experiments.bbm92.alice_mount_zero_deg={r['alice_mount_zero_deg']!r}" in overrides()


async def test_intercept_resend_on_one_arm_aborts_with_no_key(tmp_path: Path) -> None:
    summary = await run_bbm92_job(
        PROFILE,
        overrides("world.links.source-bob.eavesdropper.fraction=1.0"),
        duration_s=0.5,
        data_dir=tmp_path,
        key_dir=tmp_path / "keys",
    )
    assert summary.status == "aborted"
    assert summary.reason is not None and summary.reason.startswith("qber_too_high")
    r = summary.results
    # 25 % + (1 - V)/4 (world README): far over 11 %
    assert r["qber_test"] > 0.2 and r["secret_bits"] == 0 and not r["key_committed"]
    keys = KeyStore(tmp_path / "keys")
    assert keys.list_keys() == [] and keys.pending_keys() == []
