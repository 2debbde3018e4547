"""ETSI GS QKD 014 acceptance (issue 13): both KMEs driven with a real HTTP client over
mutual TLS on ephemeral ports."""

from __future__ import annotations

import base64
import logging
import ssl
from pathlib import Path

import httpx
import pytest

from qhil.kms.ca import init_ca

from .conftest import SAE, Kmes, save_pair

STATUS_FIELDS = {
    "source_KME_ID",
    "target_KME_ID",
    "master_SAE_ID",
    "slave_SAE_ID",
    "key_size",
    "stored_key_count",
    "max_key_count",
    "max_key_per_request",
    "max_key_size",
    "min_key_size",
    "max_SAE_ID_count",
}


@pytest.mark.parametrize("master", ["alice", "bob"])  # alice allocates; bob asks alice to
async def test_enc_then_dec_give_identical_keys_once(kmes: Kmes, master: str) -> None:
    slave = "bob" if master == "alice" else "alice"
    enc = await kmes.enc(master, {"number": 3, "size": 256})
    assert enc.status_code == 200, enc.text
    keys = enc.json()["keys"]
    assert len(keys) == 3 and all(len(base64.b64decode(k["key"])) == 32 for k in keys)
    assert len({k["key"] for k in keys}) == 3
    ids = [k["key_ID"] for k in keys]
    dec = await kmes.dec(slave, ids)
    assert dec.status_code == 200, dec.text
    assert dec.json()["keys"] == keys
    again = await kmes.dec(slave, ids[:1])
    assert again.status_code == 400
    assert set(again.json()) <= {"message", "details"} and "message" in again.json()


async def test_keys_are_the_key_stores_bits_in_order(ca_dir: Path, tmp_path: Path) -> None:
    """The first key is the first 256 bits of the oldest key file (both nodes' copies)."""
    from qhil.kms.config import load_config

    key_dir = tmp_path / "keys"
    first = save_pair(key_dir, 1024, seed=7)
    bench = Kmes(load_config(ca_dir / "kms.toml"), key_dir, ca_dir)
    await bench.start("alice")
    await bench.start("bob")
    try:
        enc = await bench.enc("bob", {"number": 2, "size": 512})
        got = b"".join(base64.b64decode(k["key"]) for k in enc.json()["keys"])
        assert got == first
        # every bit handed out: both nodes' key files are deleted
        assert not list(key_dir.glob("*.qkey"))
        dec = await bench.dec("alice", [k["key_ID"] for k in enc.json()["keys"]])
        assert dec.json()["keys"] == enc.json()["keys"]
    finally:
        await bench.stop("alice")
        await bench.stop("bob")


async def test_get_forms_of_enc_and_dec_keys(kmes: Kmes) -> None:
    async with kmes.client("bank-a") as client:
        enc = await client.get(
            f"{kmes.urls['alice']}/api/v1/keys/bank-b/enc_keys?number=2&size=128"
        )
    assert enc.status_code == 200, enc.text
    keys = enc.json()["keys"]
    assert [len(base64.b64decode(k["key"])) for k in keys] == [16, 16]
    async with kmes.client("bank-b") as client:
        url = f"{kmes.urls['bob']}/api/v1/keys/bank-a/dec_keys?key_ID={keys[1]['key_ID']}"
        dec = await client.get(url)
    assert dec.json()["keys"] == keys[1:]


async def test_status_has_the_standards_fields_and_counts_down(kmes: Kmes) -> None:
    async with kmes.client("bank-a") as client:
        url = f"{kmes.urls['alice']}/api/v1/keys/bank-b/status"
        before = (await client.get(url)).json()
        assert set(before) == STATUS_FIELDS
        assert before["source_KME_ID"] == "KME-alice" and before["target_KME_ID"] == "KME-bob"
        assert before["master_SAE_ID"] == "bank-a" and before["slave_SAE_ID"] == "bank-b"
        assert before["stored_key_count"] == 4096 // before["key_size"]
        assert (await kmes.enc("alice", {"number": 2})).status_code == 200
        after = (await client.get(url)).json()
    assert after["stored_key_count"] == before["stored_key_count"] - 2


async def test_no_certificate_gets_401_with_the_standards_body(kmes: Kmes) -> None:
    context = ssl.create_default_context(cafile=str(kmes.config.ca))
    async with httpx.AsyncClient(verify=context) as client:
        for path in ("bank-b/status", "bank-b/enc_keys"):
            response = await client.get(f"{kmes.urls['alice']}/api/v1/keys/{path}")
            assert response.status_code == 401
            assert "certificate" in response.json()["message"]


