"""Folded FFT cross-correlation: finds offsets to ns from +-0.5 s (qcrypto pfind anchor)."""

from __future__ import annotations

import numpy as np
import pytest

from qhil.numerics.timing import PeakNotFoundError, TimingInputError, fft_offset

from ._synth import pair_streams, poisson_stream


@pytest.mark.parametrize(
    "offset_ps",
    [0, 123_456_789_012 - 123_456_000_000, -499_000_000_000, 487_654_321_098, 1_907_349 // 2],
)
def test_coarse_fft_finds_offset_within_a_few_ns(offset_ps: int) -> None:
    """2^19 bins covering +-0.5 s (1.9 us bins); the centroid lands far inside one bin."""
    s = pair_streams(
        1,
        duration_s=1.0,
        pair_rate=100_000.0,
        extra_a_rate=1e5,
        extra_b_rate=1e5,
        clock_offset_ps=offset_ps,
    )
    bin_ps = -(-(10**12) // 2**19)
    peak = fft_offset(s.a, s.b, bin_ps, 2**19, 0, min_significance=6.0)
    assert abs(peak.offset_ps - offset_ps) < 0.01 * bin_ps  # ~19 ns; pfind quotes 2 ns after fine
    assert peak.significance > 20


def test_fine_fft_reaches_2ns_around_a_coarse_centre() -> None:
    s = pair_streams(2, duration_s=1.0, clock_offset_ps=-321_987_654_321)
    coarse_guess = s.truth.offset_ps + 1_500_000  # 1.5 us off, as after a coarse stage
    peak = fft_offset(s.a, s.b, 1_000, 2**16, coarse_guess, min_significance=6.0)
    assert abs(peak.offset_ps - s.truth.offset_ps) < 2_000


def test_centroid_resolves_fractions_of_a_bin() -> None:
    bin_ps = 10_000
    errors = []
    for frac in (0.0, 0.25, 0.5, 0.8):
        off = 3_000_000 + int(frac * bin_ps)
        s = pair_streams(3, duration_s=0.5, sigma_a_ps=10.0, sigma_b_ps=10.0, clock_offset_ps=off)
        peak = fft_offset(s.a, s.b, bin_ps, 2**14)
        errors.append(peak.offset_ps - off)
    # Integer-bin peak picking would err by up to half a bin (5000 ps).
    assert max(abs(e) for e in errors) < 0.05 * bin_ps, errors


def test_offsets_beyond_half_a_period_alias_by_one_period() -> None:
    s = pair_streams(4, duration_s=0.5, clock_offset_ps=700_000)
    period = 1_000 * 2**10  # 1.024 us: 0.7 us lies beyond +P/2
    peak = fft_offset(s.a, s.b, 1_000, 2**10)
    assert abs(peak.offset_ps - (700_000 - period)) < 100
    centred = fft_offset(s.a, s.b, 1_000, 2**10, center_ps=600_000)
    assert abs(centred.offset_ps - 700_000) < 100


def test_uncorrelated_streams_raise_with_the_stage_named() -> None:
    a = poisson_stream(7, 2e5, 10**12)
    b = poisson_stream(8, 2e5, 10**12)
    with pytest.raises(PeakNotFoundError, match=r"^my stage: no significant") as info:
        fft_offset(a, b, 2_000_000, 2**19, min_significance=6.0, stage="my stage")
    assert info.value.significance < 6.0


def test_bad_arguments() -> None:
    a = np.arange(100, dtype=np.int64)
    with pytest.raises(TimingInputError, match="n_bins"):
        fft_offset(a, a, 10, 8)
    with pytest.raises(TimingInputError, match="bin_width_ps"):
        fft_offset(a, a, -1, 1024)
    with pytest.raises(TimingInputError, match="both streams need events"):
        fft_offset(a, a[:0], 10, 1024)
