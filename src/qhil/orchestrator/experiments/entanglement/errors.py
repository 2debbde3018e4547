"""Why an entanglement experiment stopped (exit 3), with what to do."""

from __future__ import annotations

from enum import StrEnum


class EntanglementAbortReason(StrEnum):
    NO_LIGHT = "no_light"  # the pump reads back no current
    NO_PEAK = "no_peak"  # no clock model / no coincidence peak in an acquisition
    BUFFER_OVERFLOW = "buffer_overflow"
    COMPENSATION_FAILED = "compensation_failed"  # the fibres' polarization not compensated


class EntanglementAborted(Exception):
    """An acquisition or experiment could not produce its result; ``str`` is
    ``"<reason>: <detail>"``."""

    def __init__(self, reason: EntanglementAbortReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
