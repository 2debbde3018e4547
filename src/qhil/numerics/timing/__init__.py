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
    PeakNotFoundError,
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

__all__ = [
    "AccidentalEstimate",
    "AlignmentError",
    "ClockModel",
    "ClockSyncResult",
    "CoincidencePairs",
    "FftPeak",
    "LineFit",
    "OffsetFit",
    "OffsetTrack",
    "PeakNotFoundError",
    "TimeDifferenceHistogram",
    "TimingError",
    "TimingInputError",
    "accidentals_from_sidebands",
    "count_coincidences",
    "expected_accidentals",
    "fft_offset",
    "find_clock_offset",
    "find_coincidences",
    "fit_line",
    "refine_offset",
    "time_difference_histogram",
    "track_clock_offset",
    "window_edges",
]
