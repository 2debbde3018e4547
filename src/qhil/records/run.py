"""The writing side of one run: the handle a running experiment records into."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike

from qhil import __version__
from qhil.records.arrays import ArrayWriter, as_rows, check_array_name, dtype_to_text
from qhil.records.clock import to_iso, utc_now
from qhil.records.errors import RecordValueError, RunStateError
from qhil.records.jsonable import dumps, to_scalar
from qhil.records.keystore import KeyRef, SecretKey
from qhil.records.liveness import Heartbeat, OwnerLock
from qhil.records.models import RunRecord, RunStatus

if TYPE_CHECKING:
    from qhil.records.store import RunStore

log = logging.getLogger(__name__)

# Exceptions that mean "stopped on purpose", not "went wrong".
_ABORTING = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)


class Run:
    """A run being recorded. Use it as a (sync or async) context manager:

    leaving the block normally finishes the run as ``success``; leaving it by an
    exception finishes it as ``failed`` (``aborted`` for KeyboardInterrupt,
    SystemExit or cancellation) with the exception as reason. Methods are
    thread-safe; every write is its own short transaction, so what was recorded
    survives the process dying at any later moment.
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        kind: str,
        started_at: datetime,
        lock: OwnerLock,
        identities: dict[str, str],
        heartbeat_interval_s: float,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._kind = kind
        self._started_at = started_at
        self._lock = lock
        self._identities = identities
        self._keys: list[KeyRef] = []
        self._status = RunStatus.RUNNING
        self._writer: ArrayWriter | None = None
        self._mutex = threading.RLock()
        self._heartbeat = Heartbeat(self._beat, heartbeat_interval_s, f"qhil-run-{run_id}")

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def started_at(self) -> datetime:
        return self._started_at

    @property
    def status(self) -> RunStatus:
        return self._status

    @property
    def data_path(self) -> Path | None:
        """The run's HDF5 file, once something was appended."""
        return self._writer.path if self._writer is not None else None

    def __repr__(self) -> str:
        return f"Run({self._run_id!r}, kind={self._kind!r}, status={self._status.value!r})"

    # -- recording -------------------------------------------------------------------

    def set_identities(self, identities: Mapping[str, str]) -> None:
        """Record instrument identities (name -> ``*IDN?``-like string); merges with earlier."""
        clean = check_identities(identities)
        with self._mutex:
            self._require_running("set identities")
            self._identities.update(clean)
            with self._store.database.writing() as conn:
                conn.execute(
                    "UPDATE runs SET identities = ? WHERE run_id = ?",
                    (dumps(self._identities), self._run_id),
                )

    def append(self, name: str, data: ArrayLike, *, compression: str | None = None) -> int:
        """Append rows (along axis 0) to the named array, creating it on first use.

        The first block fixes the dtype and the shape of a row; a scalar is one
        row. ``compression`` (e.g. ``"gzip"``, ``"lzf"``) applies when the array
        is created. Returns the number of rows now committed.
        """
        check_array_name(name)
        block = as_rows(name, data)
        with self._mutex:
            self._require_running(f"append to {name!r}")
            writer = self._writer or self._open_writer()
            rows, created = writer.append(name, block, compression)
            now = to_iso(utc_now())
            # committed only after the HDF5 flush: readers trust these row counts
            with self._store.database.writing() as conn:
                if created:
                    conn.execute(
                        "INSERT INTO arrays (run_id, name, dtype, shape_tail, rows, appends) "
                        "VALUES (?, ?, ?, ?, ?, 1)",
                        (
                            self._run_id,
                            name,
                            dtype_to_text(writer.dtype_of(name)),
                            dumps(list(block.shape[1:])),
                            rows,
                        ),
                    )
                else:
                    conn.execute(
                        "UPDATE arrays SET rows = ?, appends = appends + 1 "
                        "WHERE run_id = ? AND name = ?",
                        (rows, self._run_id, name),
                    )
                conn.execute(
                    "UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (now, self._run_id)
                )
        return rows

    async def aappend(self, name: str, data: ArrayLike, *, compression: str | None = None) -> int:
        """:meth:`append` off the event loop (large blocks take milliseconds to write).
        Do not modify ``data`` until it returns."""
        return await asyncio.to_thread(self.append, name, data, compression=compression)

    def log_result(self, name: str, value: object, unit: str | None = None) -> None:
        """Record one scalar result (a later value of the same name replaces it)."""
        self.log_results({name: value}, units={name: unit} if unit is not None else None)

    def log_results(
        self,
        results: Mapping[str, object] | None = None,
        /,
        *,
        units: Mapping[str, str] | None = None,
        **more: object,
    ) -> None:
        """Record several scalar results at once: ``run.log_results(qber=0.02, key_bits=4096)``."""
        merged = {**(results or {}), **more}
        rows = []
        now = to_iso(utc_now())
        for name, value in merged.items():
            if not isinstance(name, str) or not name:
                raise RecordValueError(f"result name {name!r} must be a non-empty string")
            scalar = to_scalar(value, f"results.{name}")
            unit = (units or {}).get(name) or None
            if unit is not None and not isinstance(unit, str):
                raise RecordValueError(f"results.{name}: unit must be a string, got {unit!r}")
            rows.append((self._run_id, name, dumps(scalar), unit, now))
        unknown = set(units or {}) - set(merged)
        if unknown:
            raise RecordValueError(f"units given for results that were not: {sorted(unknown)}")
        with self._mutex:
            self._require_running("log results")
            with self._store.database.writing() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO results (run_id, name, value, unit, logged_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

    def add_key(self, key: KeyRef | SecretKey) -> None:
        """Reference a key of the key store: its id, length and SHA-256, never its bits."""
        ref = key.ref if isinstance(key, SecretKey) else key
        if not isinstance(ref, KeyRef):
            raise RecordValueError(
                f"add_key takes a KeyRef or SecretKey (from KeyStore.save/load), "
                f"not {type(key).__name__}"
            )
        with self._mutex:
            self._require_running("add a key")
            self._keys.append(ref)
            with self._store.database.writing() as conn:
                conn.execute(
                    "UPDATE runs SET keys = ? WHERE run_id = ?",
                    (dumps([k.model_dump(mode="json") for k in self._keys]), self._run_id),
                )

    # -- finishing -------------------------------------------------------------------

    def finish(
        self, status: RunStatus | str = RunStatus.SUCCESS, reason: str | None = None
    ) -> None:
        """End the run as ``success``, ``aborted`` or ``failed`` (with a reason)."""
        final = RunStatus(status)
        if not final.finished:
            raise RecordValueError(
                f"a run finishes as success, aborted or failed, not {final.value!r}"
            )
        with self._mutex:
            if self._status.finished:
                raise RunStateError(f"run {self._run_id} already finished ({self._status.value})")
            self._heartbeat.stop()
            if self._writer is not None:
                try:
                    self._writer.close()
                except Exception as exc:  # the data so far is flushed; say what failed
                    log.error("run %s: closing %s failed: %s", self._run_id, self._writer.path, exc)
                    if final is RunStatus.SUCCESS:
                        final, reason = RunStatus.FAILED, f"closing the array file failed: {exc}"
            now = to_iso(utc_now())
            with self._store.database.writing() as conn:
                changed = conn.execute(
                    "UPDATE runs SET status = ?, reason = ?, stopped_at = ?, heartbeat_at = ? "
                    "WHERE run_id = ? AND status = 'running'",
                    (final.value, reason, now, now, self._run_id),
                ).rowcount
            self._status = final
            # status first, lock second: a reader that finds the lock free re-reads the status
            self._lock.release()
            if changed != 1:
                raise RunStateError(
                    f"run {self._run_id} was no longer 'running' in {self._store.db_path}"
                )
        log.info("run %s (%s) finished: %s", self._run_id, self._kind, final.value)

    def abort(self, reason: str) -> None:
        self.finish(RunStatus.ABORTED, reason)

    def fail(self, reason: str) -> None:
        self.finish(RunStatus.FAILED, reason)

    def record(self) -> RunRecord:
        """The run as the store holds it now."""
        return self._store.get(self._run_id)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status.finished:
            return
        if exc is None:
            status, reason = RunStatus.SUCCESS, None
        elif isinstance(exc, _ABORTING):
            status, reason = RunStatus.ABORTED, describe_exception(exc)
        else:
            status, reason = RunStatus.FAILED, describe_exception(exc)
        try:
            self.finish(status, reason)
        except Exception:
            if exc is None:
                raise
            # never hide the exception that ended the run behind a bookkeeping one
            log.exception("run %s: could not record its end", self._run_id)

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- internals -------------------------------------------------------------------

    def _require_running(self, what: str) -> None:
        if self._status.finished:
            raise RunStateError(
                f"run {self._run_id} is finished ({self._status.value}); cannot {what}"
            )

    def _open_writer(self) -> ArrayWriter:
        relative = self._store.data_file_for(self._run_id, self._started_at)
        self._writer = ArrayWriter(
            self._store.data_dir / relative,
            {
                "run_id": self._run_id,
                "kind": self._kind,
                "started_at": to_iso(self._started_at),
                "qhil_version": __version__,
            },
        )
        with self._store.database.writing() as conn:
            conn.execute(
                "UPDATE runs SET data_file = ? WHERE run_id = ?", (str(relative), self._run_id)
            )
        return self._writer

    def _beat(self) -> None:
        with self._store.database.writing() as conn:
            conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running'",
                (to_iso(utc_now()), self._run_id),
            )


def check_identities(identities: Mapping[str, Any]) -> dict[str, str]:
    clean = {}
    for name, identity in identities.items():
        if not isinstance(name, str) or not name:
            raise RecordValueError(f"identities: instrument name {name!r} must be a string")
        if not isinstance(identity, str):
            raise RecordValueError(
                f"identities.{name}: expected the identity string, got {type(identity).__name__}"
            )
        clean[name] = identity.strip()
    return clean


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        # task.cancel(msg) says why (e.g. "terminated by signal (SIGTERM)")
        return str(exc.args[0]) if exc.args and exc.args[0] else "cancelled"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
