"""Alice and Bob as two OS processes on loopback, like two hosts: same protocol, same outcome.

The emulated bench runs in this (test) process as the "hardware"; it writes a
profile with its instruments' live addresses, and each party process opens only
its own node's instruments from that profile, exactly as on a lab bench.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.profile import load_profile

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_party_processes_end_with_the_same_verified_key(tmp_path: Path) -> None:
    with EmulatedBench(load_profile()) as bench:
        lab = tmp_path / "lab.toml"
        lab.write_bytes(tomli_w.dumps(bench.addressed_profile()).encode())
        key = tmp_path / "auth.hex"
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)
        port = _free_port()
        env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path / "data")}
        # As on a lab bench: compensate the fibre's polarization first, then run the parties.
        cal = [sys.executable, "-m", "qhil.cli", "calibrate", "polarization", str(lab), "--json"]
        done = subprocess.run(cal, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        base = [sys.executable, "-m", "qhil.cli", "run", "bb84", str(lab), "--duration", "0.1"]
        base += ["--json", "--auth-key-file", str(key)]
        bob = subprocess.Popen(
            [
                *base,
                "--party",
                "bob",
                "--connect",
                f"127.0.0.1:{port}",
                "--key-dir",
                str(tmp_path / "kb"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        alice = subprocess.Popen(
            [
                *base,
                "--party",
                "alice",
                "--listen",
                f"127.0.0.1:{port}",
                "--key-dir",
                str(tmp_path / "ka"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        a_out, a_err = alice.communicate(timeout=600)
        b_out, b_err = bob.communicate(timeout=600)
    assert alice.returncode == 0, a_out + a_err
    assert bob.returncode == 0, b_out + b_err
    a = json.loads(a_out.strip().splitlines()[-1])
    b = json.loads(b_out.strip().splitlines()[-1])
    assert a["status"] == b["status"] == "success"
    assert a["secret_bits"] == b["secret_bits"] > 0
    assert a["alice_key_sha256"] == b["bob_key_sha256"] is not None
    assert a["key_committed"] is b["key_committed"] is True  # confirmed and usable at both


def test_a_party_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "auth.hex"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o644)
    cmd = [
        sys.executable,
        "-m",
        "qhil.cli",
        "run",
        "bb84",
        "--party",
        "alice",
        "--auth-key-file",
        str(key),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "chmod 600" in r.stderr
