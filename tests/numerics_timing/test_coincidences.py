"""Coincidence finding: exact agreement with brute force, PHYSICS.md case 3 statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qhil.numerics.timing import (
    TimingInputError,
    accidentals_from_sidebands,
    count_coincidences,
    expected_accidentals,
    find_coincidences,
    time_difference_histogram,
    window_edges,
)

from ._synth import PS_PER_S, pair_streams, poisson_stream

CONFIDENCE = 0.999  # every statistical check below is two-sided at 99.9 %


def brute_pairs(a: np.ndarray, b: np.ndarray, window: int, delay: int) -> set[tuple[int, int]]:
    lo, hi = delay - window // 2, delay - window // 2 + window
    d = b[None, :] - a[:, None]
    ia, ib = np.nonzero((d >= lo) & (d < hi))
    return set(zip(ia.tolist(), ib.tolist(), strict=True))


stamps = st.lists(st.integers(-2_000, 2_000), min_size=0, max_size=60).map(
    lambda xs: np.sort(np.array(xs, dtype=np.int64))
)


@settings(max_examples=300, deadline=None)
@given(a=stamps, b=stamps, window=st.integers(1, 400), delay=st.integers(-500, 500))
def test_pairs_equal_brute_force(a: np.ndarray, b: np.ndarray, window: int, delay: int) -> None:
    pairs = find_coincidences(a, b, window, delay)
    got = list(zip(pairs.index_a.tolist(), pairs.index_b.tolist(), strict=True))
    assert set(got) == brute_pairs(a, b, window, delay)
    assert len(got) == len(set(got)), "no pair may be reported twice"
    assert got == sorted(got), "pairs are ordered by index_a then index_b"
    assert count_coincidences(a, b, window, delay) == len(got)


@pytest.mark.parametrize("base", [0, -(10**12), 10**17])
def test_large_streams_merge_path_equals_binary_search(base: int) -> None:
    """Streams above the merge threshold (and with ties, negative or huge stamps)."""
    rng = np.random.default_rng(abs(base) % 97)
    a = base + np.sort(rng.integers(0, 3 * 10**8, 300_000))
    b = np.sort(
        np.concatenate(
            [a[::3] + rng.integers(-900, 900, 100_000), base + rng.integers(0, 3 * 10**8, 150_000)]
        )
    )
    lo, hi = window_edges(1_000, 250)
    start = np.searchsorted(b, a + lo)
    stop = np.searchsorted(b, a + hi)
    pairs = find_coincidences(a, b, 1_000, 250)
    assert pairs.count == int((stop - start).sum()) > 50_000
    ref_a = np.repeat(np.arange(a.size), stop - start)
    ref_b = np.concatenate([np.arange(s, e) for s, e in zip(start, stop, strict=True) if e > s])
    np.testing.assert_array_equal(pairs.index_a, ref_a)
    np.testing.assert_array_equal(pairs.index_b, ref_b)
    assert count_coincidences(a, b, 1_000, 250) == pairs.count
    # The longer stream first: searched the other way round, same definition.
    swapped = find_coincidences(b, a, 1_001, -250)  # a - b in [-750, 251)
    ref = np.searchsorted(a, b - 750), np.searchsorted(a, b + 251)
    assert swapped.count == int((ref[1] - ref[0]).sum())
    np.testing.assert_array_equal(swapped.index_a, np.repeat(np.arange(b.size), ref[1] - ref[0]))


def test_window_accepts_exactly_w_integer_differences() -> None:
    a = np.array([1_000], dtype=np.int64)
    b = np.arange(0, 2_001, dtype=np.int64)
    for w, d in [(1, 0), (2, 0), (7, 13), (8, -13), (100, 250)]:
        pairs = find_coincidences(a, b, w, d)
        diffs = pairs.time_differences(a, b)
        lo, hi = window_edges(w, d)
        assert pairs.count == w
        assert diffs.min() == lo and diffs.max() == hi - 1
        assert lo == d - w // 2


def test_longer_a_stream_gives_same_pairs_as_shorter() -> None:
    rng = np.random.default_rng(3)
    a = np.sort(rng.integers(0, 10**7, 5_000))
    b = np.sort(rng.integers(0, 10**7, 300))
    p1 = find_coincidences(a, b, 2_000, 150)  # a longer: searched the other way
    p2 = find_coincidences(b, a, 2_000, -150)  # same pairs with roles swapped
    got1 = set(zip(p1.index_a.tolist(), p1.index_b.tolist(), strict=True))
    got2 = set(zip(p2.index_b.tolist(), p2.index_a.tolist(), strict=True))
    assert got1 == got2
    assert p1.count > 0


def test_bad_input_is_named() -> None:
    good = np.arange(10, dtype=np.int64)
    with pytest.raises(TimingInputError, match=r"^b: timestamps must be sorted"):
        find_coincidences(good, good[::-1], 5)
    with pytest.raises(TimingInputError, match=r"^a: expected integer picosecond"):
        find_coincidences(good.astype(float), good, 5)
    with pytest.raises(TimingInputError, match="window_ps"):
        find_coincidences(good, good, 0)
    with pytest.raises(TimingInputError, match="delay_ps"):
        count_coincidences(good, good, 3, float("nan"))
    with pytest.raises(TimingInputError, match="multiple of bin_width_ps"):
        time_difference_histogram(good, good, 3, (-10, 10))


@pytest.mark.parametrize("w_over_sigma", [0.5, 1.0, 2.0, 3.0])
def test_capture_fraction_physics_case_3(w_over_sigma: float) -> None:
    """Gaussian relative jitter sigma, window of full width w: capture erf(w / (2 sqrt2 sigma))."""
    s = pair_streams(
        11,
        duration_s=2.0,
        pair_rate=100_000.0,
        sigma_a_ps=60.0,
        sigma_b_ps=80.0,
        clock_offset_ps=3_000_000,
    )
    sigma = s.sigma_rel_ps  # 100 ps
    w = round(w_over_sigma * sigma)
    p = math.erf(w / (2 * math.sqrt(2) * sigma))
    n = count_coincidences(s.a, s.b, w, s.truth.offset_ps)
    # Accidentals at 2e5 pairs/2 s and w <= 300 ps: ~ 1e-3 expected, ignored.
    test = stats.binomtest(n, s.n_pairs, p)
    assert test.pvalue > 1 - CONFIDENCE, (n, s.n_pairs * p)


def test_accidentals_of_independent_poisson_streams() -> None:
    """C_acc ~ S_A * S_B * w * T for uncorrelated streams, Poisson interval at 99.9 %."""
    duration = PS_PER_S
    a = poisson_stream(1, 2e6, duration)
    b = poisson_stream(2, 3e6, duration)
    w = 700
    mu = expected_accidentals(a.size, b.size, duration, w)
    assert mu == pytest.approx(a.size * b.size * w / duration)
    lo, hi = stats.poisson.interval(CONFIDENCE, mu)
    for delay in (0, 12_345, -99_999):
        n = count_coincidences(a, b, w, delay)
        assert lo <= n <= hi, (delay, n, mu)


def test_sideband_accidentals_match_prediction_beside_a_peak() -> None:
    s = pair_streams(
        5, pair_rate=50_000.0, extra_a_rate=1.5e6, extra_b_rate=1e6, clock_offset_ps=-7_000_000
    )
    w = 400
    est = accidentals_from_sidebands(s.a, s.b, w, s.truth.offset_ps)
    duration = PS_PER_S
    mu = expected_accidentals(s.a.size, s.b.size, duration, w)
    # Mean of 8 sideband counts: Poisson total of mean 8 mu.
    lo, hi = stats.poisson.interval(CONFIDENCE, 8 * mu)
    assert lo <= est.counts.sum() <= hi
    assert est.stderr == pytest.approx(math.sqrt(est.mean / 8))
    # The peak window holds the pairs on top of the accidentals.
    n_peak = count_coincidences(s.a, s.b, w, s.truth.offset_ps)
    assert n_peak > 10 * est.mean


def test_property_tests_are_derandomised() -> None:
    """tests/conftest.py's profile reaches the @settings of the tests (same examples on
    every run)."""
    used = test_pairs_equal_brute_force._hypothesis_internal_use_settings  # type: ignore[attr-defined]
    assert used.derandomize and used.database is None and used.max_examples == 300


def test_histogram_equals_numpy_histogram_of_all_pairs() -> None:
    rng = np.random.default_rng(9)
    a = np.sort(rng.integers(0, 2_000_000, 3_000))
    b = np.sort(rng.integers(0, 2_000_000, 4_000))
    h = time_difference_histogram(a, b, 250, (-5_000, 7_500))
    d = (b[None, :] - a[:, None]).ravel()
    d = d[d < 7_500]  # our range is half-open; numpy closes its last bin
    ref, edges = np.histogram(d, bins=np.arange(-5_000, 7_501, 250))
    np.testing.assert_array_equal(h.counts, ref)
    np.testing.assert_array_equal(h.edges_ps, edges)
    assert h.bin_width_ps == 250
    assert h.centres_ps[0] == -4_875.0


def test_histogram_beyond_one_internal_block_counts_every_pair() -> None:
    """2.3 internal blocks of A events (the histogram works block by block): every pair of
    every block counts, against a chunked brute force over all pairs in range."""
    from qhil.numerics.timing.coincidences import _HISTOGRAM_BLOCK

    rng = np.random.default_rng(10)
    n_a = 2 * _HISTOGRAM_BLOCK + _HISTOGRAM_BLOCK // 3
    a = np.sort(rng.integers(0, n_a * 1_000, n_a))  # ~1 event per ns
    b = np.sort(np.concatenate([a[::3] + rng.integers(-300, 300, a[::3].size), a[::5] + 2_000]))
    lo, hi, bw = -3_000, 4_000, 500
    h = time_difference_histogram(a, b, bw, (lo, hi))
    ref = np.zeros((hi - lo) // bw, np.int64)
    chunk = 512
    for s in range(0, a.size, chunk):
        ka = a[s : s + chunk]
        j0, j1 = np.searchsorted(b, [ka[0] + lo, ka[-1] + hi])
        d = (b[j0:j1][None, :] - ka[:, None]).ravel()
        d = d[(d >= lo) & (d < hi)]
        ref += np.bincount((d - lo) // bw, minlength=ref.size)
    np.testing.assert_array_equal(h.counts, ref)
    # Pairs come from every block: the +2 ns pairs alone number one per 5 A events.
    assert h.counts[(2_000 - lo) // bw] >= n_a // 5


def test_histogram_peak_sits_at_the_offset() -> None:
    s = pair_streams(21, duration_s=0.2, clock_offset_ps=1_234_567, extra_a_rate=1e5)
    h = time_difference_histogram(s.a, s.b, 10, (1_234_567 - 1_000, 1_234_567 + 1_000))
    mean = float((h.counts * h.centres_ps).sum() / h.counts.sum())
    # 20k pairs, sigma 50 ps: the centroid error is ~0.4 ps (+ tiny accidental smear).
    assert abs(mean - s.truth.offset_ps) < 3.0
