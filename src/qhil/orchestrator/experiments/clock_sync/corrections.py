"""Stored clock corrections: where the next experiment on the same bench finds the result.

One JSON file per (bench, alice's tagger, bob's tagger), written by each successful run::

    <data dir>/clock_sync/<bench name>/<alice node.tagger>__<bob node.tagger>.json

**Never replaced by a worse one**: a new result replaces the stored one unless that one is
still valid (not expired) and states a smaller offset error; then the stored one stays
and the new one is written next to it as ``<...>.latest.json`` (``load_correction(...,
latest=True)``), so both are kept and the file a later experiment reads is the better.

It holds the :class:`ClockModel` mapping bob's stream timestamps onto alice's
(``model.a_from_b``, ``model.map_b_to_a``), its 1-sigma errors, the method, the path
delay (two-way), the run id, the UTC time it was made (``epoch_utc``) and
``valid_for_s``: how long until the frequency error alone moves the offset by 1 ns.

What carries over to a later run: the frequency offset and (two-way) the path delay
always; the offset itself only between streams started together the same way (a
TDC1's counter restarts with every stream), so a later experiment uses it as the
centre of a narrow search, not as a fixed constant.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qhil.errors import ConfigError
from qhil.numerics.timing import ClockModel

#: The offset error the validity is quoted for, ps.
VALIDITY_ERROR_PS = 1000.0
MAX_VALIDITY_S = 86400.0


@dataclass(frozen=True)
class ClockCorrection:
    """A stored clock-sync result (see the module docstring)."""

    bench: str
    taggers: tuple[str, str]
    model: ClockModel
    offset_stderr_ps: float
    drift_stderr: float
    method: str
    delay_ps: float | None
    run_id: str
    epoch_utc: str
    valid_for_s: float

    def expired(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        made = datetime.fromisoformat(self.epoch_utc)
        return (now - made).total_seconds() > self.valid_for_s


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def correction_path(data_dir: str | Path, bench: str, taggers: tuple[str, str]) -> Path:
    """Where the correction of ``bench``'s two taggers is stored."""
    return (
        Path(data_dir)
        / "clock_sync"
        / _safe(bench)
        / (f"{_safe(taggers[0])}__{_safe(taggers[1])}.json")
    )


def _latest(path: Path) -> Path:
    return path.with_name(path.stem + ".latest.json")


def save_correction(
    data_dir: str | Path, bench: str, taggers: tuple[str, str], result: Any, *, run_id: str
) -> Path:
    """Store a run's result (a ``runner.ClockSyncResult``); returns the file written: the
    correction's own, or ``.latest.json`` when the stored one is valid and better."""
    drift_err = float(result.drift_stderr)
    valid = (
        MAX_VALIDITY_S
        if drift_err <= 0
        else min(MAX_VALIDITY_S, VALIDITY_ERROR_PS / (drift_err * 1e12))
    )
    record = {
        "bench": bench,
        "taggers": list(taggers),
        "offset_ps": result.model.offset_ps,
        "drift": result.model.drift,
        "t_ref_ps": result.model.t_ref_ps,
        "offset_stderr_ps": result.offset_stderr_ps,
        "drift_stderr": drift_err,
        "method": result.method,
        "delay_ps": result.delay_ps,
        "run_id": run_id,
        "epoch_utc": datetime.now(UTC).isoformat(),
        "valid_for_s": valid,
    }
    path = correction_path(data_dir, bench, taggers)
    try:
        stored = load_correction(data_dir, bench, taggers)
    except ConfigError:
        stored = None  # unreadable: the new result replaces it
    if (
        stored is not None
        and not stored.expired()
        and stored.offset_stderr_ps < float(result.offset_stderr_ps)
    ):
        path = _latest(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)  # atomic: a reader sees the old file or the new one
    return path


def load_correction(
    data_dir: str | Path, bench: str, taggers: tuple[str, str], *, latest: bool = False
) -> ClockCorrection | None:
    """The stored correction of ``bench``'s taggers, or None when there is none
    (``latest``: the newest result kept beside a better one, if any).

    A file that cannot be read as one raises :class:`ConfigError` naming it and the field.
    """
    path = correction_path(data_dir, bench, taggers)
    if latest:
        path = _latest(path)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), "clock correction", f"unreadable: {exc}") from None
    try:
        return ClockCorrection(
            bench=str(d["bench"]),
            taggers=(str(d["taggers"][0]), str(d["taggers"][1])),
            model=ClockModel(float(d["offset_ps"]), float(d["drift"]), int(d["t_ref_ps"])),
            offset_stderr_ps=float(d["offset_stderr_ps"]),
            drift_stderr=float(d["drift_stderr"]),
            method=str(d["method"]),
            delay_ps=None if d.get("delay_ps") is None else float(d["delay_ps"]),
            run_id=str(d["run_id"]),
            epoch_utc=str(d["epoch_utc"]),
            valid_for_s=float(d["valid_for_s"]),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ConfigError(
            str(path), f"clock correction field {exc}", "missing or malformed"
        ) from None
