"""UTC timestamps and the human-friendly, sortable ids built from them."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

# YYYYMMDD-HHMMSS-xxxx: sorts by start time (UTC); 4 hex digits separate runs
# started in the same second (collisions are retried by the store).
RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
KEY_ID_RE = re.compile(r"^key-\d{8}-\d{6}-[0-9a-f]{8}$")


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2026-11-26T12:18:34.123456+00:00``.

    One fixed format so that the strings sort the way the instants do.
    """
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment!r} has no time zone; use an aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def new_run_id(started_at: datetime) -> str:
    return f"{started_at.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def new_key_id(created_at: datetime) -> str:
    return f"key-{created_at.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
