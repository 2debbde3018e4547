"""`qhil run bb84` end to end on the default emulated bench, through every driver and emulator.

These runs take tens of seconds (real drivers, real wire protocols, the world's
physics), so they are marked slow; CI runs them.
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from qhil.orchestrator.jobs import bb84_settings, run_bb84_job
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

pytestmark = pytest.mark.slow


def _store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "data")


def test_run_bb84_cli_gives_equal_verified_keys(tmp_path: Path) -> None:
    env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path / "data")}
    cmd = [
        sys.executable,
        "-m",
        "qhil.cli",
        "run",
        "bb84",
        # The README's short run: the default 0.5 s runs in CI's scripts/check_wheel.sh; 0.1 s
        # is one 100 ms block, so blocks_used >= 0.9 blocks loses none.
        "--duration",
        "0.1",
        "--json",
        "--key-dir",
        str(tmp_path / "keys"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "success"
    assert summary["secret_bits"] > 0 and summary["sifted_bits"] > summary["secret_bits"]
    assert summary["alice_key_sha256"] == summary["bob_key_sha256"] is not None
    # The key bits are in the key store only: files readable by their owner alone.
    key_files = [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]
    assert key_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)
    assert "key_bits" not in proc.stdout
    record = _store(tmp_path).get(summary["run_id"])
    assert record.status == "success"
    # Every block's tags arrive (a tagger returning empty blocks would waste them).
    assert record.results["blocks_used"] >= 0.9 * record.results["blocks"]
    assert record.results["secret_bits"] == summary["secret_bits"]
    assert "alice.patterns" in record.identities and "bob.tagger" in record.identities


def _gllp_prediction(length_km: float) -> tuple[float, float]:
    """Signal gain Q (dead time included) and transmission eta expected for the default
    profile's optics (PHYSICS.md case 4)."""
    from qhil.orchestrator.profile import load_profile

    w = load_profile().world
    assert w is not None
    link = w["links"]["alice-bob"]
    bob = w["nodes"]["bob"]["components"]
    eta_det = sum(bob[d]["efficiency"] for d in ("det_h", "det_v", "det_d", "det_a")) / 4
    # mu is what leaves Alice's station (after her attenuator's insertion loss): the
    # loss from there on is the link's.
    loss_db = link["alpha_db_per_km"] * length_km + link["insertion_loss_db"]
    eta = eta_det * 10 ** (-loss_db / 10)
    mu = 0.5
    q = 1 - math.exp(-eta * mu)
    # Dead time on the pulse grid (PHYSICS.md case 2 for a pulsed source): a click blanks
    # the next n = ceil(tau R) - 1 pulses of its detector, so a detector clicking with
    # probability p per pulse is live for 1 / (1 + n p) of them. Each detector gets about
    # a quarter of the clicks of every intensity class.
    bb84 = load_profile().experiments["bb84"]
    tx = w["nodes"]["alice"]["components"]["transmitter"]
    q_avg = sum(
        pk * (1 - math.exp(-eta * m))
        for pk, m in zip(bb84["intensity_probabilities"], bb84["mus"], strict=True)
    )
    tau_s = max(bob[d]["dead_time_ns"] for d in ("det_h", "det_v", "det_d", "det_a")) * 1e-9
    n_blank = math.ceil(tau_s * tx["rep_rate_hz"]) - 1
    return q / (1 + n_blank * q_avg / 4), eta


async def test_bb84_gain_and_qber_match_the_decoy_prediction(tmp_path: Path) -> None:
    summary = await run_bb84_job(
        duration_s=0.1, data_dir=tmp_path / "data", key_dir=tmp_path / "keys"
    )
    r = summary.results
    q_pred, _ = _gllp_prediction(10.0)
    s = bb84_settings(load_profile(None, []), 0.1)
    # Signal pulses in the used blocks (approx.: the revealed ones are not counted).
    n_signal = r["blocks_used"] * s.pattern_length * s.intensity_probabilities[0]
    # Two-sided 99.9 % band on the gain: binomial sd of the estimate, plus 5 % for the
    # optics not in the simple formula (PBS extinction, polarization-controller losses).
    sd = math.sqrt(q_pred * (1 - q_pred) / n_signal)
    assert abs(r["gain_signal"] - q_pred) < 3.29 * sd + 0.05 * q_pred, (r["gain_signal"], q_pred)
    # With the fibre aligned, the QBER is set by the source's extinction and the PBSs (< 2 %).
    assert 0 < r["qber_test_signal"] < 0.02


async def test_eavesdropper_raises_qber_to_a_quarter_and_no_key(tmp_path: Path) -> None:
    summary = await run_bb84_job(
        None,
        ["world.links.alice-bob.eavesdropper.fraction=1.0"],
        duration_s=0.05,
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
    )
    assert summary.status == "aborted" and summary.reason is not None
    assert summary.reason.startswith("qber_too_high")
    qber = summary.results["qber_test_signal"]
    assert 0.20 < qber < 0.30  # intercept-resend: 25 %
    assert summary.results.get("alice_key_sha256") is None
    record = _store(tmp_path).get(summary.run_id)
    assert record.status == "aborted" and record.reason.startswith("qber_too_high")
    assert not list((tmp_path / "keys").rglob("*.key"))


async def test_tampered_classical_message_aborts_with_authentication_error(tmp_path: Path) -> None:
    seen = {"n": 0}

    def flip_fifth(frame: bytes) -> Sequence[bytes]:
        seen["n"] += 1
        if seen["n"] == 5:  # a message after the handshake
            b = bytearray(frame)
            b[-1] ^= 0x01
            return [bytes(b)]
        return [frame]

    summary = await run_bb84_job(
        duration_s=0.05,
        data_dir=tmp_path / "data",
        key_dir=tmp_path / "keys",
        tamper_alice_to_bob=flip_fifth,
    )
    assert summary.status == "aborted" and summary.reason is not None
    assert summary.reason.startswith("authentication_failed")
    record = _store(tmp_path).get(summary.run_id)
    assert record.status == "aborted" and record.reason.startswith("authentication_failed")
