"""Calibration routines: measure the bench through role interfaces, record what they find.

See ``README.md`` in this directory for each routine's method and outputs.
"""

from qhil.calibration.binomial import ErrorFraction, clopper_pearson, upper_bound
from qhil.calibration.delays import DelayCalibration, calibrate_delays
from qhil.calibration.detector_efficiency import (
    DetectorEfficiencyCalibration,
    calibrate_detector_efficiency,
    relative_efficiencies,
)
from qhil.calibration.errors import CalibrationError
from qhil.calibration.jobs import (
    CalibrationSummary,
    run_delay_calibration,
    run_detector_efficiency_calibration,
    run_mean_photon_number_calibration,
    run_polarization_calibration,
)
from qhil.calibration.mean_photon_number import (
    MeanPhotonNumberCalibration,
    calibrate_mean_photon_numbers,
    mean_photon_numbers,
)
from qhil.calibration.polarization import (
    Phase,
    PolarizationCalibration,
    PolarizationMeasurement,
    PolarizationStep,
    calibrate_polarization,
    step_dtype,
)
from qhil.calibration.settings import (
    DelaySettings,
    DetectorEfficiencySettings,
    MeanPhotonNumberSettings,
    PolarizationSettings,
)

__all__ = [
    "CalibrationError",
    "CalibrationSummary",
    "DelayCalibration",
    "DelaySettings",
    "DetectorEfficiencyCalibration",
    "DetectorEfficiencySettings",
    "ErrorFraction",
    "MeanPhotonNumberCalibration",
    "MeanPhotonNumberSettings",
    "Phase",
    "PolarizationCalibration",
    "PolarizationMeasurement",
    "PolarizationSettings",
    "PolarizationStep",
    "calibrate_delays",
    "calibrate_detector_efficiency",
    "calibrate_mean_photon_numbers",
    "calibrate_polarization",
    "clopper_pearson",
    "mean_photon_numbers",
    "relative_efficiencies",
    "run_delay_calibration",
    "run_detector_efficiency_calibration",
    "run_mean_photon_number_calibration",
    "run_polarization_calibration",
    "step_dtype",
    "upper_bound",
]
