"""Why a clock-sync run stops without a result: one typed exception with a typed reason.

Every message says what was seen (significance, rates) and what to do about it.
"""

from __future__ import annotations

from enum import StrEnum

from qhil.errors import QhilError


class SyncAbortReason(StrEnum):
    """The reason a run was aborted (stored as the run record's reason)."""

    #: No significant correlation peak: no pairs (pump off, path blocked), wrong channels,
    #: or an offset / frequency outside the searched range.
    NO_PEAK = "no_peak"
    #: The coincidence rate cannot reach the requested precision per tracking interval.
    RATES_TOO_LOW = "rates_too_low"
    #: Tracking never used an interval, or the run ended with the lock lost: no result
    #: the loop stands behind (the stored correction is kept).
    NOT_LOCKED = "not_locked"
    #: The final stated offset error is above the requested ``max_offset_stderr_ps``.
    PRECISION_NOT_REACHED = "precision_not_reached"
    #: The two parties' settings differ (a ``--party`` run: each reads its own profile).
    SETTINGS_MISMATCH = "settings_mismatch"
    #: A tagger reported lost events (its buffer overflowed): the stream has gaps.
    BUFFER_OVERFLOW = "buffer_overflow"
    #: A pair source did not switch on (its board reports the pump off).
    NO_LIGHT = "no_light"
    #: A classical message failed authentication.
    AUTHENTICATION_FAILED = "authentication_failed"
    #: The peer did not answer in time, or the channel closed.
    CHANNEL_FAILED = "channel_failed"
    #: The peer stopped on an error of its own.
    PEER_FAILED = "peer_failed"


class ClockSyncAborted(QhilError):
    """The clock-sync run ended without a clock model; ``reason`` and ``detail`` say why."""

    def __init__(self, reason: SyncAbortReason, detail: str, *, from_peer: bool = False) -> None:
        self.reason = reason
        self.detail = detail
        self.from_peer = from_peer  # the other party aborted first and told us
        super().__init__(f"{reason.value}: {detail}")
