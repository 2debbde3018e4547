"""Calibration routines: measure the bench through role interfaces, record what they find.

See ``README.md`` in this directory for each routine's method and outputs.
"""

from qhil.calibration.binomial import ErrorFraction, clopper_pearson, upper_bound
from qhil.calibration.errors import CalibrationError
from qhil.calibration.jobs import CalibrationSummary, run_polarization_calibration
from qhil.calibration.polarization import (
    Phase,
    PolarizationCalibration,
    PolarizationMeasurement,
    PolarizationStep,
    calibrate_polarization,
    step_dtype,
)
from qhil.calibration.settings import PolarizationSettings

__all__ = [
    "CalibrationError",
    "CalibrationSummary",
    "ErrorFraction",
    "Phase",
    "PolarizationCalibration",
    "PolarizationMeasurement",
    "PolarizationSettings",
    "PolarizationStep",
    "calibrate_polarization",
    "clopper_pearson",
    "run_polarization_calibration",
    "step_dtype",
    "upper_bound",
]
