"""Coincidences between two picosecond timestamp streams.

Convention used throughout :mod:`qhil.numerics.timing`: an event at ``t_a`` in
stream A and an event at ``t_b`` in stream B form a coincidence at delay ``d``
with a window of full width ``w`` when

    d - w // 2  <=  t_b - t_a  <  d - w // 2 + w

i.e. exactly ``w`` integer picosecond differences are accepted (so the
accidental rate of two Poisson streams is ``S_A * S_B * w`` exactly).

Both streams must be sorted int64 picoseconds. Everything is two binary searches
of one stream into the other (``np.searchsorted``) plus index arithmetic; no
Python loop over events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing._validate import (
    Timestamps,
    as_timestamps,
    positive_int,
    whole_ps,
)
from qhil.numerics.timing.errors import TimingInputError

IndexArray = npt.NDArray[np.int64]

# Keys searched per block when a histogram may produce many pairs per key.
_HISTOGRAM_BLOCK = 1 << 18
# Below this many events binary search is as fast as merging, and needs no copy.
_MERGE_MIN_SIZE = 1 << 16
# The merge doubles timestamps; keep them clear of int64 overflow (~2^62 ps = 53 days).
_MERGE_MAX_ABS = 1 << 61


@dataclass(frozen=True)
class CoincidencePairs:
    """Every (A, B) event pair inside the window, as index arrays into the streams.

    Pairs are ordered by ``index_a`` then ``index_b``. An event may appear in
    several pairs when the window holds more than one partner.
    """

    index_a: IndexArray
    index_b: IndexArray
    window_ps: int
    delay_ps: int

    @property
    def count(self) -> int:
        return int(self.index_a.size)

    def time_differences(self, a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """``t_b - t_a`` of each pair, in ps (pass the same streams used to find them)."""
        a_arr = np.asarray(a, dtype=np.int64)
        b_arr = np.asarray(b, dtype=np.int64)
        return b_arr[self.index_b] - a_arr[self.index_a]


@dataclass(frozen=True)
class TimeDifferenceHistogram:
    """Histogram of ``t_b - t_a`` over all pairs; ``edges_ps`` has ``counts.size + 1`` entries."""

    counts: npt.NDArray[np.int64]
    edges_ps: npt.NDArray[np.int64]

    @property
    def bin_width_ps(self) -> int:
        return int(self.edges_ps[1] - self.edges_ps[0])

    @property
    def centres_ps(self) -> npt.NDArray[np.float64]:
        return 0.5 * (self.edges_ps[:-1] + self.edges_ps[1:]).astype(np.float64)


@dataclass(frozen=True)
class AccidentalEstimate:
    """Accidental coincidences per window, measured at delays away from the peak."""

    mean: float
    stderr: float
    counts: npt.NDArray[np.int64]
    offsets_ps: npt.NDArray[np.int64]


def window_edges(window_ps: int, delay_ps: float) -> tuple[int, int]:
    """Half-open ``[lo, hi)`` bounds on ``t_b - t_a`` for a window of full width ``window_ps``."""
    w = positive_int(window_ps, "window_ps")
    d = whole_ps(delay_ps, "delay_ps")
    lo = d - w // 2
    return lo, lo + w


def _merge_rank(keys: Timestamps, arr: Timestamps) -> IndexArray:
    """``np.searchsorted(arr, keys, side="left")`` for sorted keys, by merging.

    Both inputs are doubled and B's tagged odd, so one stable sort of their
    concatenation (timsort: a linear merge of two sorted runs) interleaves them
    with each key before equal ``arr`` values; a key's rank among keys subtracted
    from its merged position counts the ``arr`` values below it. Streaming memory
    access beats ``log2(n)`` cache-missing probes per key on large streams.
    """
    merged = np.concatenate((keys * 2, arr * 2 + 1))
    merged.sort(kind="stable")
    pos = np.flatnonzero((merged & 1) == 0)
    return pos - np.arange(keys.size, dtype=np.int64)


def _ranges(keys: Timestamps, arr: Timestamps, lo: int, hi: int) -> tuple[IndexArray, IndexArray]:
    """For each key k, the index range of ``arr`` with ``k + lo <= arr < k + hi``."""
    lo_keys = keys + lo
    if (
        keys.size >= _MERGE_MIN_SIZE
        and arr.size >= _MERGE_MIN_SIZE
        and max(abs(int(lo_keys[0])), abs(int(lo_keys[-1])), abs(int(arr[0])), abs(int(arr[-1])))
        < _MERGE_MAX_ABS
    ):
        start = _merge_rank(lo_keys, arr)
    else:
        start = np.searchsorted(arr, lo_keys, side="left").astype(np.int64, copy=False)
    # Most keys have no partner at all: look up the window's end only for those that do.
    n = arr.size
    stop = start.copy()
    if n:
        ends = keys + hi
        first = arr[np.minimum(start, n - 1)]
        some = np.flatnonzero((start < n) & (first < ends))
        stop[some] = np.searchsorted(arr, ends[some], side="left")
    return start, stop


def _expand(start: IndexArray, stop: IndexArray) -> tuple[IndexArray, IndexArray]:
    """Turn per-key ranges into (key index, array index) pairs, vectorised."""
    counts = stop - start
    keys = np.flatnonzero(counts)
    counts = counts[keys]
    total = int(counts.sum())
    key_idx = np.repeat(keys.astype(np.int64), counts)
    first = np.cumsum(counts) - counts
    within = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    arr_idx = np.repeat(start[keys], counts) + within
    return key_idx, arr_idx


def find_coincidences(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    window_ps: int,
    delay_ps: float = 0,
    *,
    check_sorted: bool = True,
) -> CoincidencePairs:
    """All pairs with ``t_b - t_a`` inside the window centred on ``delay_ps``.

    ``window_ps`` is the full width (``w`` in PHYSICS.md case 3). ``delay_ps`` is
    rounded to the nearest ps.
    """
    a_ts = as_timestamps(a, "a", check_sorted=check_sorted)
    b_ts = as_timestamps(b, "b", check_sorted=check_sorted)
    lo, hi = window_edges(window_ps, delay_ps)
    # Search the shorter stream into the longer one: cost is n_keys * log(n_arr).
    if a_ts.size <= b_ts.size:
        start, stop = _ranges(a_ts, b_ts, lo, hi)
        ia, ib = _expand(start, stop)
    else:
        # a + lo <= b < a + hi  <=>  b - hi < a <= b - lo  <=>  b - hi + 1 <= a < b - lo + 1
        start, stop = _ranges(b_ts, a_ts, 1 - hi, 1 - lo)
        ib, ia = _expand(start, stop)
        order = np.lexsort((ib, ia))
        ia, ib = ia[order], ib[order]
    return CoincidencePairs(ia, ib, int(window_ps), whole_ps(delay_ps, "delay_ps"))


def count_coincidences(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    window_ps: int,
    delay_ps: float = 0,
    *,
    check_sorted: bool = True,
) -> int:
    """Number of pairs :func:`find_coincidences` would return, without building them."""
    a_ts = as_timestamps(a, "a", check_sorted=check_sorted)
    b_ts = as_timestamps(b, "b", check_sorted=check_sorted)
    lo, hi = window_edges(window_ps, delay_ps)
    if a_ts.size <= b_ts.size:
        start, stop = _ranges(a_ts, b_ts, lo, hi)
    else:
        start, stop = _ranges(b_ts, a_ts, 1 - hi, 1 - lo)
    return int((stop - start).sum())


def expected_accidentals(n_a: int, n_b: int, duration_ps: float, window_ps: int) -> float:
    """Accidental coincidences of two independent Poisson streams: ``S_A * S_B * w * T``.

    ``n_a`` and ``n_b`` are the event counts over the common duration ``duration_ps``.
    """
    if n_a < 0 or n_b < 0:
        raise TimingInputError(f"n_a, n_b: counts must be >= 0 (got {n_a}, {n_b})")
    if not duration_ps > 0:
        raise TimingInputError(f"duration_ps: must be > 0 (got {duration_ps!r})")
    positive_int(window_ps, "window_ps")
    return float(n_a) * float(n_b) * float(window_ps) / float(duration_ps)


def accidentals_from_sidebands(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    window_ps: int,
    delay_ps: float = 0,
    offsets_ps: npt.ArrayLike | None = None,
) -> AccidentalEstimate:
    """Measure accidentals by counting coincidences at delays shifted off the peak.

    ``offsets_ps`` are added to ``delay_ps``; by default +-20, 40, 60, 80 windows,
    far outside a Gaussian peak when ``w`` is a few sigma. For pulsed sources pick
    offsets between pulse-period multiples yourself (sidebands would hold peaks).
    """
    w = positive_int(window_ps, "window_ps")
    if offsets_ps is None:
        steps = np.array([-80, -60, -40, -20, 20, 40, 60, 80], dtype=np.int64)
        offs = steps * w
    else:
        offs = np.asarray(offsets_ps, dtype=np.int64).ravel()
        if offs.size == 0:
            raise TimingInputError("offsets_ps: need at least one sideband offset")
    a_ts = as_timestamps(a, "a")
    b_ts = as_timestamps(b, "b")
    d = whole_ps(delay_ps, "delay_ps")
    counts = np.array(
        [count_coincidences(a_ts, b_ts, w, d + int(o), check_sorted=False) for o in offs],
        dtype=np.int64,
    )
    mean = float(counts.mean())
    # Poisson: the variance of the mean of k independent counts is mean / k.
    return AccidentalEstimate(mean, float(np.sqrt(max(mean, 0.0) / counts.size)), counts, offs)


def time_difference_histogram(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    bin_width_ps: int,
    range_ps: tuple[int, int],
    *,
    check_sorted: bool = True,
) -> TimeDifferenceHistogram:
    """Histogram of ``t_b - t_a`` over every pair with the difference in ``[lo, hi)``.

    ``hi - lo`` must be a multiple of ``bin_width_ps``. Work is done in blocks of
    A events so a wide range does not materialise all pairs at once.
    """
    bw = positive_int(bin_width_ps, "bin_width_ps")
    lo, hi = (whole_ps(range_ps[0], "range_ps[0]"), whole_ps(range_ps[1], "range_ps[1]"))
    if hi <= lo:
        raise TimingInputError(f"range_ps: upper bound {hi} must exceed lower bound {lo}")
    if (hi - lo) % bw:
        raise TimingInputError(
            f"range_ps: width {hi - lo} ps is not a multiple of bin_width_ps {bw}"
        )
    n_bins = (hi - lo) // bw
    a_ts = as_timestamps(a, "a", check_sorted=check_sorted)
    b_ts = as_timestamps(b, "b", check_sorted=check_sorted)
    counts = np.zeros(n_bins, dtype=np.int64)
    for s in range(0, a_ts.size, _HISTOGRAM_BLOCK):
        keys = a_ts[s : s + _HISTOGRAM_BLOCK]
        start, stop = _ranges(keys, b_ts, lo, hi)
        ka, ib = _expand(start, stop)
        diffs = b_ts[ib] - keys[ka]
        counts += np.bincount((diffs - lo) // bw, minlength=n_bins)
    edges = lo + bw * np.arange(n_bins + 1, dtype=np.int64)
    return TimeDifferenceHistogram(counts, edges)
