"""Final keys: owner-only files whatever the umask, integrity on read, no bits in logs."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qhil.records import (
    KeyIntegrityError,
    KeyNotFoundError,
    KeyPermissionError,
    KeyStore,
    KeyStoreError,
    RunStore,
    format_run_detail,
    key_digest,
)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def random_bits(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277], indirect=True)
def test_permissions_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    keys = KeyStore(tmp_path / "keys")
    ref = keys.save(random_bits(1024, 1))
    assert mode_of(keys.directory) == 0o700
    assert mode_of(keys.path_of(ref.key_id)) == 0o600
    assert keys.path_of(ref.key_id).stat().st_uid == os.getuid()
    # no temporary file is left behind
    assert [p.name for p in keys.directory.iterdir()] == [f"{ref.key_id}.qkey"]


def test_existing_open_directory_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    directory.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        KeyStore(directory)
    assert mode_of(directory) == 0o700
    assert "tightened" in caplog.text


@pytest.mark.parametrize("length", [1, 7, 8, 9, 1000, 100_003])
def test_round_trip_and_recorded_hash(tmp_path: Path, length: int) -> None:
    keys = KeyStore(tmp_path)
    bits = random_bits(length, length)
    ref = keys.save(bits, run_id="20261126-121834-3f2a", label="alice")
    assert ref.length_bits == length
    assert ref.sha256 == hashlib.sha256(np.packbits(bits).tobytes()).hexdigest() == key_digest(bits)
    assert (ref.run_id, ref.label) == ("20261126-121834-3f2a", "alice")

    loaded = keys.load(ref.key_id)
    np.testing.assert_array_equal(loaded.bits, bits)
    assert loaded.bits.dtype == np.uint8 and not loaded.bits.flags.writeable
    assert loaded.ref == ref == keys.info(ref.key_id)
    assert len(loaded) == length


def test_bool_bits_and_list_and_delete(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    a = keys.save(np.array([True, False, True]))
    b = keys.save(np.array([0, 1, 1, 0], dtype=np.int64))
    assert [r.key_id for r in keys.list_keys()] == [a.key_id, b.key_id]
    np.testing.assert_array_equal(keys.load(a.key_id).bits, [1, 0, 1])
    keys.delete(a.key_id)
    assert [r.key_id for r in keys.list_keys()] == [b.key_id]
    with pytest.raises(KeyNotFoundError):
        keys.load(a.key_id)
    with pytest.raises(KeyNotFoundError):
        keys.delete(a.key_id)


def test_equal_keys_compare_equal(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    bits = random_bits(333, 5)
    alice, bob = keys.save(bits), keys.save(bits.copy())
    other = bits.copy()
    other[200] ^= 1
    eve = keys.save(other)
    assert keys.load(alice.key_id) == keys.load(bob.key_id)
    assert keys.load(alice.key_id) != keys.load(eve.key_id)
    assert alice.sha256 == bob.sha256 != eve.sha256


@pytest.mark.parametrize(
    ("bits", "message"),
    [
        (np.array([0, 1, 2]), "0 or 1"),
        (np.array([0, -1]), "0 or 1"),
        (np.array([0.0, 1.0]), "dtype float64"),
        (np.zeros((2, 4), dtype=np.uint8), "1-D"),
        (np.zeros(0, dtype=np.uint8), "zero length"),
    ],
)
def test_bad_bits_are_refused(tmp_path: Path, bits: np.ndarray, message: str) -> None:
    keys = KeyStore(tmp_path)
    with pytest.raises(KeyStoreError, match=message):
        keys.save(bits)
    assert keys.list_keys() == []


def test_loosened_file_is_refused(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    ref = keys.save(random_bits(256, 2))
    keys.path_of(ref.key_id).chmod(0o644)
    with pytest.raises(KeyPermissionError, match="mode 0644, expected 0600"):
        keys.load(ref.key_id)


def test_tampered_key_is_detected(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    ref = keys.save(random_bits(256, 3))
    path = keys.path_of(ref.key_id)
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(bytes(content))
    with pytest.raises(KeyIntegrityError, match="does not match its recorded sha256"):
        keys.load(ref.key_id)
    path.write_bytes(bytes(content[:-2]))
    with pytest.raises(KeyIntegrityError, match="bits recorded"):
        keys.load(ref.key_id)


def test_bad_key_id_is_refused(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    with pytest.raises(KeyStoreError, match="not a key id"):
        keys.load("../../etc/passwd")


def test_no_key_bits_in_logs_reprs_or_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bits = random_bits(512, 4)
    packed = np.packbits(bits).tobytes()
    renderings = {
        "bit string": "".join(map(str, bits[:64])),
        "bit list": str(bits[:32].tolist())[1:-1],
        "numpy repr": np.array2string(bits[:32], separator=", ")[1:-1],
        "hex": packed[:8].hex(),
        "base64": base64.b64encode(packed)[:12].decode(),
        "bytes repr": repr(packed[:8])[2:-1],
    }
    keys = KeyStore(tmp_path / "keys")
    store = RunStore(tmp_path / "data")
    with caplog.at_level(logging.DEBUG):
        ref = keys.save(bits, label="bb84 final")
        secret = keys.load(ref.key_id)
        with store.start_run("bb84") as run:
            run.add_key(secret)
            run.log_result("secret_bits", len(secret))
        record = store.get(run.run_id)
    texts = {
        "logs": caplog.text,
        "repr(secret)": repr(secret),
        "str(secret)": str(secret),
        "f-string": f"{secret}",
        "repr(ref)": repr(ref),
        "record json": str(record.to_json_dict()),
        "record detail": format_run_detail(record),
        "repr(record)": repr(record),
    }
    # the check itself works: the secret's bits do show up where they are
    assert renderings["bit string"] in "".join(map(str, secret.bits))
    for where, text in texts.items():
        for form, rendering in renderings.items():
            assert rendering not in text, f"key bits ({form}) appear in {where}"
    assert ref.key_id in caplog.text  # the logs do talk about the key
    assert [k.key_id for k in record.keys] == [ref.key_id]
    assert record.keys[0].sha256 == ref.sha256


def test_run_refuses_raw_bits_as_key(tmp_path: Path) -> None:
    from qhil.records import RecordValueError

    store = RunStore(tmp_path)
    with store.start_run("bb84") as run, pytest.raises(RecordValueError, match="KeyRef"):
        run.add_key(random_bits(64, 6))  # type: ignore[arg-type]


def test_error_messages_do_not_echo_bits(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    bits = random_bits(256, 7)
    bits[100] = 3
    with pytest.raises(KeyStoreError) as caught:
        keys.save(bits)
    assert "".join(map(str, bits[:32])) not in str(caught.value)
    assert str(bits[:16].tolist())[1:-1] not in str(caught.value)


# --- pending keys: saved, confirmed with the peer, then committed or discarded ---


def test_a_pending_key_is_not_usable_until_committed(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    bits = random_bits(777, 11)
    ref = keys.save_pending(bits, run_id="r1", label="bob")
    pending = keys.pending_path_of(ref.key_id)
    assert mode_of(pending) == 0o600
    # the normal read/list API never hands it out
    assert keys.list_keys() == []
    assert not keys.is_committed(ref.key_id)
    with pytest.raises(KeyNotFoundError):
        keys.load(ref.key_id)
    with pytest.raises(KeyNotFoundError):
        keys.info(ref.key_id)
    assert [r.key_id for r in keys.pending_keys()] == [ref.key_id]
    committed = keys.commit(ref.key_id)
    assert committed == ref and keys.is_committed(ref.key_id)
    assert [r.key_id for r in keys.list_keys()] == [ref.key_id]
    np.testing.assert_array_equal(keys.load(ref.key_id).bits, bits)
    assert keys.pending_keys() == [] and not pending.exists()
    assert mode_of(keys.path_of(ref.key_id)) == 0o600
    assert keys.commit(ref.key_id) == ref  # idempotent


def test_a_discarded_pending_key_leaves_nothing(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    ref = keys.save_pending(random_bits(64, 12))
    keys.discard(ref.key_id)
    assert list(keys.directory.iterdir()) == []
    with pytest.raises(KeyNotFoundError):
        keys.commit(ref.key_id)
    with pytest.raises(KeyNotFoundError):
        keys.discard(ref.key_id)
    committed = keys.save(random_bits(64, 13))
    with pytest.raises(KeyNotFoundError):  # discard never removes a usable key
        keys.discard(committed.key_id)
    assert keys.is_committed(committed.key_id)


def test_a_crash_inside_commit_leaves_one_usable_key(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    ref = keys.save_pending(random_bits(100, 14))
    # the process died between the link and the unlink of the pending name
    os.link(keys.pending_path_of(ref.key_id), keys.path_of(ref.key_id))
    assert keys.pending_keys() == []
    assert [r.key_id for r in keys.list_keys()] == [ref.key_id]
    keys.commit(ref.key_id)  # completes it
    assert sorted(p.name for p in keys.directory.iterdir()) == [f"{ref.key_id}.qkey"]


def test_a_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(KeyStoreError, match=rf"key directory {blocker}/keys cannot be created"):
        KeyStore(blocker / "keys")
    with pytest.raises(KeyStoreError, match=rf"key directory {blocker} exists and is not a dir"):
        KeyStore(blocker)


def test_check_writable_and_a_failed_write_name_the_directory(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    keys.check_writable()
    assert list(keys.directory.iterdir()) == []  # the probe is gone
    keys.directory.rmdir()  # removed mid-run
    with pytest.raises(KeyStoreError, match=rf"key directory {keys.directory} is not writable"):
        keys.check_writable()
    with pytest.raises(KeyStoreError, match=rf"cannot write key file {keys.directory}/key-"):
        keys.save_pending(random_bits(10, 15))
