"""Errors of calibration routines."""

from __future__ import annotations

from qhil.errors import QhilError


class CalibrationError(QhilError):
    """A calibration could not measure what it needs (no light, no response, refused patterns)."""
