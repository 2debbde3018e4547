"""Timing numerics: coincidences, clock offset/drift search, BB84 pulse alignment.

Pure, vectorised numpy/scipy on sorted int64 picosecond timestamps; no I/O.
See README.md in this folder for conventions and examples.
"""

from qhil.numerics.timing.clock_model import ClockModel, LineFit, fit_line
from qhil.numerics.timing.coincidences import (
    AccidentalEstimate,
    CoincidencePairs,
    TimeDifferenceHistogram,
    accidentals_from_sidebands,
    count_coincidences,
    expected_accidentals,
    find_coincidences,
    time_difference_histogram,
    window_edges,
)
from qhil.numerics.timing.errors import (
    AlignmentError,
    NoCorrelationPeakError,
    PeakNotFoundError,
    RateTooLowError,
    TimingError,
    TimingInputError,
)
from qhil.numerics.timing.fft_offset import FftPeak, fft_offset
from qhil.numerics.timing.offset_search import (
    ClockSyncResult,
    OffsetFit,
    OffsetTrack,
    find_clock_offset,
    refine_offset,
    track_clock_offset,
)
from qhil.numerics.timing.tracking import (
    ClockOffsetResult,
    ClockTracker,
    LockEvent,
    OneWayMeasurement,
    TrackerConfig,
    TrackPoint,
    acquire_clock_offset,
    check_precision,
    interval_wander_error_ps,
    max_interval_s,
    one_way_clock_offset,
    required_coincidences,
    track_arrays,
    two_way_offset,
)

__all__ = [
    "AccidentalEstimate",
    "AlignmentError",
    "ClockModel",
    "ClockOffsetResult",
    "ClockSyncResult",
    "ClockTracker",
    "CoincidencePairs",
    "FftPeak",
    "LineFit",
    "LockEvent",
    "NoCorrelationPeakError",
    "OffsetFit",
    "OffsetTrack",
    "OneWayMeasurement",
    "PeakNotFoundError",
    "RateTooLowError",
    "TimeDifferenceHistogram",
    "TimingError",
    "TimingInputError",
    "TrackPoint",
    "TrackerConfig",
    "accidentals_from_sidebands",
    "acquire_clock_offset",
    "check_precision",
    "count_coincidences",
    "expected_accidentals",
    "fft_offset",
    "find_clock_offset",
    "find_coincidences",
    "fit_line",
    "interval_wander_error_ps",
    "max_interval_s",
    "one_way_clock_offset",
    "refine_offset",
    "required_coincidences",
    "time_difference_histogram",
    "track_arrays",
    "track_clock_offset",
    "two_way_offset",
    "window_edges",
]
