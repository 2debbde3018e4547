"""PHYSICS.md validation case 3 (coincidence capture, accidentals) and SPDC pair statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import binomial_interval, count_coincidences, make_world, spdc_profile
from scipy import stats
from scipy.special import erf


def singles(block: object, channel: int) -> np.ndarray:
    return block.timestamps_ps[block.channels == channel]  # type: ignore[attr-defined]


def poisson_ok(observed: int, mean: float) -> bool:
    lo, hi = stats.poisson.interval(0.999, mean)
    return lo <= observed <= hi


def test_coincidence_capture_erf_law_and_accidentals() -> None:
    sig_a, sig_b, sig_pair = 60.0, 90.0, 20.0
    rate, herald, eta, duration = 2e6, 0.3, 0.5, 0.5
    world = make_world(
        spdc_profile(
            pairs_per_s=rate,
            herald=herald,
            eta=eta,
            jitter_ps=(sig_a, sig_b),
            pair_jitter_ps=sig_pair,
        )
    )
    assert world.truth.pair_rate_hz("alice.spdc") == pytest.approx(rate)
    block = world.tagger("alice.tagger").read(duration)
    a, b = singles(block, 1), singles(block, 5)
    s_a, s_b = a.size / duration, b.size / duration
    p = herald * eta
    assert poisson_ok(a.size, rate * p * duration)
    delta = world.truth.expected_delta_ps("alice.spdc", "alice.da", "alice.db", 0.0)
    sigma_rel = math.sqrt(sig_a**2 + sig_b**2 + 2 * sig_pair**2)
    true_pairs = rate * p * p * duration
    for width in (50.0, 150.0, 300.0, 1000.0):
        capture = erf(width / (2 * math.sqrt(2) * sigma_rel))
        expected = true_pairs * capture + s_a * s_b * width * 1e-12 * duration
        got = count_coincidences(a, b, delta, width)
        assert poisson_ok(got, expected), (width, got, expected)
    # Accidentals alone, far from the true delay: C_acc = S_A S_B w T.
    width = 20_000.0
    acc = count_coincidences(a, b, delta + 200_000.0, width)
    assert poisson_ok(acc, s_a * s_b * width * 1e-12 * duration), acc


@pytest.mark.parametrize("modes", [1.0, 1000.0])
def test_pulsed_pair_statistics_thermal_or_poisson(modes: float) -> None:
    f, mean_pairs, herald, eta = 80e6, 0.5, 0.3, 0.5
    world = make_world(
        spdc_profile(
            emission="pulsed",
            rep_rate_hz=f,
            modes=modes,
            pairs_per_s=mean_pairs * f,
            herald=herald,
            eta=eta,
            jitter_ps=(20.0, 20.0),
            dead_time_ns=5.0,
        )
    )
    duration = 0.02
    block = world.tagger("alice.tagger").read(duration)
    t = singles(block, 1)
    pulses = np.unique(np.rint(t / 12_500.0).astype(np.int64))
    n = round(duration * f)
    p = herald * eta
    # Probability of at least one photon at the threshold detector per pulse:
    # 1 - PGF of the negative binomial (K modes) at 1 - p.
    expected = 1 - (1 + mean_pairs * p / modes) ** (-modes)
    lo, hi = binomial_interval(n, expected)
    assert lo - 1 <= pulses.size <= hi + 1, (pulses.size, n * expected)
    # The two cases differ by far more than the interval: the test tells them apart.
    other = 1 - math.exp(-mean_pairs * p) if modes == 1.0 else 1 - 1 / (1 + mean_pairs * p)
    assert not lo <= n * other <= hi


def test_polarization_correlations_give_bbm92_qber() -> None:
    visibility = 0.9
    world = make_world(
        spdc_profile(pairs_per_s=5e5, visibility=visibility, analyzers=True, jitter_ps=(50.0, 50.0))
    )
    block = world.tagger("alice.tagger").read(0.5)
    delta = world.truth.expected_delta_ps("alice.spdc", "alice.ah", "alice.bh", 0.0)
    counts = {}
    for i, x in enumerate("HVDA"):
        for j, y in enumerate("HVDA"):
            counts[x + y] = count_coincidences(
                singles(block, 1 + i), singles(block, 5 + j), delta, 400.0
            )
    same = sum(counts[k] for k in ("HH", "HV", "VH", "VV", "DD", "DA", "AD", "AA"))
    errors = counts["HV"] + counts["VH"] + counts["DA"] + counts["AD"]
    # Phi+ with white noise: QBER (1 - V)/2 in both bases (accidentals here are ~1e-3 of it).
    lo, hi = binomial_interval(same, (1 - visibility) / 2)
    assert lo <= errors <= hi, (errors, same)
    # Mixed bases are uncorrelated.
    cross = counts["HD"] + counts["HA"]
    lo, hi = binomial_interval(cross, 0.5)
    assert lo <= counts["HD"] <= hi


def test_pump_current_and_crystal_temperature_set_the_pair_rate() -> None:
    world = make_world(spdc_profile())
    src = world.spdc("alice.spdc")
    src.pump_current_ma = 30.0  # 10 mA above threshold -> 10 mW
    src.heater_temp_c = src.cfg.phase_match_temp_c + 1.0  # half of the sinc^2 width
    expected = 1e5 * 10.0 * np.sinc(0.5) ** 2
    assert src.pair_rate_hz == pytest.approx(expected)
    block = world.tagger("alice.tagger").read(0.2)
    a = singles(block, 1)
    assert poisson_ok(a.size, expected * 0.3 * 0.5 * 0.2)
    src.enabled = False
    assert world.tagger("alice.tagger").read(0.05).timestamps_ps.size == 0


def test_heater_relaxes_with_its_time_constant() -> None:
    table = spdc_profile()
    table["nodes"]["alice"]["components"]["spdc"]["heater_time_constant_s"] = 10.0
    world = make_world(table)
    src = world.spdc("alice.spdc")
    t0 = src.heater_actual_c
    src.heater_temp_c = t0 + 5.0
    world.advance_to(world.now_s + 10.0)
    assert src.heater_actual_c == pytest.approx(t0 + 5.0 * (1 - math.exp(-1.0)))


def test_pulsed_source_sync_marks_the_pump_pulses() -> None:
    table = spdc_profile(
        emission="pulsed", rep_rate_hz=80e6, pairs_per_s=4e6, jitter_ps=(20.0, 20.0)
    )
    table["nodes"]["alice"]["components"]["spdc"]["sync_outputs"] = [
        {"tagger": "tagger", "channel": 8, "every_n_pulses": 1000, "delay_ns": 3.0}
    ]
    world = make_world(table)
    block = world.tagger("alice.tagger").read(0.001)
    sync = singles(block, 8)
    assert sync.size == 80
    np.testing.assert_array_equal(np.diff(sync), 12_500_000)
    # Photons come from pump pulses: 12.5 ns grid, 3 ns before the sync grid.
    phase = (singles(block, 1) - (sync[0] - 3000)) % 12_500
    phase = np.where(phase > 6_250, phase - 12_500, phase)
    assert np.abs(phase).max() < 8 * 20.0 + 2


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_intercept_resend_on_a_pair_arm_breaks_the_correlations(fraction: float) -> None:
    visibility = 0.98
    table = spdc_profile(
        pairs_per_s=5e5,
        visibility=visibility,
        analyzers=True,
        length_km=2.0,
        jitter_ps=(50.0, 50.0),
    )
    table["links"]["ab"]["eavesdropper"] = {"fraction": fraction}
    world = make_world(table)
    a_block = world.tagger("alice.tagger").open_reader().read(0.5)
    b_reader = world.tagger("bob.tagger").open_reader()
    b_block = b_reader.read(0.5)
    delta = world.truth.expected_delta_ps("alice.spdc", "alice.ah", "bob.bh", 0.0)
    counts = {}
    for i, x in enumerate("HVDA"):
        for j, y in enumerate("HVDA"):
            counts[x + y] = count_coincidences(
                singles(a_block, 1 + i), singles(b_block, 1 + j), delta, 400.0
            )
    same = sum(counts[k] for k in ("HH", "HV", "VH", "VV", "DD", "DA", "AD", "AA"))
    errors = counts["HV"] + counts["VH"] + counts["DA"] + counts["AD"]
    # Eve's basis matches half the time (then the pair keeps visibility V), else random.
    qber = (1 - fraction) * (1 - visibility) / 2 + fraction * (0.25 + (1 - visibility) / 4)
    lo, hi = binomial_interval(same, qber)
    assert lo <= errors <= hi, (errors / same, qber)
