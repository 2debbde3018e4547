"""The run store: start runs, find them again, and tell live runs from dead ones.

Layout of a data directory::

    runs.sqlite                      the index (SQLite, WAL mode)
    data/<YYYY-MM>/<run_id>.h5       raw arrays of a run (HDF5), once it appended any
    locks/<run_id>.lock              held by the owning process while the run runs
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from qhil.records.arrays import dtype_from_text
from qhil.records.clock import from_iso, new_run_id, to_iso, utc_now
from qhil.records.database import Database
from qhil.records.errors import (
    AmbiguousRunIdError,
    RecordValueError,
    RunNotFoundError,
    StoreAccessError,
)
from qhil.records.jsonable import dumps, to_jsonable
from qhil.records.keystore import KeyRef
from qhil.records.liveness import OwnerLock, lock_is_held, pid_alive, this_host
from qhil.records.models import ArrayInfo, RunOwner, RunRecord, RunStatus
from qhil.records.paths import default_data_dir
from qhil.records.profile_snapshot import ProfileSnapshot
from qhil.records.run import Run, check_identities
from qhil.records.software import software_info

log = logging.getLogger(__name__)

DB_NAME = "runs.sqlite"
_KIND_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_SQL_BATCH = 500  # ids per IN (...) query, well under SQLite's variable limit


class RunStore:
    """Run records in one data directory (default: :func:`~qhil.records.default_data_dir`).

    ``readonly`` opens an existing store for reading only: nothing is created or
    written, so it works on a read-only directory or file system (``qhil runs``).

    ``heartbeat_interval_s`` is how often runs started here stamp their
    heartbeat; ``stale_after_s`` is how old a heartbeat of a run owned by
    another host may be before this store calls that run incomplete (it also
    waits at least four of the owner's own beat intervals).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        heartbeat_interval_s: float = 5.0,
        stale_after_s: float = 60.0,
        readonly: bool = False,
    ) -> None:
        if heartbeat_interval_s <= 0:
            raise ValueError(f"heartbeat_interval_s must be positive, got {heartbeat_interval_s}")
        if stale_after_s < 2 * heartbeat_interval_s:
            raise ValueError(
                f"stale_after_s ({stale_after_s}) must be at least twice "
                f"heartbeat_interval_s ({heartbeat_interval_s})"
            )
        self.data_dir = Path(path).expanduser() if path is not None else default_data_dir()
        self.db_path = self.data_dir / DB_NAME
        self.readonly = readonly
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise StoreAccessError(f"run store {self.data_dir}: exists and is not a directory")
        if readonly:  # only look: a reader creates nothing (the store may be read-only)
            if not self.data_dir.exists():
                raise StoreAccessError(f"run store {self.data_dir}: no such directory")
            if not self.db_path.exists():
                raise StoreAccessError(
                    f"run store {self.data_dir}: no run index {DB_NAME} (no run recorded there)"
                )
        else:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreAccessError(
                    f"run store {self.data_dir}: cannot create it: {exc.strerror or exc}"
                ) from None
        self.heartbeat_interval_s = heartbeat_interval_s
        self.stale_after_s = stale_after_s
        self.database = Database(self.db_path, readonly=readonly)

    def __repr__(self) -> str:
        return f"RunStore({str(self.data_dir)!r})"

    def close(self) -> None:
        """Close this thread's connection to the index (it reopens on next use)."""
        self.database.close()

    # -- writing ---------------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        *,
        profile: ProfileSnapshot | BaseModel | Mapping[str, Any] | None = None,
        profile_source: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        identities: Mapping[str, str] | None = None,
    ) -> Run:
        """Record the start of a run and return its handle (a context manager).

        ``kind`` is dotted, e.g. ``"bb84"`` or ``"calibration.detector_efficiency"``.
        ``profile`` is the validated bench profile (a :class:`ProfileSnapshot`,
        or a pydantic model / mapping to snapshot, with ``profile_source`` the
        file it was read from).
        """
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise RecordValueError(
                f"run kind {kind!r}: use dot-separated words of letters, digits, '_' or '-' "
                "(e.g. 'calibration.detector_efficiency')"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RecordValueError(f"seed must be an integer or None, got {type(seed).__name__}")
        params = to_jsonable(dict(parameters or {}), "parameters")
        snapshot = _snapshot(profile, profile_source)
        ids = check_identities(identities or {})
        software = software_info()
        for _ in range(64):
            started = utc_now()
            run_id = new_run_id(started)
            try:
                lock = OwnerLock(self._lock_path(run_id))
            except FileExistsError:
                continue  # same id as a run still (or once) running: draw again
            now = to_iso(started)
            try:
                with self.database.writing() as conn:
                    conn.execute(
                        "INSERT INTO runs (run_id, kind, status, started_at, seed, profile, "
                        "identities, software, parameters, owner_pid, owner_host, heartbeat_at, "
                        "heartbeat_s) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            run_id,
                            kind,
                            now,
                            None if seed is None else str(seed),
                            snapshot.model_dump_json() if snapshot is not None else None,
                            dumps(ids),
                            dumps(software),
                            dumps(params),
                            os.getpid(),
                            this_host(),
                            now,
                            self.heartbeat_interval_s,
                        ),
                    )
            except sqlite3.IntegrityError:
                lock.release()
                continue
            except BaseException:
                lock.release()
                raise
            log.info("run %s (%s) started", run_id, kind)
            return Run(self, run_id, kind, started, lock, ids, self.heartbeat_interval_s)
        raise RecordValueError(f"{self.db_path}: could not draw a free run id")

    def data_file_for(self, run_id: str, started_at: datetime) -> Path:
        """Where a run's HDF5 file goes, relative to the data directory."""
        return Path("data") / f"{started_at:%Y-%m}" / f"{run_id}.h5"

    # -- reading ---------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, or with this unique id prefix (``20261126-1218``)."""
        with self.database.reading() as conn:
            found = conn.execute("SELECT run_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if found is None:
                escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                matches = [
                    row[0]
                    for row in conn.execute(
                        "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' "
                        "ORDER BY run_id LIMIT 50",
                        (escaped + "%",),
                    )
                ]
                if not matches or not run_id:
                    raise RunNotFoundError(run_id, str(self.db_path))
                if len(matches) > 1:
                    raise AmbiguousRunIdError(run_id, matches)
                run_id = matches[0]
            else:
                run_id = found[0]
        return self._load([run_id])[0]

    def list_runs(
        self,
        *,
        kind: str | None = None,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[RunRecord]:
        """Runs matching all the filters given.

        ``kind`` may be a glob (``"calibration.*"``); ``status`` one status or
        several, ``"incomplete"`` included; ``since``/``until`` bound the start
        time (``since <= started_at < until``, aware datetimes).
        """
        wanted = _statuses(status)
        clauses: list[str] = []
        args: list[Any] = []
        if kind is not None:
            clauses.append("kind GLOB ?")
            args.append(kind)
        if wanted:
            stored = {RunStatus.RUNNING if s is RunStatus.INCOMPLETE else s for s in wanted}
            clauses.append(f"status IN ({', '.join('?' * len(stored))})")
            args.extend(s.value for s in stored)
        if since is not None:
            clauses.append("started_at >= ?")
            args.append(to_iso(since))
        if until is not None:
            clauses.append("started_at < ?")
            args.append(to_iso(until))
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        # "running" rows may really be incomplete: those are judged before the limit
        judge = bool(wanted) and (RunStatus.RUNNING in wanted) != (RunStatus.INCOMPLETE in wanted)
        order = "DESC" if newest_first else "ASC"
        sql = (
            "SELECT run_id, status, reason, owner_pid, owner_host, heartbeat_at, heartbeat_s "
            f"FROM runs {'WHERE ' + ' AND '.join(clauses) if clauses else ''} "
            f"ORDER BY started_at {order}, seq {order}"
        )
        if limit is not None and not judge:
            sql += f" LIMIT {int(limit)}"
        with self.database.reading() as conn:
            heads = conn.execute(sql, args).fetchall()
        ids: list[str] = []
        verdicts: dict[str, tuple[RunStatus, str | None]] = {}
        for head in heads:
            if limit is not None and len(ids) >= limit:
                break
            verdict = self._judge(head)
            if wanted and verdict[0] not in wanted:
                continue
            ids.append(head["run_id"])
            verdicts[head["run_id"]] = verdict
        return self._load(ids, verdicts)

    def latest(self, kind: str | None = None) -> RunRecord | None:
        """The most recently started run (of this kind), or None."""
        found = self.list_runs(kind=kind, limit=1)
        return found[0] if found else None

    # -- internals -------------------------------------------------------------------

    def _lock_path(self, run_id: str) -> Path:
        return self.data_dir / "locks" / f"{run_id}.lock"

    def _judge(self, head: sqlite3.Row) -> tuple[RunStatus, str | None]:
        """The effective status of a row: a "running" row whose owner is gone is incomplete."""
        status = RunStatus(head["status"])
        if status is not RunStatus.RUNNING:
            return status, head["reason"]
        pid, host = head["owner_pid"], head["owner_host"]
        if host == this_host():
            held = lock_is_held(self._lock_path(head["run_id"]))
            alive = pid_alive(pid) if held is None else held
            why = f"owner process {pid} on {host} ended without finishing the run"
        else:
            beat = from_iso(head["heartbeat_at"])
            age = (utc_now() - beat).total_seconds()
            alive = age <= max(self.stale_after_s, 4 * head["heartbeat_s"])
            why = (
                f"no heartbeat from owner process {pid} on {host} for {age:.0f} s "
                f"(last {to_iso(beat)})"
            )
        if alive:
            return RunStatus.RUNNING, None
        # the owner may have finished between our read and the lock probe
        with self.database.reading() as conn:
            now = conn.execute(
                "SELECT status, reason FROM runs WHERE run_id = ?", (head["run_id"],)
            ).fetchone()
        if RunStatus(now["status"]) is not RunStatus.RUNNING:
            return RunStatus(now["status"]), now["reason"]
        return RunStatus.INCOMPLETE, why

    def _load(
        self,
        run_ids: Sequence[str],
        verdicts: Mapping[str, tuple[RunStatus, str | None]] | None = None,
    ) -> list[RunRecord]:
        verdicts = verdicts or {}
        rows: dict[str, sqlite3.Row] = {}
        results: dict[str, list[sqlite3.Row]] = {run_id: [] for run_id in run_ids}
        arrays: dict[str, list[sqlite3.Row]] = {run_id: [] for run_id in run_ids}
        with self.database.reading() as conn:
            for start in range(0, len(run_ids), _SQL_BATCH):
                batch = list(run_ids[start : start + _SQL_BATCH])
                marks = ", ".join("?" * len(batch))
                for row in conn.execute(f"SELECT * FROM runs WHERE run_id IN ({marks})", batch):
                    rows[row["run_id"]] = row
                for row in conn.execute(
                    f"SELECT * FROM results WHERE run_id IN ({marks}) ORDER BY logged_at, name",
                    batch,
                ):
                    results[row["run_id"]].append(row)
                for row in conn.execute(
                    f"SELECT * FROM arrays WHERE run_id IN ({marks}) ORDER BY name", batch
                ):
                    arrays[row["run_id"]].append(row)
        records = []
        for run_id in run_ids:
            row = rows[run_id]
            if RunStatus(row["status"]) is RunStatus.RUNNING:
                status, reason = verdicts.get(run_id) or self._judge(row)
                if status.finished:  # finished meanwhile: read it again, whole
                    return self._load(run_ids)
            else:
                status, reason = RunStatus(row["status"]), row["reason"]
            records.append(self._record(row, status, reason, results[run_id], arrays[run_id]))
        return records

    def _record(
        self,
        row: sqlite3.Row,
        status: RunStatus,
        reason: str | None,
        result_rows: list[sqlite3.Row],
        array_rows: list[sqlite3.Row],
    ) -> RunRecord:
        index = {
            a["name"]: ArrayInfo(
                name=a["name"],
                dtype=str(dtype_from_text(a["dtype"])),
                shape=(a["rows"], *json.loads(a["shape_tail"])),
                appends=a["appends"],
            )
            for a in array_rows
        }
        return RunRecord(
            run_id=row["run_id"],
            kind=row["kind"],
            status=status,
            reason=reason,
            started_at=from_iso(row["started_at"]),
            stopped_at=from_iso(row["stopped_at"]) if row["stopped_at"] else None,
            seed=int(row["seed"]) if row["seed"] is not None else None,
            profile=ProfileSnapshot.model_validate_json(row["profile"]) if row["profile"] else None,
            identities=json.loads(row["identities"]),
            software=json.loads(row["software"]),
            parameters=json.loads(row["parameters"]),
            results={r["name"]: json.loads(r["value"]) for r in result_rows},
            result_units={r["name"]: r["unit"] for r in result_rows if r["unit"] is not None},
            keys=[KeyRef.model_validate(k) for k in json.loads(row["keys"])],
            owner=RunOwner(
                pid=row["owner_pid"],
                host=row["owner_host"],
                heartbeat_at=from_iso(row["heartbeat_at"]),
            ),
            array_index=index,
            data_path=self.data_dir / row["data_file"] if row["data_file"] else None,
        )


def _snapshot(
    profile: ProfileSnapshot | BaseModel | Mapping[str, Any] | None,
    source: str | os.PathLike[str] | None,
) -> ProfileSnapshot | None:
    if profile is None:
        if source is not None:
            raise RecordValueError(
                f"profile_source {str(source)!r} given without the validated profile"
            )
        return None
    if isinstance(profile, ProfileSnapshot):
        if source is not None:
            raise RecordValueError("profile_source given with a ready ProfileSnapshot")
        return profile
    return ProfileSnapshot.capture(profile, source)


def _statuses(status: RunStatus | str | Iterable[RunStatus | str] | None) -> set[RunStatus]:
    if status is None:
        return set()
    items = [status] if isinstance(status, str) else list(status)
    try:
        return {RunStatus(item) for item in items}
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise RecordValueError(f"status filter {status!r}: statuses are {known}") from None
