"""`qhil run bb84` with Wegman-Carter over the transcript (issue 12, "authentication that
pays for itself"): a pool file on the default emulated bench, refilled from each key.

Slow (each run opens the bench and acquires): ~8-30 s each on an idle 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.test_party_cli import lab  # noqa: F401  (fixture: the emulated bench)
from qhil.orchestrator.channel.pool import (
    HASH_KEY_BYTES,
    MAGIC,
    create_pool_file,
    pool_bits_left,
    run_budget_bits,
)
from qhil.orchestrator.jobs import JobSummary, run_bb84_job, run_bb84_party_job
from qhil.records import KeyStore, RunStore

pytestmark = pytest.mark.slow

QUICK = ["experiments.bb84.verify_mus=false"]


def _pool(path: Path, runs: int = 1) -> Path:
    create_pool_file(path, runs * run_budget_bits() // 8)
    return path


def _committed(keys: Path) -> list[str]:
    """Usable keys; none may be left pending either."""
    if not keys.exists():
        return []
    assert KeyStore(keys).pending_keys() == []
    return [ref.key_id for ref in KeyStore(keys).list_keys()]


def test_default_bench_spends_under_one_percent_and_the_next_run_lives_on_the_refill(
    lab: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pool holding one run's budget: the default run (default duration) spends < 1 % of
    its key on authentication and refills the pool, so the next run (here: two parties
    over TCP, each with its copy) needs no new material, and the copies stay equal."""
    pool = _pool(tmp_path / "pool")
    secret = pool.read_bytes()[len(MAGIC) :]
    caplog.set_level(logging.DEBUG)
    first = asyncio.run(
        run_bb84_job(data_dir=tmp_path / "data", key_dir=tmp_path / "keys", auth_pool_file=pool)
    )
    s = first.as_dict()
    assert first.status == "success", first.reason
    assert s["alice_key_sha256"] == s["bob_key_sha256"] is not None
    # hellos, both key confirmations, KeyCommitted and Finished: >= 6 pads of 128 bits
    assert 6 * 128 <= s["auth_pad_bits_used"] <= s["auth_pad_bits_budget"] == run_budget_bits()
    fraction = s["auth_pad_bits_budget"] / s["secret_bits"]
    assert fraction < 0.01, f"{100 * fraction:.2f} % of the key"
    assert s["auth_pool_refill_bits"] >= run_budget_bits()
    assert pool_bits_left(pool) == s["auth_pool_refill_bits"]  # the budget left the file
    record = RunStore(tmp_path / "data").get(first.run_id)
    assert record.results["auth_pad_bits_used"] == s["auth_pad_bits_used"]
    # pads and hash points reach neither logs, nor the summary, nor the record
    text = caplog.text + json.dumps(s) + json.dumps(record.results)
    for chunk in (secret[:HASH_KEY_BYTES], secret[HASH_KEY_BYTES : HASH_KEY_BYTES + 16]):
        assert chunk.hex() not in text and repr(chunk)[2:-1] not in text

    # The next run, as two processes would run it over TCP, each party from its own copy.
    copies = {party: tmp_path / f"{party}.pool" for party in ("alice", "bob")}
    for path in copies.values():
        path.write_bytes(pool.read_bytes())
        path.chmod(0o600)
    port = _free_port()

    async def both() -> list[JobSummary]:
        return list(
            await asyncio.gather(
                *(
                    run_bb84_party_job(
                        party,
                        str(lab),
                        QUICK,
                        **where,  # type: ignore[arg-type]
                        auth_pool_file=copies[party],
                        duration_s=0.05,
                        data_dir=tmp_path / party,
                        peer_timeout_s=60.0,
                    )
                    for party, where in (
                        ("alice", {"listen": f"127.0.0.1:{port}"}),
                        ("bob", {"connect": f"127.0.0.1:{port}"}),
                    )
                )
            )
        )

    alice, bob = (s.as_dict() for s in asyncio.run(both()))
    assert alice["status"] == bob["status"] == "success", (alice["reason"], bob["reason"])
    assert alice["alice_key_sha256"] == bob["bob_key_sha256"] is not None
    assert alice["auth_pool_refill_bits"] == bob["auth_pool_refill_bits"] > 0
    assert copies["alice"].read_bytes() == copies["bob"].read_bytes()  # still in step


def _flip_announcement(frames_seen: list[str]) -> object:
    """Flip one bit of Alice's first SiftReplyMsg (sifting: unverified until her
    KeyConfirm, the next checkpoint of her direction)."""
    from experiments.bb84.support import frame_kind

    def tamper(frame: bytes) -> Sequence[bytes]:
        kind = frame_kind(frame)
        frames_seen.append(kind)
        if kind == "bb84.SiftReplyMsg" and frames_seen.count(kind) == 1:
            b = bytearray(frame)
            b[-17 - 40] ^= 0x01  # inside the body, away from the tag field
            return [bytes(b)]
        return [frame]

    return tamper


def test_a_change_between_checkpoints_leaves_no_key_at_either_side(tmp_path: Path) -> None:
    seen: list[str] = []
    summary = asyncio.run(
        run_bb84_job(
            None,
            QUICK,
            duration_s=0.05,
            data_dir=tmp_path / "data",
            key_dir=tmp_path / "keys",
            auth_pool_file=_pool(tmp_path / "pool"),
            tamper_alice_to_bob=_flip_announcement(seen),  # type: ignore[arg-type]
        )
    )
    assert "bb84.SiftReplyMsg" in seen
    assert summary.status == "aborted" and summary.reason is not None
    assert summary.reason.startswith("authentication_failed"), summary.reason
    assert _committed(tmp_path / "keys") == []
    assert summary.results["auth_pool_refill_bits"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_pool_is_authentication_failed_at_both_parties(
    lab: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    port = _free_port()
    common = {"duration_s": 0.05, "data_dir": tmp_path / "data", "peer_timeout_s": 3.0}

    async def both() -> list[JobSummary]:
        return list(
            await asyncio.gather(
                run_bb84_party_job(
                    "alice",
                    str(lab),
                    QUICK,
                    listen=f"127.0.0.1:{port}",
                    auth_pool_file=_pool(tmp_path / "a.pool"),
                    **common,  # type: ignore[arg-type]
                ),
                run_bb84_party_job(
                    "bob",
                    str(lab),
                    QUICK,
                    connect=f"127.0.0.1:{port}",
                    auth_pool_file=_pool(tmp_path / "b.pool"),  # not the same
                    **common,  # type: ignore[arg-type]
                ),
            )
        )

    for s in asyncio.run(both()):
        assert s.status == "aborted" and s.reason is not None
        assert s.reason.startswith("authentication_failed: "), s.reason
    assert _committed(tmp_path / "data" / "keys") == []
