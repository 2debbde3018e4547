"""Errors raised by the entanglement numerics."""

from __future__ import annotations

from qhil.errors import QhilError


class EntanglementInputError(QhilError, ValueError):
    """An argument is malformed (shape, sign, too few points); the message names it."""


class NoCoincidencePeakError(QhilError):
    """No coincidence peak where the clock model puts it (too few pairs near zero delay)."""
