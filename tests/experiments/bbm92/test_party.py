"""BBM92 with each node in its own party job, over TCP (HMAC-authenticated).

The emulated entanglement bench runs here as the "hardware", serving a profile with its
live addresses; each party opens only its own node's instruments (alice also the source
site's pair source), as two processes on two hosts do (``qhil run bbm92 --party``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from orchestrator.test_party_cli import _free_port, _key
from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.experiments.bbm92.party_job import run_bbm92_party_job
from qhil.orchestrator.profile import load_profile
from qhil.records import KeyStore, RunStore

from .support import PROFILE, mount_zeros, overrides


@pytest.mark.slow
def test_two_party_jobs_end_with_the_same_key(tmp_path: Path) -> None:
    port = _free_port()
    key = _key(tmp_path / "psk.hex")
    with EmulatedBench(load_profile(PROFILE, overrides())) as bench:
        lab = tmp_path / "lab.toml"
        lab.write_bytes(tomli_w.dumps(bench.addressed_profile()).encode())

        async def both() -> list[Any]:
            common: dict[str, Any] = {
                "auth_key_file": key,
                "duration_s": 2.0,
                "peer_timeout_s": 120.0,
            }
            return list(
                await asyncio.gather(
                    run_bbm92_party_job(
                        "alice",
                        str(lab),
                        mount_zeros(),
                        listen=f"127.0.0.1:{port}",
                        data_dir=tmp_path / "alice",
                        **common,
                    ),
                    run_bbm92_party_job(
                        "bob",
                        str(lab),
                        mount_zeros(),
                        connect=f"127.0.0.1:{port}",
                        data_dir=tmp_path / "bob",
                        **common,
                    ),
                )
            )

        alice, bob = (s.as_dict() for s in asyncio.run(both()))
    assert alice["status"] == bob["status"] == "success", (alice["reason"], bob["reason"])
    assert alice["alice_key_sha256"] == bob["bob_key_sha256"] is not None
    for k in ("sifted_bits", "qber_test", "qber_key", "secret_bits"):
        assert alice[k] == bob[k]  # the same public counts at both nodes
    ka = KeyStore(tmp_path / "alice" / "keys").list_keys()
    kb = KeyStore(tmp_path / "bob" / "keys").list_keys()
    assert [k.sha256 for k in ka] == [k.sha256 for k in kb] == [alice["alice_key_sha256"]]
    assert RunStore(tmp_path / "alice").get(alice["run_id"]).kind == "bbm92.alice"
    assert RunStore(tmp_path / "bob").get(bob["run_id"]).kind == "bbm92.bob"
