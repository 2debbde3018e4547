"""The KME ledger: replay after a crash, compaction, one writer, capacity for producers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from qhil.kms.capacity import key_capacity
from qhil.kms.ledger import LEDGER, Ledger, LedgerBusyError

from .conftest import save_pair


def _slave(alloc: str, key_id: str, key: str = "c2VjcmV0") -> dict[str, object]:
    return {
        "op": "slave",
        "alloc": alloc,
        "cursor": {"ab": 256},
        "keys": [{"key_ID": key_id, "master": "bank-b", "slave": "bank-a", "key": key}],
    }


def test_replay_ignores_a_torn_last_record(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.append(_slave("a1", "k1"))
    ledger.append({"op": "begin", "alloc": "a2", "cursor": {"ab": 512}})
    ledger.close()
    with open(tmp_path / LEDGER, "ab") as f:
        f.write(b'{"op":"served","key_IDs":["k1"')  # kill -9 in the middle of a write
    again = Ledger(tmp_path)
    assert set(again.state.slave) == {"k1"} and again.state.begun == {"a2"}
    assert again.state.cursor == {"ab": 512}
    again.close()


def test_a_corrupt_record_before_the_last_is_an_error(tmp_path: Path) -> None:
    (tmp_path / LEDGER).write_bytes(
        b'{"op":"begin","alloc":"a"}\nnot json\n{"op":"done","alloc":"a"}\n'
    )
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        Ledger(tmp_path)


def test_compaction_drops_served_keys_bytes_and_keeps_promises(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.append(_slave("a1", "k1", key="U0VSVkVE"))
    ledger.append(_slave("a2", "k2", key="S0VFUA=="))
    ledger.append({"op": "served", "key_IDs": ["k1"]})
    ledger.append({"op": "void", "alloc": "a9", "tell": True})
    ledger.close()
    assert b"U0VSVkVE" not in (tmp_path / LEDGER).read_bytes()  # compacted when served
    again = Ledger(tmp_path)  # compacts at open too
    text = (tmp_path / LEDGER).read_bytes()
    assert b"U0VSVkVE" not in text and b"S0VFUA==" in text
    assert set(again.state.slave) == {"k2"} and again.state.tell_void == {"a9"}
    assert stat.S_IMODE((tmp_path / LEDGER).stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    again.close()


def test_a_void_that_overtakes_its_store_keeps_the_keys_out(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.append({"op": "void", "alloc": "a1", "tell": False})
    ledger.append(_slave("a1", "k1"))
    assert not ledger.state.slave and ledger.state.cursor == {"ab": 256}
    ledger.close()


def test_one_kme_per_ledger(tmp_path: Path) -> None:
    first = Ledger(tmp_path)
    with pytest.raises(LedgerBusyError, match="another KME of this node is running"):
        Ledger(tmp_path)
    first.close()
    Ledger(tmp_path).close()  # free again once the first has gone


def test_key_capacity_counts_what_the_kme_has_not_handed_out(tmp_path: Path) -> None:
    save_pair(tmp_path, 4096, seed=3)
    save_pair(tmp_path, 1000, seed=4)
    cap = key_capacity(tmp_path, "alice", key_size=256, max_key_count=20)
    assert cap.stored_key_count == 5096 // 256 and not cap.full
    assert key_capacity(tmp_path, "carol").stored_key_count == 0
    sha = _shas(tmp_path)[4096]
    ledger = Ledger(tmp_path / "kme-alice")
    ledger.append({"op": "cursor", "cursor": {sha: 4096}})  # one whole file handed out
    ledger.close()
    left = key_capacity(tmp_path, "alice", key_size=256, max_key_count=3)
    assert left.stored_key_count == 1000 // 256 and left.max_key_count == 3 and left.full


def _shas(key_dir: Path) -> dict[int, str]:
    from qhil.records.keystore import KeyStore

    return {r.length_bits: r.sha256 for r in KeyStore(key_dir).list_keys() if r.label == "alice"}


def test_a_key_file_with_loosened_permissions_is_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the KeyPermissionError escaped every status/enc_keys request (HTTP 500)."""
    import os

    from qhil.kms.material import Material
    from qhil.records.keystore import KeyStore

    save_pair(tmp_path, 1024, seed=8)
    save_pair(tmp_path, 2048, seed=9)
    (loose,) = (
        r for r in KeyStore(tmp_path).list_keys() if r.label == "alice" and r.length_bits == 1024
    )
    os.chmod(tmp_path / f"{loose.key_id}.qkey", 0o644)
    assert [f.length_bits for f in Material(tmp_path, "alice").files()] == [2048]
    assert "key file not served" in caplog.text and "mode 0644" in caplog.text
