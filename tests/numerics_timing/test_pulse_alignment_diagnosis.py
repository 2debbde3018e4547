"""What a failed offset search reports (OffsetNotFoundError), for the BB84 diagnosis:
how many revealed clicks it compared at its best offset, how often they agreed, and
how deep the correlation dips (bits inverted)."""

from __future__ import annotations

import pytest

from qhil.numerics.timing.pulse_alignment import (
    OffsetNotFoundError,
    PulseAlignment,
    align_pulse_train,
)

from ._synth import Bb84Clicks, bb84_clicks


def _align(c: Bb84Clicks) -> PulseAlignment:
    revealed = (c.revealed_index, c.revealed_basis, c.revealed_bit)
    return align_pulse_train(
        c.times, c.basis, c.bit, 10_000, *revealed, max_pulse_offset=20_000, pulse_offset_guess=-100
    )


def _fail(c: Bb84Clicks) -> OffsetNotFoundError:
    with pytest.raises(OffsetNotFoundError) as info:
        _align(c)
    return info.value


def test_random_bits_agree_half_the_time_at_the_best_offset() -> None:
    c = bb84_clicks(3, correlated=False, offset_ps=1e6)
    exc = _fail(c)
    # Revealed 10 %, bases match half the time: about 5 % of the clicks are compared.
    expected = 0.05 * c.times.size
    assert 0.8 * expected < exc.compared < 1.2 * expected
    k = round(exc.agreement * exc.compared)
    # The best of 40001 offsets is picked for its excess agreement (the largest of 40001
    # normals lies ~4 sigma out), and it stayed under the 6-sigma threshold: within 6 sigma
    # of 1/2, either side.
    assert abs(k - exc.compared / 2) < 6 * (exc.compared / 4) ** 0.5
    assert exc.anti_significance < exc.threshold
    assert "revealed clicks agree" in str(exc)


def test_inverted_bits_dip_instead_of_peaking() -> None:
    c = bb84_clicks(5, qber=1.0, offset_ps=1e6)
    exc = _fail(c)
    assert exc.significance < exc.threshold <= exc.anti_significance
    assert exc.anti_significance > 20  # ~sqrt(compared) below the background


def test_correct_bits_still_align() -> None:
    # Control: the same clicks with a 2 % QBER align (the errors above come from the bits).
    c = bb84_clicks(5, qber=0.02, offset_ps=1e6)
    r = _align(c)
    assert r.significance >= 6.0 and r.agreement > 0.9
