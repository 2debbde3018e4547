"""Alice's vectorised pattern draw (issue 12): each choice has the configured law.

Two-sided tests at a fixed seed: every frequency within 5 standard deviations of its
probability (a false failure has probability < 1e-5 per check), and the revealed subset
is a Bernoulli process (gaps' mean and no repeats)."""

from __future__ import annotations

import numpy as np

from qhil.drivers.keysight import bb84_pattern
from qhil.orchestrator.experiments.bb84.pattern import draw_pattern

N = 1 << 20


def _within(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= 5 * np.sqrt(n * p * (1 - p))


def test_symbols_and_revealed_subset_follow_the_settings() -> None:
    pat = draw_pattern(np.random.default_rng(2026), N, 0.3, (0.6, 0.3, 0.1), 0.05)
    s = pat.symbols
    assert s.dtype == np.uint8 and s.size == N and int(s.max()) < 12
    assert _within(int(np.count_nonzero(s & 1)), N, 0.5)
    x = (s >> 1) & 1
    assert _within(int(np.count_nonzero(x == 0)), N, 0.3)  # Z basis
    for i, p in enumerate((0.6, 0.3, 0.1)):
        assert _within(int(np.count_nonzero((s >> 2) == i)), N, p)
    # Independent choices: the Z basis at each intensity keeps its probability.
    for i in range(3):
        at = (s >> 2) == i
        assert _within(int(np.count_nonzero(x[at] == 0)), int(at.sum()), 0.3)
    rev = pat.revealed
    assert rev.dtype == np.int64 and np.all(np.diff(rev) > 0) and rev[0] >= 0 and rev[-1] < N
    assert _within(rev.size, N, 0.05)
    # Reveal independent of the symbols: the Z-basis share among revealed pulses.
    assert _within(int(np.count_nonzero(x[rev] == 0)), rev.size, 0.3)


def test_fresh_patterns_every_call() -> None:
    rng = np.random.default_rng(1)
    a, b = (draw_pattern(rng, 4096, 0.5, (0.7, 0.2, 0.1), 0.1) for _ in range(2))
    assert not np.array_equal(a.symbols, b.symbols)
    assert not np.array_equal(a.revealed, b.revealed)


def test_window_counts_match_a_direct_count() -> None:
    pat = draw_pattern(np.random.default_rng(3), 5000, 0.5, (0.7, 0.2, 0.1), 0.2)
    for start, count in ((10, 300), (4900, 250), (0, 5000 - 1)):
        mask = np.mod(np.arange(5000) - start, 5000) < count
        np.testing.assert_array_equal(pat.in_window(start, count), mask)
        mask[pat.revealed] = False
        want = np.bincount(pat.symbols[mask] >> 2, minlength=3)[:3]
        np.testing.assert_array_equal(pat.unrevealed_pulses(3, start, count), want)


def test_waveform_tables_agree_with_the_level_arithmetic() -> None:
    codes = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    other = codes[::-1].copy()
    want = bb84_pattern.nearest_level(codes, 4) | (bb84_pattern.nearest_level(other, 8) << 2)
    np.testing.assert_array_equal(bb84_pattern.decode(codes, other), want)
    symbols = np.arange(32, dtype=np.uint8)
    pol, inten = bb84_pattern.encode(symbols)
    np.testing.assert_array_equal(pol, bb84_pattern.level_codes(4)[symbols & 3])
    np.testing.assert_array_equal(inten, bb84_pattern.level_codes(8)[symbols >> 2])
    np.testing.assert_array_equal(bb84_pattern.decode(pol, inten), symbols)


def test_the_draw_is_the_former_searchsorted_draw() -> None:
    # Same symbols from the same generator as the draw it replaced (seeded runs keep keys).
    def former(rng: np.random.Generator, n: int) -> np.ndarray:
        from qhil.numerics.qkd import random_bits

        bits = random_bits(rng, n)
        basis = (rng.random(n) >= 0.5).astype(np.uint8)
        edges = np.cumsum((0.7, 0.2, 0.1))[:-1]
        intensity = np.searchsorted(edges, rng.random(n), side="right").astype(np.uint8)
        return (bits | (basis << 1) | (intensity << 2)).astype(np.uint8)

    want = former(np.random.default_rng(9), 1 << 16)
    got = draw_pattern(np.random.default_rng(9), 1 << 16, 0.5, (0.7, 0.2, 0.1), 0.05)
    np.testing.assert_array_equal(got.symbols, want)
