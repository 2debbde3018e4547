"""pattern_offset: the offset of Bob's grid numbers in a periodically played pattern, over
every position at once (one circular correlation) or around a guess."""

from __future__ import annotations

import numpy as np
import pytest

from qhil.numerics.timing import TimingInputError
from qhil.numerics.timing.pulse_alignment import pattern_offset

L = 1 << 15


def _data(offset: int, n_clicks: int = 6000, qber: float = 0.02, seed: int = 1):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 2, L).astype(np.uint8)
    bits = rng.integers(0, 2, L).astype(np.uint8)
    rev = np.flatnonzero(rng.random(L) < 0.1)
    # Bob's grid numbers start anywhere and run past one period (the pattern repeats).
    numbers = np.sort(rng.choice(L + L // 4, n_clicks, replace=False)) + 123_456
    pos = (numbers + offset) % L
    b_basis = rng.integers(0, 2, n_clicks).astype(np.uint8)
    b_bit = np.where(b_basis == bases[pos], bits[pos], rng.integers(0, 2, n_clicks))
    b_bit = (b_bit ^ (rng.random(n_clicks) < qber)).astype(np.uint8)
    return numbers, b_basis, b_bit, rev, bases[rev], bits[rev]


@pytest.mark.parametrize("offset", [0, 5, L - 7, 20_000])
def test_full_search_finds_the_offset_modulo_the_pattern(offset: int) -> None:
    n, bb, bt, rev, rb, rbit = _data(offset)
    found = pattern_offset(n, bb, bt, L, rev, rb, rbit)
    assert found.offset == offset and not found.narrow and found.lags == L
    assert found.significance > 12


def test_narrow_search_confirms_a_close_guess_and_not_a_far_one() -> None:
    n, bb, bt, rev, rb, rbit = _data(9_000)
    near = pattern_offset(n, bb, bt, L, rev, rb, rbit, guess=9_000 + 300, max_pulse_offset=512)
    assert near.offset == 9_000 and near.narrow and near.significance > 12
    far = pattern_offset(n, bb, bt, L, rev, rb, rbit, guess=9_000 + 700, max_pulse_offset=512)
    assert far.significance < 6  # the true offset is outside the window: nothing stands out
    # A guess whose window wraps past the pattern's end.
    n, bb, bt, rev, rb, rbit = _data(L - 3)
    wrapped = pattern_offset(n, bb, bt, L, rev, rb, rbit, guess=10, max_pulse_offset=64)
    assert wrapped.offset == L - 3


def test_random_bits_show_no_peak() -> None:
    n, bb, bt, rev, rb, rbit = _data(1000, qber=0.5)
    assert pattern_offset(n, bb, bt, L, rev, rb, rbit).significance < 6


def test_bad_input_is_named() -> None:
    n, bb, bt, rev, rb, rbit = _data(0)
    with pytest.raises(TimingInputError, match="alice_position"):
        pattern_offset(n, bb, bt, L, rev + L, rb, rbit)
    with pytest.raises(TimingInputError, match="bob_basis"):
        pattern_offset(n, bb[:-1], bt, L, rev, rb, rbit)
    with pytest.raises(TimingInputError, match="half_width"):
        pattern_offset(n, bb, bt, L, rev, rb, rbit, guess=0, max_pulse_offset=L // 4)
