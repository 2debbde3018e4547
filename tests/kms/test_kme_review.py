"""A reviewer's findings on the KMEs (issue 13): a 503 uses no key material, delivered keys
leave the disk, KME-bob's count follows alice's cursor, the peer's 400 keeps the standard's
body, init-ca refuses names that could pass as a KME or escape its directory."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from qhil.cli import main
from qhil.kms.config import load_config
from qhil.kms.kme import PeerError

from .conftest import Kmes, save_pair


def _cursor(kmes: Kmes, node: str) -> dict[str, int]:
    return dict(kmes.servers[node].kme.ledger.state.cursor)


async def test_a_503_at_the_allocator_uses_no_key_material(kmes: Kmes) -> None:
    """Before: each enc_keys at KME-alice while KME-bob was down fsync'd a new cursor
    (begin) then failed: 10 refused requests cost 10 keys for good."""
    alice = kmes.servers["alice"].kme
    assert (await kmes.enc("alice", {"number": 1})).status_code == 200  # bob's files known
    count = alice.stored_key_count()
    cursor = _cursor(kmes, "alice")
    await kmes.stop("bob")
    for _ in range(10):
        assert (await kmes.enc("alice", {"number": 1})).status_code == 503
    assert alice.stored_key_count() == count and _cursor(kmes, "alice") == cursor
    await kmes.start("bob")
    enc = await kmes.enc("alice", {"number": 1})
    assert enc.status_code == 200
    assert alice.stored_key_count() == count - 1
    assert (await kmes.dec("bob", [enc.json()["keys"][0]["key_ID"]])).json() == enc.json()


async def test_bits_the_peer_stored_for_a_lost_answer_are_never_reused(
    kmes: Kmes, tmp_path: Path
) -> None:
    """bob stored the key but its answer was lost: alice voids it (503) and, before the next
    allocation, learns bob's cursor with the void: the next key is the next bits."""
    raw = save_pair(tmp_path / "unused", 4096, seed=1)  # the fixture's key bytes
    alice = kmes.servers["alice"].kme
    real = alice.peer
    lost = []

    async def lossy(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        answer = await real(method, path, body)
        if path == "/store" and not lost:
            lost.append(path)
            raise PeerError("answer lost")
        return answer

    alice.peer = lossy
    assert (await kmes.enc("alice", {"number": 1})).status_code == 503
    enc = await kmes.enc("alice", {"number": 1})
    assert enc.status_code == 200
    key = enc.json()["keys"][0]
    assert base64.b64decode(key["key"]) == raw[32:64]
    assert set(kmes.servers["bob"].kme.ledger.state.slave) == {key["key_ID"]}  # the void's gone


async def test_a_delivered_key_leaves_the_slaves_ledger_file(kmes: Kmes) -> None:
    """Before: the ledger was compacted only when a KME started: a served key's bytes stayed
    in ledger.jsonl for as long as the KME ran."""
    enc = await kmes.enc("alice", {"number": 2})
    keys = enc.json()["keys"]
    ledger = kmes.key_dir / "kme-bob" / "ledger.jsonl"
    assert keys[0]["key"] in ledger.read_text()
    assert (await kmes.dec("bob", [keys[0]["key_ID"]])).status_code == 200
    text = ledger.read_text()
    assert keys[0]["key"] not in text and keys[1]["key"] in text


def test_the_ledger_file_stays_bounded(tmp_path: Path, monkeypatch: Any) -> None:
    from qhil.kms import ledger as ledger_mod

    monkeypatch.setattr(ledger_mod, "COMPACT_BYTES", 2048)
    book = ledger_mod.Ledger(tmp_path / "kme-x")
    for i in range(150):
        book.append({"op": "begin", "alloc": f"a{i}"})
        book.append({"op": "done", "alloc": f"a{i}", "cursor": {"s": i}})
    book.close()
    assert (tmp_path / "kme-x" / "ledger.jsonl").stat().st_size < 4096
    assert ledger_mod.Ledger(tmp_path / "kme-x").state.cursor == {"s": 149}


async def test_bob_learns_alices_cursor_at_start_and_when_exhausted(
    ca_dir: Path, tmp_path: Path
) -> None:
    """Before: KME-bob counted from its own ledger only: after alice used bits bob never
    heard of, bob reported keys it did not have, and its 400 carried alice's URL."""
    key_dir = tmp_path / "keys"
    save_pair(key_dir, 4096, seed=3)
    bench = Kmes(load_config(ca_dir / "kms.toml"), key_dir, ca_dir)
    await bench.start("alice")
    try:
        alice = bench.servers["alice"].kme
        sha = alice.material.files()[0].sha256
        alice.ledger.append({"op": "cursor", "cursor": {sha: 2048}})  # used while bob was away
        await bench.start("bob")
        bob = bench.servers["bob"].kme
        assert bob.stored_key_count() == alice.stored_key_count() == 8
        alice.ledger.append({"op": "cursor", "cursor": {sha: 3072}})  # bob not told
        refused = await bench.enc("bob", {"number": 6})
        assert refused.status_code == 400
        body = refused.json()
        assert body["message"] == "keys are being exhausted" and "https" not in str(body)
        assert "keys_exhausted" in body["details"][0]
        assert bob.stored_key_count() == 4
    finally:
        for node in list(bench.servers):
            await bench.stop(node)


def _init_ca(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["kms", "init-ca", *args])
    return result.exit_code, result.output


def test_init_ca_refuses_an_sae_named_like_a_kme(tmp_path: Path) -> None:
    code, out = _init_ca(str(tmp_path / "ca"), "--sae", "alice=KME-bob", "--sae", "bob=y")
    assert code == 2 and "KME-bob" in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "ca").exists()


def test_init_ca_refuses_a_path_as_sae_id_before_writing_anything(tmp_path: Path) -> None:
    code, out = _init_ca(str(tmp_path / "ca"), "--sae", "alice=../../x", "--sae", "bob=y")
    assert code == 2 and "../../x" in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "ca").exists()
