"""The calibration store: the latest valid calibration of a kind, and its history.

A view over the run store (one data directory): no calibration is kept twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from qhil.calibration.store.model import (
    Calibration,
    CalibrationKind,
    from_run,
    kind_for,
    unusable,
)
from qhil.records import RunRecord, RunStore


@dataclass(frozen=True)
class Lookup:
    """The calibration an experiment may use (or None) and why (not)."""

    calibration: Calibration | None
    reason: str  # "reused ..." or why none is usable: missing, stale, other instruments


def different_instruments(stored: dict[str, str], current: dict[str, str]) -> list[str]:
    """Instruments of the calibration's bench whose identity differs now (or that are gone).

    Every instrument the calibration's run recorded counts: a conservative reading of
    "the same instruments" (a replaced power meter also invalidates a polarization
    calibration; the cost is one recalibration, never a wrong reuse).
    """
    return sorted(k for k, ident in stored.items() if current.get(k) != ident)


def _measured(cal: Calibration, quantities: tuple[str, ...]) -> bool:
    """``cal`` holds every one of ``quantities`` as a finite value."""
    found = (cal.quantities.get(name) for name in quantities)
    return all(q is not None and math.isfinite(q.value) for q in found)


class CalibrationStore:
    """Calibrations recorded in one run store (``data_dir`` or a :class:`RunStore`)."""

    def __init__(self, store: RunStore | str | Path | None = None) -> None:
        self.runs = store if isinstance(store, RunStore) else RunStore(store)

    #: Runs read beyond the age window, only to say why none is valid (stale, ...).
    REASON_RUNS = 20

    def _records(
        self,
        kind: CalibrationKind,
        newest_first: bool,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        records: list[RunRecord] = []
        for run_kind in kind.sources:
            records += self.runs.list_runs(
                kind=run_kind, newest_first=newest_first, since=since, limit=limit
            )
        return sorted(records, key=lambda r: r.started_at, reverse=newest_first)

    def _candidates(
        self, kind: CalibrationKind, now: datetime, max_age_s: float
    ) -> Iterator[RunRecord]:
        """Newest first: the runs started within the age window (only those can be valid,
        however many runs the store holds), then a few older ones for the reason."""
        since = now - timedelta(seconds=max_age_s) if max_age_s < 1e9 else None
        seen: set[str] = set()
        for record in self._records(kind, True, since=since):
            seen.add(record.run_id)
            yield record
        for record in self._records(kind, True, limit=self.REASON_RUNS):
            if record.run_id not in seen:
                yield record

    def history(self, kind: str, *, include_unusable: bool = False) -> list[Calibration]:
        """Every calibration of ``kind``, oldest first (only usable ones unless asked)."""
        k = kind_for(kind)
        out: list[Calibration] = []
        for record in self._records(k, newest_first=False):
            cal = from_run(k, record)
            if cal is not None and (include_unusable or unusable(k, record, cal) is None):
                out.append(cal)
        return out

    def find(
        self,
        kind: str,
        *,
        identities: dict[str, str],
        max_age_s: float,
        now: datetime | None = None,
        quantities: tuple[str, ...] = (),
    ) -> Lookup:
        """The newest usable calibration of ``kind`` for the bench with ``identities`` that is
        at most ``max_age_s`` old, with the reason; else None and why the newest is not usable.
        With ``quantities``, only calibrations that measured them all (finite) count: e.g. one
        node's T2 from the newest memory calibration of that node, whichever nodes a newer
        run calibrated.
        """
        k = kind_for(kind)
        now = now or datetime.now(UTC)
        why: str | None = None
        for record in self._candidates(k, now, max_age_s):
            cal = from_run(k, record)
            if cal is None or not _measured(cal, quantities):
                continue
            bad = unusable(k, record, cal)
            if bad is None:
                others = different_instruments(cal.identities, identities)
                age = cal.age_s(now)
                if others:
                    bad = f"run {cal.run_id} was made with other instruments ({', '.join(others)})"
                elif age > max_age_s:
                    bad = f"run {cal.run_id} is stale ({age:.0f} s old, max_age_s {max_age_s:g})"
                else:
                    return Lookup(cal, f"reused run {cal.run_id} ({age:.0f} s old)")
            why = why or bad  # the newest one's reason is the one to report
        measured = f" measured {', '.join(quantities)}" if quantities else " recorded"
        return Lookup(None, why or f"no {k.name} calibration{measured}")

    def latest(
        self,
        kind: str,
        *,
        identities: dict[str, str],
        max_age_s: float,
        now: datetime | None = None,
    ) -> Calibration | None:
        """The newest usable calibration (see :meth:`find`), or None."""
        return self.find(kind, identities=identities, max_age_s=max_age_s, now=now).calibration