async def test_certificate_from_another_ca_is_refused_at_the_handshake(
    kmes: Kmes, tmp_path: Path
) -> None:
    rogue = tmp_path / "rogue"
    init_ca(rogue)  # same names (bank-a), another CA
    context = ssl.create_default_context(cafile=str(kmes.config.ca))
    context.load_cert_chain(str(rogue / "sae-bank-a.pem"), str(rogue / "sae-bank-a.key"))
    async with httpx.AsyncClient(verify=context) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"{kmes.urls['alice']}/api/v1/keys/bank-b/enc_keys")
    assert (await kmes.enc("alice")).status_code == 200  # the KME is still fine


async def test_an_sae_of_the_other_kme_gets_401(kmes: Kmes) -> None:
    response = await kmes.enc("alice", sae="bank-b", slave="bank-a")
    assert response.status_code == 401
    assert "bank-b" in response.json()["message"]


async def test_another_saes_key_gets_401_and_stays_for_its_owner(kmes: Kmes) -> None:
    enc = await kmes.enc("bob", {"number": 1})  # bank-b -> bank-a
    ids = [k["key_ID"] for k in enc.json()["keys"]]
    stolen = await kmes.dec("alice", ids, sae="bank-c")  # bank-c also sits at alice
    assert stolen.status_code == 401 and stolen.json()["details"] == [{"key_ID": ids[0]}]
    wrong_master = await kmes.dec("alice", ids, master="bank-x")
    assert wrong_master.status_code == 401
    mine = await kmes.dec("alice", ids)
    assert mine.status_code == 200 and mine.json()["keys"] == enc.json()["keys"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"size": 252}, "size_not_multiple_of_8"),
        ({"size": 16384}, "size_unsupported"),
        ({"size": 8}, "size_unsupported"),
        ({"number": 1000}, "number_unsupported"),
        ({"number": 0}, "number_unsupported"),
        ({"additional_slave_SAE_IDs": ["bank-c"]}, "additional_slave_SAE_IDs"),
        ({"number": 20, "size": 256}, "keys_exhausted"),  # 16 stored
        ({"extension_mandatory": [{"route": "x"}]}, "extension_mandatory_unsupported"),
    ],
)
async def test_bad_requests_get_400_with_the_standards_body(
    kmes: Kmes, body: dict[str, object], detail: str
) -> None:
    for master in ("alice", "bob"):
        response = await kmes.enc(master, body)
        assert response.status_code == 400, response.text
        answer = response.json()
        assert set(answer) == {"message", "details"}
        assert any(detail in d for d in answer["details"]), answer
    async with kmes.client("bank-a") as client:
        status = (await client.get(f"{kmes.urls['alice']}/api/v1/keys/bank-b/status")).json()
    assert status["stored_key_count"] == 16  # nothing was used up by a refusal


async def test_unknown_slave_sae_gets_400(kmes: Kmes) -> None:
    response = await kmes.enc("alice", slave="bank-zz")
    assert response.status_code == 400 and "bank-zz" in response.json()["message"]


async def test_an_sae_cannot_call_the_kme_to_kme_routes(kmes: Kmes) -> None:
    async with kmes.client("bank-a") as client:
        response = await client.get(f"{kmes.urls['bob']}/kme/v1/inventory")
    assert response.status_code == 401


