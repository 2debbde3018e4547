"""Clock sync with each node in its own party job, over TCP (HMAC-authenticated).

The emulated entanglement bench runs here as the "hardware", serving a profile with its
live addresses; each party opens only its own node's instruments and switches its own
node's pair source (the two-way method: a heralded source at each end).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from orchestrator.test_party_cli import _free_port, _key
from qhil.emulators.bench import EmulatedBench
from qhil.errors import ConfigError
from qhil.orchestrator.experiments.clock_sync.job import run_clock_sync_party_job
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

TWO_WAY = [
    f"experiments.clock_sync.sources.{node}.{field}"
    for node in ("alice", "bob")
    for field in ("instrument=twoway_pairs", "pump_current_ma=30")
]


@pytest.mark.slow
def test_two_way_between_two_party_jobs(tmp_path: Path) -> None:
    port = _free_port()
    key = _key(tmp_path / "psk.hex")
    with EmulatedBench(load_profile("entanglement")) as bench:
        lab = tmp_path / "lab.toml"
        lab.write_bytes(tomli_w.dumps(bench.addressed_profile()).encode())

        async def both() -> list:
            common = {"auth_key_file": key, "duration_s": 3.0, "peer_timeout_s": 120.0}
            return list(
                await asyncio.gather(
                    run_clock_sync_party_job(
                        "alice",
                        str(lab),
                        TWO_WAY,
                        listen=f"127.0.0.1:{port}",
                        data_dir=tmp_path / "alice",
                        **common,  # type: ignore[arg-type]
                    ),
                    run_clock_sync_party_job(
                        "bob",
                        str(lab),
                        TWO_WAY,
                        connect=f"127.0.0.1:{port}",
                        data_dir=tmp_path / "bob",
                        **common,  # type: ignore[arg-type]
                    ),
                )
            )

        alice, bob = (s.as_dict() for s in asyncio.run(both()))
    assert alice["status"] == bob["status"] == "success", (alice["reason"], bob["reason"])
    assert alice["method"] == bob["method"] == "two-way"
    for k in ("offset_s", "frequency_offset_ppb", "path_delay_s", "coincidences"):
        assert alice[k] == bob[k]  # bob has alice's result
    assert abs(alice["path_delay_s"] - 53.9e-6) < 0.1e-6
    rec = RunStore(tmp_path / "alice").get(alice["run_id"])
    assert rec.kind == "clock_sync.alice"
    with rec.arrays as arrays:
        assert np.asarray(arrays["track/locked"]).all()
        rows = np.asarray(arrays["track_b_to_a/locked"]).size  # one per interval (auto)
        assert abs(rows - 3.0 / alice["tracking_interval_s"]) <= 1
    assert RunStore(tmp_path / "bob").get(bob["run_id"]).kind == "clock_sync.bob"


def test_a_source_neither_party_owns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        asyncio.run(
            run_clock_sync_party_job(
                "alice",
                "entanglement",
                ["experiments.clock_sync.sources.source.pump_current_ma=40"],
                auth_key_file=_key(tmp_path / "psk.hex"),
                data_dir=tmp_path,
            )
        )
    assert info.value.field == "experiments.clock_sync.sources.source"


@pytest.mark.slow
def test_a_wrong_pre_shared_key_aborts_both_as_authentication_failed(tmp_path: Path) -> None:
    port = _free_port()
    with EmulatedBench(load_profile("entanglement")) as bench:
        lab = tmp_path / "lab.toml"
        lab.write_bytes(tomli_w.dumps(bench.addressed_profile()).encode())

        async def both() -> list:
            common = {"duration_s": 2.0, "peer_timeout_s": 5.0}
            return list(
                await asyncio.gather(
                    run_clock_sync_party_job(
                        "alice",
                        str(lab),
                        TWO_WAY,
                        listen=f"127.0.0.1:{port}",
                        auth_key_file=_key(tmp_path / "a.hex"),
                        data_dir=tmp_path / "alice",
                        **common,  # type: ignore[arg-type]
                    ),
                    run_clock_sync_party_job(
                        "bob",
                        str(lab),
                        TWO_WAY,
                        connect=f"127.0.0.1:{port}",
                        auth_key_file=_key(tmp_path / "b.hex"),
                        data_dir=tmp_path / "bob",
                        **common,  # type: ignore[arg-type]
                    ),
                )
            )

        alice, bob = (s.as_dict() for s in asyncio.run(both()))
    for s, who in ((alice, "alice"), (bob, "bob")):
        assert s["status"] == "aborted", s
        assert s["reason"].startswith("authentication_failed"), s["reason"]
        assert RunStore(tmp_path / who).get(s["run_id"]).status == "aborted"
