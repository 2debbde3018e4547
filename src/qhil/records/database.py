"""The SQLite index: schema, connections in WAL mode, short transactions.

Each thread of each process gets its own connection, opened on first use and
kept: closing the last connection to a WAL database checkpoints it (with an
fsync), which would make every small write cost ~15 ms instead of ~0.1 ms.
Connections are never carried across ``fork`` (SQLite forbids it): a child
opens its own. Writers take the write lock up front (``BEGIN IMMEDIATE``) so
that two processes never deadlock upgrading read locks; ``busy_timeout`` makes
the loser wait instead of failing. Transactions are kept to a few statements.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qhil.records.errors import StoreVersionError

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


def connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    # WAL + NORMAL survives a crash of the process (not necessarily of the machine)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def initialise(db_path: Path) -> None:
    """Create or check the database; safe if several processes do it at once."""
    conn = connect(db_path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{db_path}: could not enable WAL (got {mode})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"{db_path}: schema version {found} is newer than this qhil understands "
                    f"({SCHEMA_VERSION}); upgrade qhil to read it"
                )
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
    """Per-thread, per-process connections to one index file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._forked_away: list[sqlite3.Connection] = []
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
            conn = connect(self.path)
            local.conn, local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: several SELECTs see the same snapshot."""
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")
