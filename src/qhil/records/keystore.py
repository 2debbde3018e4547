"""Final keys on disk: owner-only files, referenced elsewhere by id and SHA-256 only.

A key file ``<key_id>.qkey`` holds one JSON header line (id, length, SHA-256,
creation time, run id, label) and then the key bits packed with
``numpy.packbits`` (first bit = most significant bit of the first byte, the last
byte zero-padded). The SHA-256 is taken over those packed bytes; with the length
it identifies the key. Files are created 0600 and the directory 0700 whatever the
umask, and keys are refused on read if someone has loosened those permissions.

Nothing here logs, prints or puts into an exception message a key bit; the
``repr`` of a :class:`SecretKey` shows only its id, length and hash. (A SHA-256
of a very short key can be brute-forced; final keys are long.)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from qhil.records.clock import KEY_ID_RE, from_iso, new_key_id, utc_now
from qhil.records.errors import (
    KeyIntegrityError,
    KeyNotFoundError,
    KeyPermissionError,
    KeyStoreError,
)
from qhil.records.paths import default_key_dir

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
SUFFIX = ".qkey"
PENDING_SUFFIX = ".qkey.pending"
FORMAT = "qhil-key/1 packbits-msb-first"
_MAX_HEADER = 4096


class KeyRef(BaseModel):
    """What may be said about a key in public: id, length, hash, origin. Never its bits."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    length_bits: int
    sha256: str
    created_at: datetime
    run_id: str | None = None
    label: str | None = None


