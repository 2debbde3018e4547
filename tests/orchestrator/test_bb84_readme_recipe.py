"""The README's two-process recipe, exactly as written, on the default emulated bench.

``qhil emulate --write-profile lab.toml`` serves the bench (its fibre starts at an
unknown polarization), then Alice listens and Bob connects with a pre-shared key file,
nothing else run before: each party process opens only its own node's instruments, they
compensate the polarization over the channel (the profile's
``experiments.bb84.calibrate_polarization``) and end with the same key. Before party
mode compensated, both aborted with "none of N blocks could be aligned".
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qhil.records import RunStore

pytestmark = pytest.mark.slow

QHIL = [sys.executable, "-m", "qhil.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_two_process_recipe_gives_both_parties_the_same_key(tmp_path: Path) -> None:
    # A user's environment: records and keys under a fresh home, run from a fresh directory.
    env = {**os.environ, "HOME": str(tmp_path), "QHIL_DATA_DIR": str(tmp_path / "data")}
    lab = tmp_path / "lab.toml"
    psk = tmp_path / "psk.hex"
    psk.write_text(secrets.token_hex(32))
    psk.chmod(0o600)
    emu_log = (tmp_path / "emulate.err").open("w")
    emulator = subprocess.Popen(
        [*QHIL, "emulate", "--write-profile", "lab.toml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=emu_log,
        text=True,
    )
    parties: list[subprocess.Popen[str]] = []
    try:
        # The profile is written before the instruments are listed: wait for the first line.
        assert emulator.stdout is not None
        assert emulator.stdout.readline(), (tmp_path / "emulate.err").read_text()
        assert lab.exists()
        port = _free_port()
        party = [*QHIL, "run", "bb84", "lab.toml", "--duration", "0.1", "--json"]
        party += ["--auth-key-file", "psk.hex"]
        parties += [
            subprocess.Popen(
                [*party, "--party", *role],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for role in (
                ("alice", "--listen", f"127.0.0.1:{port}"),
                ("bob", "--connect", f"127.0.0.1:{port}"),
            )
        ]
        alice, bob = parties
        a_out, a_err = alice.communicate(timeout=600)
        b_out, b_err = bob.communicate(timeout=600)
    finally:
        for p in parties:  # only if a wait above failed
            if p.poll() is None:
                p.kill()
                p.communicate()
        emulator.send_signal(signal.SIGINT)
        try:
            emulator.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.communicate()
        emu_log.close()
    assert alice.returncode == 0, a_out + a_err[-3000:]
    assert bob.returncode == 0, b_out + b_err[-3000:]
    a = json.loads(a_out.strip().splitlines()[-1])
    b = json.loads(b_out.strip().splitlines()[-1])
    assert a["status"] == b["status"] == "success"
    assert a["secret_bits"] == b["secret_bits"] > 0
    assert a["alice_key_sha256"] == b["bob_key_sha256"] is not None
    # Each party's run holds the compensation: Bob's search and what Alice served for it.
    store = RunStore(tmp_path / "data")
    runs = {r.kind: r for r in (store.get(a["run_id"]), store.get(b["run_id"]))}
    alice_run, bob_run = runs["bb84.alice"], runs["bb84.bob"]
    assert bob_run.results["polcal_target_met"] is True
    assert float(bob_run.results["polcal_e_z_after"]) < 0.01
    assert float(bob_run.results["polcal_e_x_after"]) < 0.01
    assert alice_run.results["polcal_target_met"] is True
    assert alice_run.results["polcal_evaluations"] == bob_run.results["polcal_evaluations"]
    assert int(alice_run.results["polcal_references_served"]) >= 2
    for run in (alice_run, bob_run):
        assert run.parameters["calibrate_polarization"] is True
