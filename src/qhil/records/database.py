"""The SQLite index: schema, connections in WAL mode, short transactions.

Each thread of each process gets its own connection, opened on first use and
kept: closing the last connection to a WAL database checkpoints it (with an
fsync), which would make every small write cost ~15 ms instead of ~0.1 ms.
Connections are never carried across ``fork`` (SQLite forbids it): a child
opens its own. Writers take the write lock up front (``BEGIN IMMEDIATE``) so
that two processes never deadlock upgrading read locks; ``busy_timeout`` makes
the loser wait instead of failing. Transactions are kept to a few statements.

A store opened read-only (``qhil runs list`` / ``show``) connects with the URI
``mode=ro``, so nothing is ever written; where SQLite cannot read a WAL database
that way (no ``-shm`` file, and a directory it may not create one in) it falls
back to ``immutable=1``, which is exact then: without a ``-wal`` file every
committed row is in the main file. Every SQLite error leaves as
:class:`StoreAccessError` naming the index file.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qhil.records.errors import StoreAccessError, StoreVersionError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('running', 'success', 'aborted', 'failed', 'incomplete')),
    reason       TEXT,
    started_at   TEXT NOT NULL,   -- ISO 8601 UTC, fixed format: sorts like the instants
    stopped_at   TEXT,
    seed         TEXT,            -- decimal text: seeds may exceed 64 bits
    profile      TEXT,            -- JSON ProfileSnapshot
    identities   TEXT NOT NULL DEFAULT '{}',
    software     TEXT NOT NULL,
    parameters   TEXT NOT NULL DEFAULT '{}',
    keys         TEXT NOT NULL DEFAULT '[]',   -- JSON list of KeyRef: ids and hashes only
    owner_pid    INTEGER NOT NULL,
    owner_host   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    heartbeat_s  REAL NOT NULL,   -- the owner's beat interval: readers judge staleness by it
    data_file    TEXT             -- HDF5 file relative to the data directory
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_by_kind ON runs (kind, started_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);

CREATE TABLE IF NOT EXISTS results (
    run_id    TEXT NOT NULL REFERENCES runs (run_id),
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,      -- JSON scalar, so bool/int/float/str/None keep their type
    unit      TEXT,
    logged_at TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);

-- rows committed per array: written after the HDF5 flush, so readers trust these
-- counts, never a dataset length a crash may have left half-written
CREATE TABLE IF NOT EXISTS arrays (
    run_id     TEXT NOT NULL REFERENCES runs (run_id),
    name       TEXT NOT NULL,
    dtype      TEXT NOT NULL,     -- JSON numpy dtype descr
    shape_tail TEXT NOT NULL,     -- JSON list: shape of one row
    rows       INTEGER NOT NULL,
    appends    INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


def access_error(db_path: Path, exc: sqlite3.Error, doing: str) -> StoreAccessError:
    """An SQLite error as a one-line store error that names the index file."""
    text = str(exc) or type(exc).__name__
    hint = ""
    if "not a database" in text or "malformed" in text:
        hint = " (the file is corrupt or not a qhil run index)"
    elif "readonly" in text or "read-only" in text:
        hint = " (the store is read-only)"
    elif "unable to open" in text:
        hint = " (missing, or its directory is not readable/writable as needed)"
    return StoreAccessError(f"run index {db_path}: cannot {doing}: {text}{hint}")


#: How long a read-only probe waits for a lock: a read-only ``-shm`` that a live writer
#: holds makes SQLite retry for the whole busy timeout before it gives up.
_PROBE_TIMEOUT_S = 1.0


def connect(
    db_path: Path, *, readonly: str | None = None, timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """A connection; ``readonly`` is None (read-write) or the URI mode ``"ro"`` or
    ``"immutable"``."""
    try:
        if readonly is None:
            conn = sqlite3.connect(
                db_path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
        else:
            query = "immutable=1" if readonly == "immutable" else "mode=ro"
            conn = sqlite3.connect(
                f"{db_path.resolve().as_uri()}?{query}",
                uri=True,
                timeout=timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        conn.row_factory = sqlite3.Row
        if readonly is None:
            # WAL + NORMAL survives a crash of the process (not necessarily of the machine)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        else:
            conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise access_error(db_path, exc, "open it") from None
    return conn


def _check_version(db_path: Path, found: int) -> None:
    if found > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{db_path}: schema version {found} is newer than this qhil understands "
            f"({SCHEMA_VERSION}); upgrade qhil to read it"
        )


def _probe(db_path: Path, mode: str, shown: Path) -> sqlite3.OperationalError | None:
    """Whether ``db_path`` reads in ``mode`` (None) or why not; checks it is our index."""
    try:
        conn = connect(db_path, readonly=mode, timeout_s=_PROBE_TIMEOUT_S)
    except StoreAccessError as exc:
        return sqlite3.OperationalError(str(exc))
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.OperationalError as exc:  # e.g. WAL without a usable -shm
        return exc
    except sqlite3.Error as exc:
        raise access_error(shown, exc, "read it") from None
    finally:
        conn.close()
    _check_version(shown, found)
    if "runs" not in tables:
        raise StoreAccessError(f"run index {shown}: not a qhil run index (no runs table)")
    return None


def open_readonly(db_path: Path) -> tuple[str, Path]:
    """How to read a database without writing it: (URI mode, file to open).

    ``mode=ro`` where SQLite can; else, with no committed rows left in a ``-wal``
    file, ``immutable=1`` (exact then); else a private copy of the index and its
    log, read from a temporary directory that goes when the process ends.
    """
    why = _probe(db_path, "ro", db_path)
    if why is None:
        return "ro", db_path
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        pending = wal.stat().st_size > 0
    except FileNotFoundError:
        pending = False
    except OSError as exc:
        raise StoreAccessError(f"run index {db_path}: cannot read {wal.name}: {exc}") from None
    if not pending:
        if _probe(db_path, "immutable", db_path) is None:
            return "immutable", db_path
        raise access_error(db_path, why, "read it")
    snapshot = Path(tempfile.mkdtemp(prefix="qhil-runs-ro-")) / db_path.name
    try:
        shutil.copyfile(db_path, snapshot)
        shutil.copyfile(wal, snapshot.with_name(snapshot.name + "-wal"))
        # A private copy may be written (SQLite folds the log into it); the store is not.
        why = _probe(snapshot, "ro", db_path)
        if why is not None:
            raise access_error(db_path, why, "read it")
    except OSError as exc:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
        raise StoreAccessError(f"run index {db_path}: cannot copy it to read it: {exc}") from None
    except BaseException:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
        raise
    log.info("run index %s is read-only with a pending log: reading a copy", db_path)
    return "ro", snapshot


def initialise(db_path: Path) -> None:
    """Create or check the database; safe if several processes do it at once."""
    try:
        _initialise(db_path)
    except sqlite3.Error as exc:
        raise access_error(db_path, exc, "open it for writing") from None


def _initialise(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{db_path}: could not enable WAL (got {mode})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            _check_version(db_path, found)
            if found < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


class Database:
    """Per-thread, per-process connections to one index file (``readonly``: never written)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._local = threading.local()
        self._forked_away: list[sqlite3.Connection] = []
        self._mode: str | None = None
        self._open_path = path
        if readonly:
            self._mode, self._open_path = open_readonly(path)
            if self._open_path != path:  # a private copy: gone with this object
                weakref.finalize(self, shutil.rmtree, self._open_path.parent, ignore_errors=True)
        else:
            initialise(path)

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid != os.getpid():
            # inherited through fork: neither use nor close it (closing would touch the
            # parent's locks); keep it referenced so that it is never finalised here
            self._forked_away.append(conn)
            conn = None
        if conn is None:
            conn = connect(self._open_path, readonly=self._mode)
            local.conn, local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (the last one to close checkpoints the WAL)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction."""
        if self.readonly:
            raise StoreAccessError(f"run index {self.path}: opened read-only, cannot write")
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # IntegrityError is the caller's to handle (e.g. a run id drawn twice)
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            raise access_error(self.path, exc, "write it") from None

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: several SELECTs see the same snapshot."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise access_error(self.path, exc, "read it") from None
