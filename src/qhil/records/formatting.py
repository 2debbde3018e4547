"""Human text and JSON for run records (``qhil runs list`` / ``qhil runs show``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from qhil.records.models import RunRecord

TABLE_COLUMNS = ("RUN ID", "KIND", "STATUS", "STARTED (UTC)", "DURATION", "SEED")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def format_run_table(records: Iterable[RunRecord]) -> str:
    """One line per run, aligned columns, newest first as given."""
    rows = [
        (
            r.run_id,
            r.kind,
            r.status.value,
            _when(r.started_at),
            format_duration(r.duration_s),
            "-" if r.seed is None else str(r.seed),
        )
        for r in records
    ]
    if not rows:
        return "no runs"
    widths = [max(len(row[i]) for row in [TABLE_COLUMNS, *rows]) for i in range(len(TABLE_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [TABLE_COLUMNS, *rows]
    ]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            out.extend(_flatten(f"{prefix}.{key}" if prefix else key, item))
        return out
    return [(prefix, _value(value))]


def _section(title: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
    if not pairs:
        return [f"{title}: none"]
    width = max(len(key) for key, _ in pairs)
    return [f"{title}:", *(f"  {key.ljust(width)}  {text}" for key, text in pairs)]


def format_run_detail(record: RunRecord) -> str:
    """Everything about one run, as readable text (arrays from the index: no file opened)."""
    r = record
    head = [
        ("run id", r.run_id),
        ("kind", r.kind),
        ("status", r.status.value + (f" ({r.reason})" if r.reason else "")),
        ("started", r.started_at.isoformat()),
        ("stopped", r.stopped_at.isoformat() if r.stopped_at else "-"),
        ("duration", format_duration(r.duration_s)),
        ("seed", "-" if r.seed is None else str(r.seed)),
        (
            "owner",
            f"pid {r.owner.pid} on {r.owner.host}, "
            f"last heartbeat {r.owner.heartbeat_at.isoformat()}",
        ),
        ("data file", str(r.data_path) if r.data_path else "-"),
    ]
    width = max(len(key) for key, _ in head)
    lines = [f"{key.ljust(width)}  {text}" for key, text in head]

    sw = r.software
    git = sw.get("git")
    version = f"qhil {sw.get('qhil')}, Python {sw.get('python')}"
    if git:
        version += f", git {git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}"
    lines.append(f"{'software'.ljust(width)}  {version}")
    packages = ", ".join(f"{k} {v}" for k, v in (sw.get("packages") or {}).items() if v)
    if packages:
        lines.append(f"{''.ljust(width)}  {packages}")

    if r.profile is not None:
        p = r.profile
        lines.append("")
        lines.append(f"profile: {p.source_path or '(built in code)'}")
        if p.source_sha256:
            lines.append(f"  file sha256     {p.source_sha256}")
        lines.append(f"  content sha256  {p.data_sha256}")
    else:
        lines += ["", "profile: none"]

    lines += ["", *_section("instruments", sorted(r.identities.items()))]
    lines += ["", *_section("parameters", _flatten("", r.parameters) if r.parameters else [])]
    results = [
        (name, _value(value) + (f" {r.result_units[name]}" if name in r.result_units else ""))
        for name, value in r.results.items()
    ]
    lines += ["", *_section("results", results)]
    keys = [(k.key_id, f"{k.length_bits} bits, sha256 {k.sha256}") for k in r.keys]
    lines += ["", *_section("keys", keys)]
    arrays = []
    for a in r.array_index.values():
        plural = "" if a.appends == 1 else "s"
        shape = "x".join(map(str, a.shape))
        arrays.append((a.name, f"{a.dtype} {shape}  ({a.appends} append{plural})"))
    lines += ["", *_section("arrays", arrays)]
    return "\n".join(lines)


def run_to_json_dict(record: RunRecord) -> dict[str, Any]:
    """The record as a strict-JSON-able dict (``json.dumps(..., allow_nan=False)`` works)."""
    return record.to_json_dict()


def runs_to_json_list(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    return [record.to_json_dict() for record in records]
