"""Alice's vectorised pattern draw (issue 12): each choice has the configured law.

Two-sided tests at fixed seeds: every frequency within 5 standard deviations of its
probability (a false failure has probability < 1e-5 per check), chi-square tests at 99.9 %
(two-sided) of the symbols' joint law inside and outside the revealed subset and of the
subset's geometric gaps, and no pattern repeated across blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qhil.drivers.keysight import bb84_pattern
from qhil.numerics.qkd.randomness import secure_generator
from qhil.orchestrator.experiments.bb84 import pattern
from qhil.orchestrator.experiments.bb84.pattern import (
    _add_at_or_above,
    bernoulli_positions,
    draw_pattern,
)

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


def test_intensity_counts_in_chunks_equal_bincount(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counting by comparisons, in steps that do not divide the length, with symbols whose
    # intensity index lies beyond the counted ones (left out, as bincount's truncation does).
    monkeypatch.setattr(pattern, "COUNT_CHUNK", 1000)
    symbols = np.random.default_rng(4).integers(0, 32, 4321).astype(np.uint8)
    for k in (1, 3, 8):
        want = np.bincount(symbols >> 2, minlength=8)[:k]
        np.testing.assert_array_equal(pattern.intensity_counts(symbols, k), want)
    assert pattern.intensity_counts(symbols[:0], 3).tolist() == [0, 0, 0]


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


@pytest.mark.parametrize("n", [8, 13, 4099])
def test_any_length_and_both_basis_paths(n: int) -> None:
    # z = 1/2 takes 2 bits per symbol from a byte per 4 pulses, other z a bit per 8 pulses
    # and a 32-bit word: lengths that are no multiple of 4 or 8 come out whole.
    for z in (0.5, 0.25):
        pat = draw_pattern(np.random.default_rng(n), n, z, (0.7, 0.2, 0.1), 0.3)
        assert pat.symbols.shape == (n,) and pat.symbols.flags.c_contiguous
        assert int(pat.symbols.max()) < 12


def test_the_draw_in_steps_keeps_the_laws(monkeypatch: pytest.MonkeyPatch) -> None:
    # Steps of 1000 symbols (not dividing the length): every step has the laws, z = 0.3 and
    # 1/2, 5 sigma per frequency as above; the last partial step is cut off cleanly.
    monkeypatch.setattr(pattern, "DRAW_CHUNK", 1000)
    n = 100_003
    for z in (0.3, 0.5):
        s = draw_pattern(np.random.default_rng(8), n, z, (0.6, 0.3, 0.1), 0.05).symbols
        assert s.size == n and int(s.max()) < 12
        assert _within(int(np.count_nonzero(s & 1)), n, 0.5)
        assert _within(int(np.count_nonzero(s & 2 == 0)), n, z)
        for i, p in enumerate((0.6, 0.3, 0.1)):
            assert _within(int(np.count_nonzero(s >> 2 == i)), n, p)


def test_the_aes_generator_draws_through_its_raw_words() -> None:
    # Alice's real generator (AES-128-CTR via randomgen): the raw path works on it.
    pat = draw_pattern(secure_generator(), 1 << 16, 0.5, (0.7, 0.2, 0.1), 0.05)
    assert _within(int(np.count_nonzero(pat.symbols >> 2 == 2)), 1 << 16, 0.1)
    assert _within(pat.revealed.size, 1 << 16, 0.05)


def test_thresholds_realise_the_probabilities_at_2_to_the_minus_32() -> None:
    # Every 32-bit word through the comparison: its probability is round(p 2^32) / 2^32
    # (checked on the 2^16 words spaced 2^16 apart, plus the neighbours of the threshold).
    p = 0.7
    t = round(p * 2**32)
    words = np.concatenate(
        [np.arange(0, 2**32, 2**16, dtype=np.uint64), np.array([t - 1, t, t + 1], np.uint64)]
    ).astype(np.uint32)
    acc = np.zeros(words.size, np.uint8)
    _add_at_or_above(acc, words, p, np.empty(words.size, bool))
    assert acc[-3:].tolist() == [0, 1, 1]
    assert int(acc[:-3].sum()) == 2**16 - -(-t // 2**16)  # multiples of 2^16 at or above t
    assert abs(t / 2**32 - p) <= 2**-33
    # The ends: p >= 1 never, p <= 0 always.
    for q, want in ((1.0, 0), (0.0, 1)):
        acc[:] = 0
        _add_at_or_above(acc, words, q, np.empty(words.size, bool))
        assert set(acc.tolist()) == {want}


def test_symbols_are_independent_of_the_revealed_subset_and_of_each_other() -> None:
    # Chi-square of the 12 symbols' counts among revealed and among unrevealed pulses
    # against the product law; two-sided at 99.9 % per check (fixed seed).
    n, z, probs = 1 << 20, 0.5, (0.7, 0.2, 0.1)
    pat = draw_pattern(np.random.default_rng(11), n, z, probs, 0.05)
    law = np.array(
        [0.5 * (z if b == 0 else 1 - z) * p for p in probs for b in (0, 1) for _ in (0, 1)]
    )
    mask = np.zeros(n, bool)
    mask[pat.revealed] = True
    for part in (pat.symbols[mask], pat.symbols[~mask]):
        counts = np.bincount(part, minlength=12)
        stat, pval = stats.chisquare(counts, law * part.size)
        assert 0.0005 <= pval <= 0.9995, (stat, pval)


def test_revealed_gaps_are_geometric() -> None:
    # A Bernoulli(p) subset has geometric gaps: chi-square of gaps 1..40 and the tail,
    # two-sided 99.9 % (fixed seed).
    p = 0.05
    rev = bernoulli_positions(np.random.default_rng(12), 1 << 21, p)
    gaps = np.diff(rev)
    k = np.arange(1, 41)
    want = np.append(p * (1 - p) ** (k - 1), (1 - p) ** 40) * gaps.size
    got = np.append(np.bincount(gaps, minlength=41)[1:41], np.count_nonzero(gaps > 40))
    _, pval = stats.chisquare(got, want)
    assert 0.0005 <= pval <= 0.9995, pval
    assert bernoulli_positions(np.random.default_rng(1), 100, 0.0).size == 0
    assert bernoulli_positions(np.random.default_rng(1), 100, 1.0).tolist() == list(range(100))


def test_no_pattern_repeats_across_blocks() -> None:
    rng = secure_generator()
    pats = [draw_pattern(rng, 1 << 14, 0.5, (0.7, 0.2, 0.1), 0.05) for _ in range(8)]
    digests = {p.symbols.tobytes() for p in pats}
    assert len(digests) == 8
    # Two blocks agree where they must by chance only: at ~P(same symbol) of the pulses.
    same = float(np.mean(pats[0].symbols == pats[1].symbols))
    p_same = sum((0.25 * q) ** 2 for q in (0.7, 0.2, 0.1)) * 4
    assert _within(int(same * (1 << 14)), 1 << 14, p_same)
