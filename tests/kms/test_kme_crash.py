"""kill -9 of a KME at random moments while SAEs fetch keys (issue 13 acceptance): on
restart no delivered key is lost, none is served twice, and the ledgers agree."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from qhil.kms.ledger import LEDGER, LedgerState
from qhil.kms.server import client_ssl_context

from .conftest import SAE, save_pair

OTHER = {"alice": "bob", "bob": "alice"}


@dataclass
class Procs:
    ca_dir: Path
    key_dir: Path
    work: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url_file(self, node: str) -> Path:
        return self.work / f"{node}.url"

    def start(self, node: str) -> None:
        self.url_file(node).unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "qhil.cli", "kms", "serve", node,
            "--config", str(self.ca_dir / "kms.toml"), "--listen", "127.0.0.1:0",
            "--peer", f"@{self.url_file(OTHER[node])}", "--port-file", str(self.url_file(node)),
            "--key-dir", str(self.key_dir),
        ]  # fmt: skip
        log = open(self.work / f"{node}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.procs[node] = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        for _ in range(600):  # up to 30 s for the interpreter and the TLS listener
            if self.url_file(node).exists():
                return
            if self.procs[node].poll() is not None:
                raise AssertionError((self.work / f"{node}.log").read_text())
            time.sleep(0.05)
        raise AssertionError(f"{node} KME did not start")

    def kill(self, node: str) -> None:
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    def url(self, node: str) -> str:
        return self.url_file(node).read_text().strip()

    def client(self, sae: str) -> httpx.Client:
        ctx = client_ssl_context(
            self.ca_dir / "ca.pem", self.ca_dir / f"sae-{sae}.pem", self.ca_dir / f"sae-{sae}.key"
        )
        return httpx.Client(verify=ctx, timeout=5)


@pytest.fixture
def procs(ca_dir: Path, tmp_path: Path) -> Procs:
    p = Procs(ca_dir, tmp_path / "keys", tmp_path)
    yield p  # type: ignore[misc]
    for proc in p.procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _enc(p: Procs, master: str) -> tuple[str, str] | None:
    """One key from ``master``'s KME for the other node's SAE; None if no answer."""
    try:
        with p.client(SAE[master]) as c:
            r = c.post(f"{p.url(master)}/api/v1/keys/{SAE[OTHER[master]]}/enc_keys", json={})
    except (httpx.HTTPError, OSError):
        return None
    if r.status_code != 200:
        return None
    (key,) = r.json()["keys"]
    return key["key_ID"], key["key"]


def _dec(p: Procs, slave: str, key_id: str) -> httpx.Response:
    with p.client(SAE[slave]) as c:
        url = f"{p.url(slave)}/api/v1/keys/{SAE[OTHER[slave]]}/dec_keys"
        return c.post(url, json={"key_IDs": [{"key_ID": key_id}]})


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_serves_nothing_twice(procs: Procs) -> None:
    for seed in range(3):
        save_pair(procs.key_dir, 2048, seed=100 + seed)  # 24 keys of 256 bits in all
    procs.start("alice")
    procs.start("bob")
    rng = np.random.default_rng(13)
    delivered: dict[str, tuple[str, str]] = {}  # key_ID -> (key, slave node)
    for cycle in range(6):
        victim = ("alice", "bob")[cycle % 2]
        stop = threading.Event()

        def fetch(stop: threading.Event = stop) -> None:
            master = "alice"
            while not stop.is_set():
                got = _enc(procs, master)
                if got is not None:
                    delivered[got[0]] = (got[1], OTHER[master])
                master = OTHER[master]

        worker = threading.Thread(target=fetch)
        worker.start()
        time.sleep(float(rng.uniform(0.05, 0.6)))
        procs.kill(victim)
        stop.set()
        worker.join()
        procs.start(victim)
    # every key a master SAE received: its slave SAE gets the same key, exactly once
    assert len(delivered) >= 3, "too few keys to say anything"
    print(f"{len(delivered)} keys delivered across 6 kills")
    values = [k for k, _ in delivered.values()]
    assert len(set(values)) == len(values), "the same material handed out twice"
    for key_id, (key, slave) in delivered.items():
        first = _dec(procs, slave, key_id)
        assert first.status_code == 200, (key_id, first.text)
        assert first.json()["keys"] == [{"key_ID": key_id, "key": key}]
        assert _dec(procs, slave, key_id).status_code == 400
    # both ledgers: nothing begun and unresolved, no key held that a master SAE got
    procs.kill("alice")
    procs.kill("bob")
    used = 0
    for node in ("alice", "bob"):
        state = LedgerState()
        for line in (procs.key_dir / f"kme-{node}" / LEDGER).read_bytes().splitlines():
            try:
                state.apply(__import__("json").loads(line))
            except ValueError:
                break
        assert not set(state.slave) & set(delivered)
        assert not state.begun  # every unfinished allocation was voided on restart
        used = max(used, sum(state.cursor.values()))
    assert len(delivered) * 256 <= used <= 3 * 2048
    # and the material is the key store's: keys are 32 bytes of it
    assert all(len(base64.b64decode(k)) == 32 for k in values)


@pytest.mark.slow
def test_restart_keeps_undelivered_keys(procs: Procs) -> None:
    """kill -9 of the slave's KME between enc_keys and dec_keys: the key survives."""
    save_pair(procs.key_dir, 2048, seed=5)
    procs.start("alice")
    procs.start("bob")
    got = _enc(procs, "alice")
    assert got is not None
    procs.kill("bob")
    procs.start("bob")
    r = _dec(procs, "bob", got[0])
    assert r.status_code == 200 and r.json()["keys"][0]["key"] == got[1]
    assert os.stat(procs.key_dir / "kme-bob" / LEDGER).st_mode & 0o077 == 0
