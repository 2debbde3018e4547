"""Issue 13 acceptance: ``qhil run bb84 --continuous`` on the default emulated bench feeds
both nodes' ETSI GS QKD 014 KMEs (served here over mutual TLS on ephemeral ports, on the
same key store). An application fetching keys at a steady rate (a 256-bit key every
0.3 s: 0.85 kbit/s, about half the ~1.7 kbit/s the bench makes per wall second on an idle
host) is never refused, and every KME's stored_key_count stays within max_key_count (64
here: one BB84 key of ~7 kbit is ~28 of them, so generation pauses once about two are
stored and resumes when the application has consumed one key's worth). SIGINT then stops the run cleanly (exit 0) with every
key recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kms.conftest import SAE, Kmes  # tests/ is on sys.path (rootdir of the test packages)
from qhil.kms.ca import init_ca
from qhil.kms.capacity import key_capacity
from qhil.kms.config import Limits, load_config
from qhil.records import KeyStore, RunStore

MAX_KEY_COUNT = 64
MAX_FETCHES = 100  # generation resumes once a key's ~28 fit again (~15 fetches)
PERIOD_S = 0.3


def real_count(key_dir: Path, node: str) -> int:
    """What the node's KME holds, uncapped (qhil.kms.capacity)."""
    return key_capacity(key_dir, node, max_key_count=MAX_KEY_COUNT).stored_key_count


async def _status(kmes: Kmes, node: str) -> dict[str, int]:
    other = "bob" if node == "alice" else "alice"
    async with kmes.client(SAE[node]) as client:
        r = await client.get(f"{kmes.urls[node]}/api/v1/keys/{SAE[other]}/status")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _poll(kmes: Kmes, gen: asyncio.subprocess.Process, until: Callable[[int], bool]) -> int:
    """Alice's KME's stored_key_count once ``until`` holds (the generator must keep running)."""
    for _ in range(1200):
        assert gen.returncode is None, (await gen.communicate())[1].decode()[-2000:]
        count = (await _status(kmes, "alice"))["stored_key_count"]
        if until(count):
            return count
        await asyncio.sleep(0.1)
    raise AssertionError("no new key within 120 s")


@pytest.mark.slow
async def test_continuous_keys_feed_the_kmes_within_max_key_count(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    init_ca(ca, nodes={"alice": [SAE["alice"]], "bob": [SAE["bob"]]},
            limits=Limits(max_key_count=MAX_KEY_COUNT))  # fmt: skip
    key_dir = tmp_path / "keys"
    KeyStore(key_dir)
    kmes = Kmes(load_config(ca / "kms.toml"), key_dir, ca)
    await kmes.start("alice")
    await kmes.start("bob")
    cmd = [sys.executable, "-m", "qhil.cli", "run", "bb84", "--continuous", "--json"]
    cmd += ["--no-plots", "--data-dir", str(tmp_path / "data"), "--key-dir", str(key_dir)]
    cmd += ["--kms-config", str(ca / "kms.toml"), "--duration", "0.05"]
    # cheap start: no mu check, and a fibre that starts unrotated (no compensation needed)
    cmd += ["--set", "experiments.bb84.verify_mus=false"]
    cmd += ["--set", "experiments.bb84.calibrate_polarization=false"]
    cmd += ["--set", "world.links.alice-bob.initial_polarization=identity"]
    # 13 ms blocks (4 per key), not the default 100 ms: the key size (~7 kbit, ~28 KME keys)
    # and the bench's rate that the application's period is tuned to (module docstring).
    cmd += ["--set", "experiments.bb84.pattern_length=1040000"]
    gen = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    highest = 0
    try:
        # the application starts once the KMEs hold the first key (the store is full)
        count = await _poll(kmes, gen, lambda n: n > 0)
        highest = max(highest, count, *(real_count(key_dir, n) for n in ("alice", "bob")))
        # a steady application until generation has resumed after a pause: the count
        # rises (a new key) after having fallen (keys consumed)
        resumed = False
        for _ in range(MAX_FETCHES):
            enc = await kmes.enc("alice", {"number": 1, "size": 256})
            assert enc.status_code == 200, enc.text  # never refused
            keys = enc.json()["keys"]
            dec = await kmes.dec("bob", [k["key_ID"] for k in keys])
            assert dec.status_code == 200, dec.text
            assert dec.json()["keys"] == keys
            assert all(len(base64.b64decode(k["key"])) == 32 for k in keys)
            for node in ("alice", "bob"):
                status = await _status(kmes, node)
                assert status["max_key_count"] == MAX_KEY_COUNT
                # the REAL count (the REST status may cap what it reports)
                highest = max(highest, status["stored_key_count"], real_count(key_dir, node))
            resumed = status["stored_key_count"] > count - 1
            if resumed:
                break
            count = status["stored_key_count"]
            await asyncio.sleep(PERIOD_S)
        assert resumed, "generation never resumed"
        gen.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(gen.communicate(), 120)
    finally:
        if gen.returncode is None:
            gen.kill()
            await gen.wait()
        for node in list(kmes.servers):
            await kmes.stop(node)
    assert gen.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["status"] == "success" and summary["stopped"] == "SIGINT"
    assert highest <= MAX_KEY_COUNT
    # the store filled (generation paused) and was consumed (generation resumed)
    assert summary["paused_s"] > 0 and summary["keys_committed"] >= 2
    # with --json (no progress bar) the pause is said on stderr
    assert ": paused, its KME's key store is full" in err.decode(), err.decode()[-2000:]
    store = KeyStore(key_dir)
    assert store.pending_keys() == []
    record = RunStore(tmp_path / "data", readonly=True).get(summary["run_id"])
    assert record.kind == "bb84.continuous" and record.status == "success"
    made = {(k["sha256"], k["length_bits"]) for k in summary["keys"]}
    assert {(r.sha256, r.length_bits) for r in record.keys} == made
    assert all(k["alice_key_id"] and k["bob_key_id"] for k in summary["keys"])