class SecretKey:
    """Key bits with their reference. ``repr``/``str`` show the reference only."""

    __slots__ = ("_bits", "ref")

    def __init__(self, bits: NDArray[np.uint8], ref: KeyRef) -> None:
        self._bits = bits
        self._bits.flags.writeable = False
        self.ref = ref

    @property
    def bits(self) -> NDArray[np.uint8]:
        """The key as a read-only uint8 array of 0/1."""
        return self._bits

    @property
    def key_id(self) -> str:
        return self.ref.key_id

    def packed(self) -> bytes:
        return np.packbits(self._bits).tobytes()

    def __len__(self) -> int:
        return self.ref.length_bits

    def __repr__(self) -> str:
        return (
            f"SecretKey(key_id={self.ref.key_id!r}, length_bits={self.ref.length_bits}, "
            f"sha256={self.ref.sha256[:16]}...)"
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        # constant-time: comparing keys must not leak where they first differ
        same_len = len(self._bits) == len(other._bits)
        return same_len & hmac.compare_digest(self.packed(), other.packed())

    __hash__ = None  # type: ignore[assignment]  # mutable-free but secret: keep out of sets


def key_digest(bits: NDArray[np.uint8]) -> str:
    """The SHA-256 a :class:`KeyRef` records for these bits (over ``numpy.packbits``)."""
    return hashlib.sha256(np.packbits(bits).tobytes()).hexdigest()


class KeyStore:
    """A directory of final keys, one owner-only file per key."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_key_dir()
        self._ensure_private_dir()

    def save(
        self,
        bits: NDArray[np.integer] | NDArray[np.bool_],
        *,
        run_id: str | None = None,
        label: str | None = None,
    ) -> KeyRef:
        """Store a usable key given as a 1-D array of 0/1 values; returns its public reference."""
        return self._save(bits, run_id=run_id, label=label, pending=False)

    def save_pending(
        self,
        bits: NDArray[np.integer] | NDArray[np.bool_],
        *,
        run_id: str | None = None,
        label: str | None = None,
    ) -> KeyRef:
        """Store a key that is not usable yet (not loaded or listed) until :meth:`commit`."""
        return self._save(bits, run_id=run_id, label=label, pending=True)

    def commit(self, key_id: str) -> KeyRef:
        """Make a pending key usable; returns its reference. Idempotent once committed.

        A hard link gives the key its usable name (never replacing a file), then the
        pending name goes: a crash in between leaves a usable key whose pending twin
        :meth:`pending_keys` ignores and the next commit or discard removes.
        """
        pending = self.pending_path_of(key_id)
        final = self.path_of(key_id)
        try:
            # FileExistsError: committed before (a crash between link and unlink, a second call)
            with contextlib.suppress(FileExistsError):
                os.link(pending, final)
            pending.unlink(missing_ok=True)
            self._fsync_dir()
        except FileNotFoundError:
            if not final.exists():
                raise KeyNotFoundError(key_id, str(self.directory)) from None
        except OSError as exc:
            raise KeyStoreError(
                f"cannot commit key {key_id} in {self.directory}: {exc.strerror or exc}"
            ) from None
        ref = self.info(key_id)
        log.info("committed key %s", key_id)
        return ref

    def discard(self, key_id: str) -> None:
        """Remove a pending key (never a committed one: that is :meth:`delete`)."""
        try:
            self.pending_path_of(key_id).unlink()
        except FileNotFoundError:
            raise KeyNotFoundError(key_id, str(self.directory)) from None
        log.info("discarded pending key %s", key_id)

    def is_committed(self, key_id: str) -> bool:
        """Whether ``key_id`` is a usable key here (a pending one is not)."""
        return self.path_of(key_id).exists()

    def pending_keys(self) -> list[KeyRef]:
        """References of the keys still pending (never confirmed), oldest first."""
        refs = []
        for path in self.directory.glob(f"*{PENDING_SUFFIX}"):
            key_id = path.name.removesuffix(PENDING_SUFFIX)
            if KEY_ID_RE.match(key_id) and not self.path_of(key_id).exists():
                header = self._read_private(path, key_id, header_only=True)
                refs.append(_parse(header, path)[0])
        return sorted(refs, key=lambda ref: (ref.created_at, ref.key_id))

    def check_writable(self) -> None:
        """Raise :class:`KeyStoreError` naming the directory unless a key file can be created
        there now (a probe, removed at once): for checking before a run, not after it."""
        probe = self.directory / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise KeyStoreError(
                f"key directory {self.directory} is not writable: {exc.strerror}"
            ) from None

    def _save(
        self,
        bits: NDArray[np.integer] | NDArray[np.bool_],
        *,
        run_id: str | None,
        label: str | None,
        pending: bool,
    ) -> KeyRef:
        clean = _validated_bits(bits)
        packed = np.packbits(clean).tobytes()
        for _ in range(8):  # a fresh random id; retry on the (unlikely) clash
            created = utc_now()
            ref = KeyRef(
                key_id=new_key_id(created),
                length_bits=int(clean.size),
                sha256=hashlib.sha256(packed).hexdigest(),
                created_at=created,
                run_id=run_id,
                label=label,
            )
            header = {"format": FORMAT, **ref.model_dump(mode="json")}
            content = json.dumps(header, separators=(",", ":")).encode() + b"\n" + packed
            path = self.pending_path_of(ref.key_id) if pending else self.path_of(ref.key_id)
            if pending and self.path_of(ref.key_id).exists():
                continue
            try:
                self._write_new(path, content)
            except FileExistsError:
                continue
            except OSError as exc:
                raise KeyStoreError(
                    f"cannot write key file {path}: {exc.strerror or exc}"
                ) from None
            log.info(
                "stored %skey %s: %d bits, sha256 %s",
                "pending " if pending else "",
                ref.key_id,
                ref.length_bits,
                ref.sha256,
            )
            return ref
        raise KeyStoreError(f"could not find a free key id in {self.directory}")

    def load(self, key_id: str) -> SecretKey:
        """Read a key back, checking permissions, length and SHA-256."""
        path = self.path_of(key_id)
        content = self._read_private(path, key_id)
        ref, payload = _parse(content, path)
        if ref.key_id != key_id:
            raise KeyIntegrityError(f"{path}: header names key {ref.key_id!r}, not {key_id!r}")
        if len(payload) != (ref.length_bits + 7) // 8:
            raise KeyIntegrityError(
                f"{path}: {len(payload)} bytes of key data, but {ref.length_bits} bits recorded"
            )
        if not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), ref.sha256):
            raise KeyIntegrityError(f"{path}: key data does not match its recorded sha256")
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
        if np.any(bits[ref.length_bits :]):
            raise KeyIntegrityError(f"{path}: padding bits after the key are not zero")
        return SecretKey(bits[: ref.length_bits].copy(), ref)

    def info(self, key_id: str) -> KeyRef:
        """The reference of a stored key, without reading its bits."""
        path = self.path_of(key_id)
        header = self._read_private(path, key_id, header_only=True)
        ref, _ = _parse(header, path)
        return ref

    def list_keys(self) -> list[KeyRef]:
        """References of all stored keys, oldest first."""
        refs = [
            self.info(path.name.removesuffix(SUFFIX))
            for path in self.directory.glob(f"*{SUFFIX}")
            if KEY_ID_RE.match(path.name.removesuffix(SUFFIX))
        ]
        return sorted(refs, key=lambda ref: (ref.created_at, ref.key_id))

    def delete(self, key_id: str) -> None:
        """Remove a key file (an unlink: it does not scrub the disk)."""
        path = self.path_of(key_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyNotFoundError(key_id, str(self.directory)) from None
        log.info("deleted key %s", key_id)

    def path_of(self, key_id: str) -> Path:
        if not KEY_ID_RE.match(key_id):
            raise KeyStoreError(
                f"{key_id!r} is not a key id (expected key-YYYYMMDD-HHMMSS-xxxxxxxx)"
            )
        return self.directory / f"{key_id}{SUFFIX}"

    def pending_path_of(self, key_id: str) -> Path:
        return self.path_of(key_id).with_name(f"{key_id}{PENDING_SUFFIX}")

    def _ensure_private_dir(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise KeyStoreError(f"key directory {self.directory} exists and is not a directory")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            mode = stat.S_IMODE(self.directory.stat().st_mode)
        except OSError as exc:
            raise KeyStoreError(
                f"key directory {self.directory} cannot be created: {exc.strerror or exc}"
            ) from None
        if mode != DIR_MODE:
            # mkdir's mode is cut by the umask, and an existing directory may be open
            try:
                os.chmod(self.directory, DIR_MODE)
            except OSError as exc:
                raise KeyPermissionError(
                    f"key directory {self.directory} has mode {mode:04o} and cannot be made "
                    f"{DIR_MODE:04o}: {exc.strerror}"
                ) from None
            if mode & 0o077:
                log.warning(
                    "key directory %s had mode %04o; tightened to %04o",
                    self.directory,
                    mode,
                    DIR_MODE,
                )

    def _write_new(self, path: Path, content: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, flags, FILE_MODE)
        try:
            try:
                os.fchmod(fd, FILE_MODE)  # the umask may have removed bits from the open() mode
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(content)
                    handle.flush()
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, path)  # unlike rename, never replaces an existing key
        finally:
            tmp.unlink(missing_ok=True)  # also after a failed write (disk full): no partial key
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _read_private(self, path: Path, key_id: str, header_only: bool = False) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KeyNotFoundError(key_id, str(self.directory)) from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            mode = stat.S_IMODE(info.st_mode)
            if mode != FILE_MODE:
                raise KeyPermissionError(
                    f"refusing to read key file {path}: mode {mode:04o}, expected "
                    f"{FILE_MODE:04o} (chmod 600 it if you trust its content)"
                )
            if info.st_uid != os.getuid():
                raise KeyPermissionError(f"refusing to read key file {path}: not owned by you")
            return handle.readline(_MAX_HEADER) if header_only else handle.read()


def _validated_bits(bits: NDArray[np.integer] | NDArray[np.bool_]) -> NDArray[np.uint8]:
    array = np.asarray(bits)
    if array.ndim != 1:
        raise KeyStoreError(f"a key is a 1-D array of bits; got shape {array.shape}")
    if array.size == 0:
        raise KeyStoreError("a key of zero length cannot be stored")
    if array.dtype.kind not in "biu":
        raise KeyStoreError(f"key bits must be integers or booleans; got dtype {array.dtype}")
    if array.dtype.kind != "b" and (np.any(array < 0) or np.any(array > 1)):
        # which values were wrong is not said: they are (almost) key material
        raise KeyStoreError("key bits must all be 0 or 1")
    return array.astype(np.uint8)


def _parse(content: bytes, path: Path) -> tuple[KeyRef, bytes]:
    header, newline, payload = content.partition(b"\n")
    if not newline:
        raise KeyIntegrityError(f"{path}: no header line; not a qhil key file")
    try:
        fields = json.loads(header)
        if fields.pop("format", None) != FORMAT:
            raise ValueError("unknown format")
        fields["created_at"] = from_iso(fields["created_at"])
        ref = KeyRef.model_validate(fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyIntegrityError(f"{path}: unreadable key header ({exc})") from None
    return ref, payload
