"""A KME's persistent ledger: what it allocated, what it holds for its SAEs, what it owes
its peer. One JSON record per line, each written and fsync'd before the KME acts on it
(answers its peer or an SAE), so a KME killed at any moment (kill -9) restarts from
exactly the promises it made. The file is 0600 in a 0700 directory: slave-side entries
hold key material until their SAE fetches them: the ``served`` record that deletes the
entry compacts the file at once, so a delivered key's bytes leave the disk before the SAE
gets its answer; the file is also compacted whenever it grows past ``COMPACT_BYTES``.

Records (``op``):

* ``begin {alloc}`` — this KME started an enc_keys for its master SAE;
* ``done {alloc}`` — it handed those keys to the master SAE;
* ``void {alloc, tell}`` — the allocation is abandoned (``tell``: the peer must hear it);
* ``told {allocs}`` — the peer has heard of these voids;
* ``slave {alloc, keys: [{key_ID, master, slave, key}]}`` — keys held for a slave SAE;
* ``served {key_IDs}`` — the slave SAE has them: deleted here;
* any record may carry ``cursor {sha256: bit}``: the key files' bits below it are used up.

A last line torn by a crash was never fsync'd, so never acted on: replay ignores it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LEDGER = "ledger.jsonl"
# records appended since the last snapshot, in bytes, that trigger a compaction
COMPACT_BYTES = 256 * 1024


class LedgerBusyError(OSError):
    """Another process holds this node's ledger."""


@dataclass
class SlaveKey:
    alloc: str
    master: str
    slave: str
    key: str  # base64: secret


@dataclass
class LedgerState:
    cursor: dict[str, int] = field(default_factory=dict)
    begun: set[str] = field(default_factory=set)
    tell_void: set[str] = field(default_factory=set)
    voided: set[str] = field(default_factory=set)
    slave: dict[str, SlaveKey] = field(default_factory=dict)

    def apply(self, rec: dict[str, Any]) -> None:
        for sha, end in rec.get("cursor", {}).items():
            self.cursor[sha] = max(self.cursor.get(sha, 0), int(end))
        op = rec["op"]
        if op == "begin":
            self.begun.add(rec["alloc"])
        elif op == "done":
            self.begun.discard(rec["alloc"])
        elif op == "void":
            alloc = rec["alloc"]
            self.begun.discard(alloc)
            self.voided.add(alloc)
            if rec.get("tell"):
                self.tell_void.add(alloc)
            for key_id in [k for k, v in self.slave.items() if v.alloc == alloc]:
                del self.slave[key_id]
        elif op == "told":
            self.tell_void.difference_update(rec["allocs"])
        elif op == "slave":
            if rec["alloc"] in self.voided:  # a void that overtook its store: stays void
                return
            for k in rec["keys"]:
                self.slave[k["key_ID"]] = SlaveKey(rec["alloc"], k["master"], k["slave"], k["key"])
        elif op == "served":
            for key_id in rec["key_IDs"]:
                self.slave.pop(key_id, None)
        elif op == "cursor":
            pass  # the cursor, merged above
        elif op == "snapshot":
            self.begun = set(rec["begun"])
            self.tell_void = set(rec["tell_void"])
            self.voided = set(rec["voided"])
            self.slave = {k: SlaveKey(**v) for k, v in rec["slave"].items()}
        else:
            raise ValueError(f"unknown ledger record {op!r}")

    def snapshot(self) -> dict[str, Any]:
        return {
            "op": "snapshot",
            "cursor": dict(self.cursor),
            "begun": sorted(self.begun),
            "tell_void": sorted(self.tell_void),
            "voided": sorted(self.voided),
            "slave": {
                k: {"alloc": v.alloc, "master": v.master, "slave": v.slave, "key": v.key}
                for k, v in self.slave.items()
            },
        }


class Ledger:
    """Replays the ledger at open (then compacts it); ``append`` applies and fsyncs a record."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self.path = self.directory / LEDGER
        # one KME per ledger: a second one would interleave records (the kernel drops the
        # lock when the holder dies, kill -9 included)
        self._lock = open(self.directory / "lock", "a")  # noqa: SIM115 (held while open)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise LedgerBusyError(
                f"{self.directory}: another KME of this node is running"
            ) from None
        self.state = LedgerState()
        self._replay()
        self._compact()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._grown = 0

    def _replay(self) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if number >= len(lines) - 1:  # the torn last line of a crash: never acted on
                    log.warning("ledger %s: ignoring a torn last record", self.path)
                    break
                raise ValueError(f"{self.path}: line {number} is not JSON") from None
            self.state.apply(rec)

    def _compact(self) -> None:
        """Rewrite as one snapshot (served keys' bytes leave the file), atomically."""
        tmp = self.path.with_name(f".{LEDGER}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(self.state.snapshot()).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def append(self, rec: dict[str, Any]) -> None:
        """Write, fsync, then apply: the KME acts on a record only once it is on disk.

        A ``served`` record compacts the file at once (the delivered keys' bytes leave
        the disk), and so does a file grown past ``COMPACT_BYTES`` (it stays bounded)."""
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.state.apply(rec)
        self._grown += len(line)
        if rec["op"] == "served" or self._grown > COMPACT_BYTES:
            self.compact()

    def compact(self) -> None:
        """Rewrite the file as one snapshot of the state (atomically, crash-safe)."""
        self._file.close()
        self._compact()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._grown = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._lock.close()
