"""The calibration store: typed, versioned calibrations read from recorded runs.

See ``README.md`` in this directory.
"""

from qhil.calibration.store.model import (
    KINDS,
    SCHEMA_VERSION,
    Calibration,
    CalibrationKind,
    Quantity,
    from_run,
    kind_for,
    pair_quantities,
    register_kind,
)
from qhil.calibration.store.store import CalibrationStore, Lookup, different_instruments

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Calibration",
    "CalibrationKind",
    "CalibrationStore",
    "Lookup",
    "Quantity",
    "different_instruments",
    "from_run",
    "kind_for",
    "pair_quantities",
    "register_kind",
]