async def test_keys_are_never_logged(kmes: Kmes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    enc = await kmes.enc("alice", {"number": 2})
    dec = await kmes.dec("bob", [k["key_ID"] for k in enc.json()["keys"]])
    enc2 = await kmes.enc("bob", {"number": 2})
    assert dec.status_code == 200 and enc2.status_code == 200
    text = caplog.text
    assert "delivered 2 key(s)" in text  # the KMEs did log, at DEBUG and up
    for key in enc.json()["keys"] + enc2.json()["keys"]:
        raw = base64.b64decode(key["key"])
        for form in (key["key"], raw.hex(), str(list(raw[:8]))[1:-1]):
            assert form not in text


async def test_peer_down_gives_503_and_wastes_no_delivered_key(kmes: Kmes) -> None:
    await kmes.stop("bob")
    response = await kmes.enc("alice", {"number": 1})
    assert response.status_code == 503 and "KME-bob" in response.json()["message"]
    await kmes.start("bob")  # the void is told to bob at alice's next contact
    enc = await kmes.enc("alice", {"number": 1})
    assert enc.status_code == 200
    dec = await kmes.dec("bob", [enc.json()["keys"][0]["key_ID"]])
    assert dec.json()["keys"] == enc.json()["keys"]
    assert not kmes.servers["alice"].kme.ledger.state.tell_void


def test_sae_ids_fixture_matches_ca(ca_dir: Path) -> None:
    for sae in SAE.values():
        assert (ca_dir / f"sae-{sae}.pem").exists()


async def test_a_stopping_kme_drops_idle_connections_at_once(kmes: Kmes) -> None:
    """The peer KME keeps its connection alive between calls; a TLS close of such an idle
    connection waited (30 s) for a close_notify the idle peer client never sends, so a
    KME stopped only when uvicorn's graceful timeout gave up, with the connection still
    open. Idle connections are now aborted: none is left once the server has stopped."""
    assert (await kmes.enc("bob", {"number": 1})).status_code == 200  # bob -> alice
    assert (await kmes.enc("alice", {"number": 1})).status_code == 200  # alice -> bob
    state = kmes.servers["alice"].server.server_state
    assert state.connections  # bob's pooled connection to alice
    await kmes.stop("alice")
    assert not state.connections
    enc = await kmes.enc("bob", {"number": 1})
    assert enc.status_code == 503  # and bob notices alice is gone


async def test_connections_to_a_kme_have_nagle_off(kmes: Kmes) -> None:
    """The listening socket comes from socket.create_server (proto 0), on whose accepted
    sockets asyncio does not set TCP_NODELAY: every answer waited ~40 ms for a delayed ACK."""
    import socket

    async with kmes.client("bank-a") as client:
        response = await client.get(f"{kmes.urls['alice']}/api/v1/keys/bank-b/status")
        assert response.status_code == 200
        conns = kmes.servers["alice"].server.server_state.connections  # kept alive
        assert conns  # ours, and KME-bob's (it fetched alice's cursor when it started)
        for conn in conns:
            raw = conn.transport.get_extra_info("socket")
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


async def test_dec_keys_is_all_or_nothing(kmes: Kmes) -> None:
    enc = await kmes.enc("alice", {"number": 1})
    (key,) = enc.json()["keys"]
    mixed = await kmes.dec("bob", [key["key_ID"], "00000000-0000-0000-0000-000000000000"])
    assert mixed.status_code == 400
    assert mixed.json()["details"] == [{"key_ID": "00000000-0000-0000-0000-000000000000"}]
    assert (await kmes.dec("bob", [key["key_ID"]])).json()["keys"] == [key]


async def test_a_restart_voids_what_a_crash_left_unfinished_on_both_sides(
    ca_dir: Path, tmp_path: Path
) -> None:
    """As if KME-alice died after bob stored a key for bank-b but before alice recorded
    'done' (so bank-a never got it): on restart alice voids it and bob drops it."""
    from qhil.kms.config import load_config
    from qhil.kms.ledger import Ledger

    key_dir = tmp_path / "keys"
    save_pair(key_dir, 2048, seed=2)
    left = Ledger(key_dir / "kme-alice")
    left.append({"op": "begin", "alloc": "A1", "cursor": {}})
    left.close()
    held = Ledger(key_dir / "kme-bob")
    keys = [{"key_ID": "k-1", "master": "bank-a", "slave": "bank-b", "key": "AAAA"}]
    held.append({"op": "slave", "alloc": "A1", "keys": keys})
    held.close()
    bench = Kmes(load_config(ca_dir / "kms.toml"), key_dir, ca_dir)
    await bench.start("bob")
    await bench.start("alice")  # recovers: voids A1, tells bob
    try:
        assert not bench.servers["alice"].kme.ledger.state.begun
        assert not bench.servers["alice"].kme.ledger.state.tell_void
        assert "k-1" not in bench.servers["bob"].kme.ledger.state.slave
        assert (await bench.dec("bob", ["k-1"])).status_code == 400
    finally:
        await bench.stop("alice")
        await bench.stop("bob")


async def test_an_internal_error_is_a_503_with_the_standards_body(
    kmes: Kmes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(kmes.servers["alice"].kme, "status", broken)
    async with kmes.client("bank-a") as client:
        response = await client.get(f"{kmes.urls['alice']}/api/v1/keys/bank-b/status")
    assert response.status_code == 503
    assert response.json() == {"message": "error on the KME's side: RuntimeError"}
