"""``qhil run bbm92 --continuous`` on the emulated entanglement bench (issue 13): keys
after keys through BB84's loop, bounded by the KME's max_key_count, a clean stop."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments.bbm92.support import PROFILE, overrides
from plots.test_plots import check_png, moved
from qhil.cli import main
from qhil.kms.capacity import key_capacity
from qhil.orchestrator.experiments.bb84.continuous import ContinuousProgress, StopRequest
from qhil.orchestrator.experiments.bb84.continuous_job import kme_gates
from qhil.orchestrator.experiments.bbm92.continuous import run_bbm92_continuous_job
from qhil.plots import specs_for, write_plots
from qhil.records import KeyStore, KeyStoreError, RunStore


@pytest.mark.slow
@pytest.mark.asyncio
async def test_keys_until_the_store_is_full_then_a_clean_stop(tmp_path: Path) -> None:
    keys_at = tmp_path / "keys"
    stop = StopRequest()
    events: list[ContinuousProgress] = []

    def on_progress(p: ContinuousProgress) -> None:
        events.append(p)
        if p.event == "paused":  # the bound reached: a SIGTERM now, as a user would
            stop.request("SIGTERM")

    # 2 s per key makes ~200-bit keys on this bench; a KME of one 64-bit key per node has
    # room for a quarter of the first: both nodes store its first 64 bits (the room left at
    # both KMEs, agreed before the key), then generation must pause.
    summary = await run_bbm92_continuous_job(
        PROFILE,
        overrides(),
        stop=stop,
        duration_s=2.0,
        data_dir=tmp_path / "data",
        key_dir=keys_at,
        gates=kme_gates(keys_at, max_key_count=1, key_size=64, kms_config=None),
        on_progress=on_progress,
    )
    assert summary["status"] == "success", summary["reason"]
    assert summary["stopped"] == "SIGTERM"
    assert any(p.event == "paused" for p in events)
    keys = summary["keys"]
    assert len(keys) >= 1 and summary["keys_committed"] == len(keys)
    stored = KeyStore(keys_at)
    refs = stored.list_keys()
    assert stored.pending_keys() == []
    # every confirmed key at both nodes, identical, none twice
    for label in ("alice", "bob"):
        mine = [r for r in refs if r.label == label]
        assert [r.sha256 for r in mine] == [k["sha256"] for k in keys]
    assert len({k["sha256"] for k in keys}) == len(keys)
    for k in keys:
        assert stored.load(k["alice_key_id"]) == stored.load(k["bob_key_id"])
    # bounded: what the KME would hold stays within max_key_count (1 key of 64 bits), counted
    # from the key store itself (keys are cut to the room the KMEs have left)
    for node in ("alice", "bob"):
        assert key_capacity(keys_at, node, key_size=64, max_key_count=1).stored_key_count <= 1
    record = RunStore(tmp_path / "data", readonly=True).get(summary["run_id"])
    assert record.kind == "bbm92.continuous" and record.status == "success"
    assert record.results["keys_committed"] == len(keys)
    assert {r.sha256 for r in record.keys} == {k["sha256"] for k in keys}
    # the keys over time, with the pause, redrawn from a copy of the data directory alone
    copied = moved(tmp_path / "data", tmp_path).get(summary["run_id"])
    index = copied.array_index
    assert index["bob/keys"].shape[0] == len(keys)
    assert sum(index[n].shape[0] for n in ("alice/pauses", "bob/pauses") if n in index) >= 1
    (spec,) = specs_for("bbm92.continuous")
    (png,) = write_plots(copied, tmp_path / "plots").written
    check_png(png, spec.pixels)


def test_continuous_with_party_is_refused(tmp_path: Path) -> None:
    pool = tmp_path / "auth.key"
    pool.write_text("00" * 32)
    got = CliRunner().invoke(
        main,
        ["run", "bbm92", PROFILE, "--continuous", "--party", "alice",
         "--auth-key-file", str(pool), "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert got.exit_code == 2, got.output
    assert "--continuous runs bbm92 in one process; not with --party" in got.output
    assert "Traceback" not in got.output


def test_storage_bound_without_continuous_is_refused(tmp_path: Path) -> None:
    got = CliRunner().invoke(
        main, ["run", "bbm92", PROFILE, "--max-key-count", "3", "--data-dir", str(tmp_path)]
    )
    assert got.exit_code == 2, got.output
    assert "--max-key-count is for --continuous runs only" in got.output


@pytest.mark.slow
def test_the_command_makes_keys_until_sigterm(tmp_path: Path) -> None:
    """``qhil run bbm92 --continuous`` as a user runs it: keys until SIGTERM, exit 0, the
    summary and the run's plot written by the command."""
    data, keys_at = tmp_path / "data", tmp_path / "keys"
    cmd = [sys.executable, "-m", "qhil.cli", "run", "bbm92", PROFILE, "--continuous",
           "--json", "--duration", "2", "--data-dir", str(data), "--key-dir", str(keys_at)]  # fmt: skip
    for s in overrides():
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240  # a hung command fails here, not at the CI limit
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(KeyStoreError, OSError):
                if len(KeyStore(keys_at).list_keys()) >= 2:  # one key, at both nodes
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "success" and summary["stopped"] == "SIGTERM"
    assert summary["keys_committed"] >= 1 and len(summary["keys"]) == summary["keys_committed"]
    assert [Path(p).name for p in summary["plots"]] == ["keys.png"]
    stored = KeyStore(keys_at)
    assert stored.pending_keys() == []
    assert len(stored.list_keys()) == 2 * summary["keys_committed"]
