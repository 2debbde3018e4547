"""Detector physics (PHYSICS.md validation case 2 and the detector checklist)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    Z999,
    bb84_profile,
    binomial_interval,
    clicked_pulses,
    make_world,
    single_detector_profile,
)
from scipy import stats

from qhil.emulators.world import WorldSettingError


def dark_world(dark_hz: float, **det: float | bool) -> object:
    """Only dark counts: the transmitter sends vacuum."""
    table = single_detector_profile(mu=0.0, dark_hz=dark_hz, jitter_ps=0.0, detector=dict(det))
    return make_world(table)


def tags(world: object, duration: float) -> np.ndarray:
    return world.tagger("bob.tagger").read(duration).timestamps_ps  # type: ignore[attr-defined]


def poisson_ok(observed: int, mean: float) -> bool:
    lo, hi = stats.poisson.interval(0.999, mean)
    return lo <= observed <= hi


def test_dead_time_law_non_paralysable() -> None:
    # 10 MHz true rate, 40 ns dead time -> R / (1 + R tau) = 7.14 MHz.
    rate, tau, duration = 10e6, 40e-9, 0.02
    ts = tags(dark_world(rate, dead_time_ns=40.0), duration)
    expected = rate / (1 + rate * tau)
    assert expected == pytest.approx(7.142857e6, rel=1e-6)
    # A renewal process with intervals tau + Exp(R): variance of the count is
    # mean / (1 + R tau)^2.
    mean = expected * duration
    sigma = math.sqrt(mean) / (1 + rate * tau)
    assert abs(ts.size - mean) < Z999 * sigma, (ts.size, mean)
    assert np.diff(ts).min() >= 40_000 - 1  # no two registered events within the dead time


def test_dark_count_intervals_are_exponential_after_dead_time() -> None:
    rate, tau_ps = 1e6, 50_000
    ts = tags(dark_world(rate, dead_time_ns=50.0), 0.02)
    gaps = np.diff(ts).astype(float) - tau_ps
    assert gaps.min() >= -1.0
    # Non-paralysable: interval = tau + Exp(R) exactly.
    result = stats.kstest(gaps, "expon", args=(0, 1e12 / rate))
    assert result.pvalue > 1e-3, result


def test_afterpulsing_rate_and_delay() -> None:
    dark, p_ap, tau_ap_ns, tau_ns = 2e3, 0.1, 100.0, 50.0
    world = dark_world(
        dark,
        dead_time_ns=tau_ns,
        afterpulse_probability=p_ap,
        afterpulse_time_constant_ns=tau_ap_ns,
    )
    duration = 2.0
    ts = tags(world, duration)
    # Every registered avalanche (afterpulses too) triggers one with probability p:
    # cluster sizes are geometric, mean 1/(1-p), E[S^2] = (1+p)/(1-p)^2.
    mean = dark * duration / (1 - p_ap)
    sigma = math.sqrt(dark * duration * (1 + p_ap)) / (1 - p_ap)
    assert abs(ts.size - mean) < Z999 * sigma, (ts.size, mean)
    # Short intervals are afterpulses: delay after the dead time ~ Exp(tau_ap).
    gaps = np.diff(ts).astype(float) - tau_ns * 1e3
    window = 20 * tau_ap_ns * 1e3
    short = gaps[gaps < window]
    children = dark * duration * p_ap / (1 - p_ap)
    accidental = ts.size * (1 - math.exp(-dark * window * 1e-12))
    assert poisson_ok(short.size, children + accidental), (short.size, children + accidental)
    fit = stats.kstest(short, stats.truncexpon(b=20, scale=tau_ap_ns * 1e3).cdf)
    assert fit.pvalue > 1e-3, fit


def test_gaussian_jitter_on_timestamps() -> None:
    sigma = 50.0
    world = make_world(single_detector_profile(mu=0.5, length_km=0.0, eta=0.1, jitter_ps=sigma))
    block = world.tagger("bob.tagger").read(0.002)
    k = world.truth.pulse_indices("alice.tx", "bob.tagger", block)
    expected = k * 12_500.0  # zero-length fibre, no offsets: photon k arrives at k/f
    resid = block.timestamps_ps - expected
    # Timestamps are floored to 1 ps bins: shift by half a bin, add its variance.
    scale = math.sqrt(sigma**2 + 1 / 12)
    result = stats.kstest(resid + 0.5, "norm", args=(0.0, scale))
    assert result.pvalue > 1e-3, result
    assert block.timestamps_ps.size > 5_000


def test_jitter_exponential_tail() -> None:
    sigma, tail, frac = 30.0, 300.0, 0.2
    table = single_detector_profile(
        mu=0.5,
        length_km=0.0,
        eta=0.1,
        jitter_ps=sigma,
        detector={"jitter_tail_fraction": frac, "jitter_tail_ps": tail},
    )
    world = make_world(table)
    block = world.tagger("bob.tagger").read(0.002)
    k = world.truth.pulse_indices("alice.tx", "bob.tagger", block)
    resid = block.timestamps_ps - k * 12_500.0 + 0.5
    tail_dist = stats.exponnorm(K=tail / sigma, loc=0.0, scale=sigma)

    def cdf(x: np.ndarray) -> np.ndarray:
        return (1 - frac) * stats.norm.cdf(x, 0.0, sigma) + frac * tail_dist.cdf(x)

    result = stats.kstest(resid, cdf)
    assert result.pvalue > 1e-3, result


def spad_gain(v: float, onset: float = 45.0, scale: float = 2.0) -> float:
    return 1 - math.exp(-(v - onset) / scale) if v > onset else 0.0


def test_bias_changes_efficiency_along_the_documented_curve() -> None:
    world = make_world(single_detector_profile(mu=0.5, length_km=10.0, eta=0.2))
    det = world.detector("bob.det")
    det.bias_v = 47.0
    eta = 0.2 * spad_gain(47.0) / spad_gain(50.0)
    assert det.efficiency == pytest.approx(eta, rel=1e-9)
    block = world.tagger("bob.tagger").read(0.05)
    n = round(0.05 * 80e6)
    lo, hi = binomial_interval(n, 1 - math.exp(-0.5 * eta * 10**-0.2))
    assert lo - 1 <= clicked_pulses(world, block).size <= hi + 1


def test_bias_and_temperature_change_dark_rate() -> None:
    world = dark_world(1e5)
    det = world.detector("bob.det")  # type: ignore[attr-defined]
    det.bias_v = 48.0
    det.set_temperature_c(-40.0 + 8.0)
    # dark(V) = dark_nom exp((V - V_nom)/1.5 V), doubling every 8 C.
    expected = 1e5 * math.exp((48.0 - 50.0) / 1.5) * 2.0
    assert det.dark_count_rate_hz == pytest.approx(expected, rel=1e-9)
    assert poisson_ok(tags(world, 0.05).size, expected * 0.05)


def test_threshold_discriminates_half_the_avalanches() -> None:
    world = dark_world(1e5)
    det = world.detector("bob.det")  # type: ignore[attr-defined]
    # Amplitude 0.5 V per V of excess bias: 2.5 V at 50 V with a 45 V breakdown.
    det.threshold_v = 2.5
    assert poisson_ok(tags(world, 0.05).size, 0.5 * 1e5 * 0.05)


def test_gating_dark_counts_and_signal() -> None:
    # Dark counts only inside 100 ns gates at 1 MHz: a tenth of the free-running rate.
    world = dark_world(
        2e5, gate_enabled=True, gate_frequency_hz=1e6, gate_width_ns=100.0, gate_delay_ns=200.0
    )
    ts = tags(world, 0.05)
    assert poisson_ok(ts.size, 0.1 * 2e5 * 0.05)
    phase = (ts - 200_000) % 1_000_000
    assert phase.max() < 100_001

    # Signal pulses at 80 MHz arrive at phase 0 of the 12.5 ns period.
    def signal(delay_ns: float) -> int:
        table = single_detector_profile(
            mu=0.5,
            length_km=0.0,
            eta=0.2,
            detector={
                "gate_enabled": True,
                "gate_frequency_hz": 80e6,
                "gate_width_ns": 1.0,
                "gate_delay_ns": delay_ns,
            },
        )
        w = make_world(table)
        return int(w.tagger("bob.tagger").read(0.01).timestamps_ps.size)

    n = round(0.01 * 80e6)
    lo, hi = binomial_interval(n, 1 - math.exp(-0.5 * 0.2))
    assert lo - 1 <= signal(12.0) <= hi + 1  # gate [12, 13) ns mod 12.5 covers the arrivals
    assert signal(5.0) == 0  # gate [5, 6) ns misses them


def test_disabled_detector_is_silent_and_settings_are_checked() -> None:
    world = make_world(single_detector_profile(mu=0.5, length_km=0.0, dark_hz=1e5))
    det = world.detector("bob.det")
    det.enabled = False
    assert tags(world, 0.01).size == 0
    with pytest.raises(WorldSettingError, match="bob.det.bias"):
        det.bias_v = 500.0
    with pytest.raises(WorldSettingError, match="gate_width_ns"):
        det.gate_width_ns = 1e6


def test_detectors_on_one_tagger_keep_their_own_dead_time() -> None:
    """Two dark-count detectors wired to one tagger (one bank): each follows the dead-time
    law with its own tau, and neither blocks the other."""
    rate, duration = 8e6, 0.02
    table = single_detector_profile(
        mu=0.0, dark_hz=rate, jitter_ps=0.0, detector={"dead_time_ns": 30.0}
    )
    bob = table["nodes"]["bob"]["components"]
    bob["det2"] = dict(bob["det"], channel=2, dead_time_ns=80.0, delay_ns=7.0, jitter_ps=300.0)
    block = make_world(table).tagger("bob.tagger").read(duration)  # type: ignore[attr-defined]
    ch, ts = block.channels, block.timestamps_ps
    for channel, tau_ns in ((1, 30.0), (2, 80.0)):
        mine = ts[ch == channel]
        expected = rate / (1 + rate * tau_ns * 1e-9) * duration
        sigma = math.sqrt(expected) / (1 + rate * tau_ns * 1e-9)
        assert abs(mine.size - expected) < Z999 * sigma, (channel, mine.size, expected)
        # The 300 ps jitter of channel 2 can bring two registered clicks a little closer.
        slack = 1 if channel == 1 else 8 * 300
        assert np.diff(mine).min() >= tau_ns * 1e3 - slack
    # Across detectors nothing is blocked: pairs closer than either dead time occur as
    # often as for independent streams (two-sided Poisson test, 99.9 %).
    a, b = ts[ch == 1].astype(float), ts[ch == 2].astype(float)
    close = np.abs(b[:, None] - a[np.clip(np.searchsorted(a, b)[:, None] + [-1, 0], 0, a.size - 1)])
    n_close = int((close.min(axis=1) < 10_000).sum())
    expected_close = b.size * (a.size / (duration * 1e12)) * 2 * 10_000
    assert poisson_ok(n_close, expected_close), (n_close, expected_close)


def test_detectors_on_one_tagger_keep_their_own_jitter_and_delay() -> None:
    """The four detectors of a BB84 receiver (one bank) with different cable delays and
    jitters: each channel's timestamps sit at its own delay after the pulse, with its own
    Gaussian spread (KS, 99.9 %)."""
    table = bb84_profile(length_km=0.0, eta=0.2)
    delays_ns, sigmas = [0.0, 1.5, 3.0, 4.0], [20.0, 60.0, 120.0, 40.0]
    for name, delay, sigma in zip("hvda", delays_ns, sigmas, strict=True):
        table["nodes"]["bob"]["components"][name].update(delay_ns=delay, jitter_ps=sigma)
    world = make_world(table)
    block = world.tagger("bob.tagger").read(0.002)  # type: ignore[attr-defined]
    period = 12_500.0
    for channel, (delay, sigma) in enumerate(zip(delays_ns, sigmas, strict=True), start=1):
        ts = block.timestamps_ps[block.channels == channel].astype(float) - delay * 1e3
        resid = ts - np.round(ts / period) * period  # zero-length fibre, clocks agree
        assert resid.size > 2_000
        scale = math.sqrt(sigma**2 + 1 / 12)  # plus the 1 ps bin floor
        result = stats.kstest(resid + 0.5, "norm", args=(0.0, scale))
        assert result.pvalue > 1e-3, (channel, result)


def test_a_detector_switched_back_on_sees_the_photons_already_in_the_fibre() -> None:
    """Photons emitted while a detector was off are still in the fibre when it comes back
    on (122 us at 25 km): it counts them at once, at the steady rate (Poisson, 99.9 %)."""
    world = make_world(single_detector_profile(mu=0.5, length_km=25.0, eta=0.5, jitter_ps=0.0))
    tagger, det = world.tagger("bob.tagger"), world.detector("bob.det")  # type: ignore[attr-defined]
    steady = len(tagger.read(0.001)) / 0.001
    det.enabled = False
    assert len(tagger.read(0.0005)) == 0
    det.enabled = True
    window = 60e-6  # all emitted while the detector was off
    assert poisson_ok(len(tagger.read(window)), steady * window)
