"""Moved to :mod:`qhil.drivers.values` (SCPI infinity/NaN, :class:`ScpiReal`).

Kept as a re-export until the last importers (the Keysight and QMC emulators, the
QMC driver) import from ``qhil.drivers.values``; then this module goes.
"""

from __future__ import annotations

from qhil.drivers.values import SCPI_INFINITY, SCPI_NAN, ScpiReal, scpi_special

__all__ = ["SCPI_INFINITY", "SCPI_NAN", "ScpiReal", "scpi_special"]
