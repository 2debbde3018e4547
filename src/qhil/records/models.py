"""What the store hands back: typed, immutable run records."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from qhil.records.jsonable import Scalar, strict_json
from qhil.records.keystore import KeyRef
from qhil.records.profile_snapshot import ProfileSnapshot

if TYPE_CHECKING:
    from qhil.records.arrays import RunArrays


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    ABORTED = "aborted"
    FAILED = "failed"
    # Never written by a live run: a "running" row whose owning process is gone.
    INCOMPLETE = "incomplete"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCESS, RunStatus.ABORTED, RunStatus.FAILED)


class RunOwner(BaseModel):
    """The process that wrote the run, and when it last said it was alive."""

    model_config = ConfigDict(frozen=True)

    pid: int
    host: str
    heartbeat_at: datetime


class ArrayInfo(BaseModel):
    """One named array of a run as the index knows it: rows committed so far."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str
    shape: tuple[int, ...]
    appends: int


class RunRecord(BaseModel):
    """One run as stored. ``arrays`` opens the HDF5 file only when an array is read."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    kind: str
    status: RunStatus
    reason: str | None
    started_at: datetime
    stopped_at: datetime | None
    seed: int | None
    profile: ProfileSnapshot | None
    identities: dict[str, str]
    software: dict[str, Any]
    parameters: dict[str, Any]
    results: dict[str, Scalar]
    result_units: dict[str, str]
    keys: list[KeyRef]
    owner: RunOwner
    array_index: dict[str, ArrayInfo]
    data_path: Path | None

    @property
    def duration_s(self) -> float | None:
        if self.stopped_at is None:
            return None
        return (self.stopped_at - self.started_at).total_seconds()

    @property
    def arrays(self) -> RunArrays:
        from qhil.records.arrays import RunArrays

        return RunArrays(self.run_id, self.data_path, self.array_index)

    def to_json_dict(self) -> dict[str, Any]:
        """A dict that ``json.dumps`` turns into strict JSON (non-finite floats as strings)."""
        out = self.model_dump(mode="json")
        out["duration_s"] = self.duration_s
        return dict(strict_json(out))
