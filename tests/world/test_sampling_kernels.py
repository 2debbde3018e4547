"""Exactness of the vectorised kernels behind the photon sampling and detector dynamics.

Each kernel is checked against a direct (slow, obviously correct) reference: the
sequential dead-time rule, exact enumeration of click patterns, the normal law.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world.deadtime import JointDeadTime, nonparalysable_mask
from qhil.emulators.world.rng import bernoulli_position_chunks, standard_normal
from qhil.emulators.world.sample_wcs import (
    _CELL_BITS,
    _STRADDLE,
    _candidate_chunks,
    _cell_outcomes,
    _multi_click_table,
    _multi_clicks,
    _thresholds,
    _wrap_sorted,
)


def sequential_mask(t: np.ndarray, tau: float, last: float) -> np.ndarray:
    """The non-paralysable rule, one event at a time."""
    keep = np.zeros(t.size, bool)
    prev = last
    for i, x in enumerate(t):
        if x - prev >= tau:
            keep[i] = True
            prev = x
    return keep


@pytest.mark.parametrize("rate_per_tau", [0.05, 0.7, 3.0, 20.0])
def test_nonparalysable_mask_follows_the_sequential_rule(rate_per_tau: float) -> None:
    rng = np.random.default_rng(11)
    tau = 1.0
    for _ in range(600):
        n = int(rng.integers(0, 100))
        span = max(n, 1) / rate_per_tau
        t = np.sort(rng.random(n) * span)
        last = float(rng.choice([-np.inf, -0.4, 0.2]))
        assert np.array_equal(nonparalysable_mask(t, tau, last), sequential_mask(t, tau, last))


@pytest.mark.parametrize("rate_per_tau", [0.05, 0.7, 3.0, 20.0])
@pytest.mark.parametrize("detectors", [(1, 5), (9, 13)])  # a pass per detector / one sort
def test_joint_dead_time_of_several_detectors_follows_the_sequential_rule(
    rate_per_tau: float, detectors: tuple[int, int]
) -> None:
    """Several detectors in one time-ordered stream, each with its own dead time and
    history, void events, and three generations of late additions: every detector's
    registrations equal the sequential rule on its own events."""
    rng = np.random.default_rng(12)
    for _ in range(200):
        n_det = int(rng.integers(*detectors))
        tau_of = rng.choice([1.0, 1.0, 0.5, 0.0], n_det)
        n = int(rng.integers(0, 120))
        length = max(n, 1) / rate_per_tau
        t = np.sort(rng.random(n) * length)
        det = rng.integers(-1, n_det, n)  # -1: void (e.g. outside a gate)
        last_of = rng.choice([-np.inf, -0.4, 0.2], n_det)
        jdt = JointDeadTime(t, det.copy(), tau_of, last_of, length + 3.0)
        xt, xd = np.zeros(0), np.zeros(0, np.intp)
        for generation in range(4):
            if generation:
                m = int(rng.integers(0, 8))
                new_t, new_d = rng.random(m) * length, rng.integers(0, n_det, m)
                got = jdt.add(new_t, new_d)
                xt, xd = np.concatenate([xt, new_t]), np.concatenate([xd, new_d])
            for d in range(n_det):
                # Reference: detector d's events, the base stream first among ties.
                base = np.flatnonzero(det == d)
                both = np.concatenate([t[base], xt[xd == d]])
                order = np.argsort(both, kind="stable")
                ref = np.empty(both.size, bool)
                ref[order] = sequential_mask(both[order], tau_of[d], last_of[d])
                assert np.array_equal(jdt.keep[base], ref[: base.size])
                assert np.array_equal(jdt.extra_keep[xd == d], ref[base.size :])
            assert not jdt.keep[det < 0].any()
            if generation:
                assert np.array_equal(got, jdt.extra_keep[xt.size - got.size :])


def test_standard_normal_is_normal() -> None:
    z = standard_normal(np.random.default_rng(3), 400_001)
    assert z.size == 400_001
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # Box-Muller pairs: the two halves must be independent of each other.
    half = z.size // 2
    r = stats.pearsonr(z[:half], z[half : 2 * half])
    assert r.pvalue > 1e-3


def test_bernoulli_positions_are_independent_selections() -> None:
    rng = np.random.default_rng(5)
    n, q = 3_000_000, 0.03
    pos = np.concatenate(list(bernoulli_position_chunks(rng, n, q, chunk=4096)))
    assert np.all(np.diff(pos) > 0) and pos[0] >= 0 and pos[-1] < n
    lo, hi = stats.binom.interval(0.999, n, q)
    assert lo <= pos.size <= hi
    # Gaps are geometric(q) on 1, 2, ...
    gaps = np.diff(pos)
    k = np.arange(1, 200)
    observed = np.bincount(np.minimum(gaps, 200), minlength=201)[1:]
    expected = np.append(stats.geom.pmf(k, q), stats.geom.sf(199, q)) * gaps.size
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("q", [0.03, 0.6])
def test_candidates_are_independent_selections_with_independent_cells(q: float) -> None:
    n = 2_000_000
    chunks = list(_candidate_chunks(np.random.default_rng(8), n, q))
    pos = np.concatenate([c[0] for c in chunks])
    top = np.concatenate([c[1] for c in chunks])
    assert np.all(np.diff(pos) > 0) and pos[0] >= 0 and pos[-1] < n
    lo, hi = stats.binom.interval(0.999, n, q)
    assert lo <= pos.size <= hi
    gaps = np.diff(pos)
    k = np.arange(1, 40)
    observed = np.bincount(np.minimum(gaps, 40), minlength=41)[1:]
    expected = np.append(stats.geom.pmf(k, q), stats.geom.sf(39, q)) * gaps.size
    keep = expected > 5
    expected = expected[keep] * observed[keep].sum() / expected[keep].sum()
    assert stats.chisquare(observed[keep], expected).pvalue > 1e-3
    # The cell bits are uniform on 0..2^bits - 1 and independent of the gap they came with.
    cells = 1 << _CELL_BITS
    assert top.min() >= 0 and top.max() <= cells - 1
    assert stats.chisquare(np.bincount(top >> (_CELL_BITS - 8), minlength=256)).pvalue > 1e-3
    assert stats.chisquare(np.bincount(top & 255, minlength=256)).pvalue > 1e-3
    table = np.array(
        [np.bincount(top[1:][gaps == g] >> (_CELL_BITS - 2), minlength=4) for g in (1, 2, 3)]
    )
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_cell_table_counts_the_ends_below_each_cell_and_marks_crossed_cells() -> None:
    """Each (symbol, cell): the number of interval ends at or below the whole cell at every
    step, or `_STRADDLE` where an end lies inside the cell at some step."""
    rng = np.random.default_rng(21)
    n = 1 << _CELL_BITS
    for _ in range(20):
        steps, n_sym, n_ends = int(rng.integers(1, 4)), int(rng.integers(1, 13)), 5
        base = np.sort(rng.random((n_sym, n_ends)), axis=1)
        drift = rng.choice([0.0, 1e-4, 3e-3])
        ends = np.clip(np.sort(base + rng.normal(0, drift, (steps, n_sym, n_ends)), axis=2), 0, 1)
        got = _cell_outcomes(ends).reshape(n_sym, n)
        lo, hi = ends.min(axis=0) * n, ends.max(axis=0) * n  # (n_sym, n_ends), in cells
        for s in range(n_sym):
            for c in range(0, n, 7):  # every 7th cell: enough, and fast
                crossed = np.any((lo[s] < c + 1) & (hi[s] > c))
                expected = _STRADDLE if crossed else int(np.sum(hi[s] <= c))
                assert got[s, c] == expected, (s, c)


def pattern_probabilities(lam: np.ndarray) -> dict[tuple[bool, ...], float]:
    p = -np.expm1(-lam)
    return {
        bits: float(np.prod(np.where(bits, p, 1.0 - p)))
        for bits in itertools.product((False, True), repeat=lam.size)
    }


def test_outcome_intervals_have_the_exact_pattern_probabilities() -> None:
    lam = np.array([0.3, 0.05, 1.2, 0.0])
    ends = _thresholds(lam[None, :])[0]
    probs = pattern_probabilities(lam)
    widths = np.diff(np.concatenate([[0.0], ends]))
    for d in range(lam.size):
        only_d = tuple(i == d for i in range(lam.size))
        assert widths[d] == pytest.approx(probs[only_d], rel=1e-12, abs=1e-15)
    multi = sum(v for bits, v in probs.items() if sum(bits) >= 2)
    assert widths[-1] == pytest.approx(multi, rel=1e-12)
    assert ends[-1] == pytest.approx(1.0 - probs[(False,) * lam.size], rel=1e-12)


def test_multi_click_patterns_follow_the_conditional_law() -> None:
    lam = np.array([0.4, 0.1, 0.9, 0.25])
    n = 200_000
    clicks = _multi_clicks(np.random.default_rng(9), np.tile(lam, (n, 1)))
    assert clicks.sum(axis=1).min() >= 2
    probs = {b: v for b, v in pattern_probabilities(lam).items() if sum(b) >= 2}
    total = sum(probs.values())
    codes = clicks @ (1 << np.arange(lam.size))
    observed = np.bincount(codes, minlength=1 << lam.size)
    keys = list(probs)
    idx = [sum(int(b) << i for i, b in enumerate(bits)) for bits in keys]
    expected = np.array([probs[b] / total * n for b in keys])
    assert observed[idx].sum() == n
    assert stats.chisquare(observed[idx], expected).pvalue > 1e-3


def test_multi_click_table_is_the_exact_conditional_law() -> None:
    """The tabulated pattern distribution equals exact enumeration, per row."""
    lam = np.array([[0.4, 0.1, 0.9, 0.25], [1e-3, 2e-3, 0.5, 0.0], [0.05, 0.05, 0.05, 0.05]])
    cdf, bits = _multi_click_table(lam)
    assert bits.shape == (11, 4) and bits.sum(axis=1).min() >= 2
    for row, lam_row in zip(cdf, lam, strict=True):
        probs = {b: v for b, v in pattern_probabilities(lam_row).items() if sum(b) >= 2}
        total = sum(probs.values())
        pmf = np.diff(row, prepend=0.0)
        for pattern, p in zip(bits, pmf, strict=True):
            assert p == pytest.approx(probs[tuple(bool(x) for x in pattern)] / total, rel=1e-9)


def test_pattern_index_wraps_like_a_remainder() -> None:
    """The candidates' pattern index (k mod L, issue 12: a subtraction per wrap of the
    sorted positions instead of an integer division) equals np.remainder, negative first
    pulse numbers and several wraps included."""
    rng = np.random.default_rng(3)
    for k_lo, length in [(-12_345_678, 1_000_000), (7, 8_000_000), (0, 3), (5_000_001, 999)]:
        pos = np.sort(rng.integers(0, 4_000_000, 50_000)).astype(np.int64)
        got = np.add(pos, k_lo % length)
        _wrap_sorted(got, length)
        assert np.array_equal(got, np.remainder(pos + k_lo, length))
