"""BB84 pulse-train alignment on synthetic clicks with known pulse indices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qhil.numerics.timing import AlignmentError, TimingInputError
from qhil.numerics.timing.pulse_alignment import align_pulse_train, estimate_pulse_grid

from ._synth import bb84_clicks

CONFIDENCE = 0.999


@pytest.mark.parametrize(
    ("drift", "offset_ps"),
    [(0.0, 1_234_567.0), (20e-6, -987_654_321.0), (-73e-6, 45_000_000_123.0)],
)
def test_every_signal_click_gets_its_pulse(drift: float, offset_ps: float) -> None:
    period = 10_000  # 100 MHz
    c = bb84_clicks(1, period_ps=period, drift=drift, offset_ps=offset_ps, qber=0.03)
    # Bob knows roughly when pulse 0 reaches him (clock offset + fibre, to ~us).
    guess = round(-(offset_ps + 3_000_000.0) / period)
    r = align_pulse_train(
        c.times,
        c.basis,
        c.bit,
        period,
        c.revealed_index,
        c.revealed_basis,
        c.revealed_bit,
        max_pulse_offset=50_000,
        pulse_offset_guess=guess,
    )
    signal = c.true_index >= 0
    np.testing.assert_array_equal(r.pulse_index[signal], c.true_index[signal])
    # 20 M pulses x 10 ns = 0.2 s: drift error x 0.2 s must stay well under the 50 ps jitter.
    assert abs(r.grid.drift - drift) * 2e11 < 5.0
    assert r.grid.jitter_ps == pytest.approx(50.0, rel=0.1)
    # Agreement of revealed, basis-matched clicks is Binomial(n, 1 - QBER) at 99.9 %,
    # diluted by dark counts (2 kHz vs ~200 kHz of clicks: ~1 %, half agreeing).
    dark_frac = float(np.mean(~signal))
    p_agree = (1 - dark_frac) * 0.97 + dark_frac * 0.5
    k = round(r.agreement * r.n_compared)
    assert stats.binomtest(k, r.n_compared, p_agree).pvalue > 1 - CONFIDENCE
    # Pulse 0 arrives at Bob's clock reading offset_ps (emission 0, no fibre here).
    assert abs(r.pulse0_time_ps - c.pulse0_time_ps) < 5.0
    model = r.clock_model(alice_t0_ps=0)
    assert model.drift == r.grid.drift
    assert abs(float(model.offset_at(0)) - offset_ps) < 5.0


def test_period_at_1ghz_and_double_clicks_ignored() -> None:
    period = 1_000  # 1 GHz: jitter of 50 ps is 5 % of the period
    c = bb84_clicks(
        2,
        n_pulses=100_000_000,
        period_ps=period,
        p_click=4e-4,
        drift=5e-6,
        offset_ps=777_777.0,
        revealed_fraction=0.05,
    )
    basis = c.basis.copy()
    basis[::50] = -1  # double clicks: no basis, still timed
    r = align_pulse_train(
        c.times,
        basis,
        c.bit,
        period,
        c.revealed_index,
        c.revealed_basis,
        c.revealed_bit,
        max_pulse_offset=3_000,
        pulse_offset_guess=-778,
    )
    signal = c.true_index >= 0
    assert np.mean(r.pulse_index[signal] == c.true_index[signal]) > 0.9999


def test_uncorrelated_bits_raise_alignment_error() -> None:
    c = bb84_clicks(3, correlated=False, offset_ps=1e6)
    with pytest.raises(AlignmentError, match=r"^pulse offset: no significant") as info:
        align_pulse_train(
            c.times,
            c.basis,
            c.bit,
            10_000,
            c.revealed_index,
            c.revealed_basis,
            c.revealed_bit,
            max_pulse_offset=20_000,
            pulse_offset_guess=-100,
        )
    assert info.value.significance < 6.0


def test_clicks_without_pulse_structure_raise() -> None:
    rng = np.random.default_rng(4)
    times = np.sort(rng.integers(0, 10**11, 20_000))
    with pytest.raises(AlignmentError, match=r"^pulse grid: no significant"):
        estimate_pulse_grid(times, 10_000)


def test_grid_residuals_and_numbers_are_consistent() -> None:
    c = bb84_clicks(5, drift=-12e-6, offset_ps=3_210.0, dark_rate=0.0)
    g = estimate_pulse_grid(c.times, 10_000)
    n = g.pulse_numbers(c.times)
    # Relative numbers differ from Alice's indices by one constant.
    assert np.unique(c.true_index - n).size == 1
    res = g.residuals_ps(c.times)
    assert np.abs(res).max() < 0.5 * g.period_ps
    assert stats.kstest(res / 50.0, "norm").pvalue > 1 - CONFIDENCE


def test_bad_arguments() -> None:
    t = np.arange(0, 10**6, 100, dtype=np.int64)
    z = np.zeros(t.size, dtype=np.int64)
    with pytest.raises(TimingInputError, match="bob_basis"):
        align_pulse_train(t, z[:-1], z, 100, t, z, z, max_pulse_offset=10)
    with pytest.raises(TimingInputError, match="max_pulse_offset"):
        align_pulse_train(t, z, z, 100, t, z, z, max_pulse_offset=0)
    with pytest.raises(TimingInputError, match="max_drift"):
        estimate_pulse_grid(t, 100, max_drift=0.5)
    with pytest.raises(TimingInputError, match="period_ps"):
        estimate_pulse_grid(t, -100)


def test_true_offset_outside_the_search_range_is_not_invented() -> None:
    c = bb84_clicks(6, offset_ps=50_000_000.0)  # K = -5000
    with pytest.raises(AlignmentError, match=r"^pulse offset"):
        align_pulse_train(
            c.times,
            c.basis,
            c.bit,
            10_000,
            c.revealed_index,
            c.revealed_basis,
            c.revealed_bit,
            max_pulse_offset=2_000,
            pulse_offset_guess=5_000,
        )
    r = align_pulse_train(
        c.times,
        c.basis,
        c.bit,
        10_000,
        c.revealed_index,
        c.revealed_basis,
        c.revealed_bit,
        max_pulse_offset=2_000,
        pulse_offset_guess=-4_000,
    )
    assert r.pulse_offset == -5_000
