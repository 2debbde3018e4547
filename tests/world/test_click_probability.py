"""PHYSICS.md validation case 1: click probability of a threshold detector behind a fibre."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    binomial_interval,
    clicked_pulses,
    make_world,
    pulse_window,
    single_detector_profile,
)
from scipy import stats


def p_click(mu: float, eta: float, alpha: float, length_km: float, p_dark: float = 0.0) -> float:
    """P_click = 1 - (1 - p_dark) exp(-mu eta 10^(-alpha L / 10))."""
    return 1 - (1 - p_dark) * math.exp(-mu * eta * 10 ** (-alpha * length_km / 10))


def test_formula_matches_the_published_example() -> None:
    # PHYSICS.md: mu 0.1, 50 km, 0.2 dB/km, eta 0.8, no dark counts -> 7.97e-3.
    assert p_click(0.1, 0.8, 0.2, 50.0) == pytest.approx(7.97e-3, abs=0.005e-3)


@pytest.mark.parametrize(
    ("mu", "length_km", "eta", "dark_hz"),
    [
        (0.1, 50.0, 0.8, 0.0),  # the PHYSICS.md example
        (0.5, 10.0, 0.1, 0.0),
        (2.0, 5.0, 0.6, 0.0),  # many multi-photon pulses: threshold response
        (0.1, 50.0, 0.8, 2e5),  # dark counts comparable to the signal
    ],
)
def test_click_probability_per_pulse(
    mu: float, length_km: float, eta: float, dark_hz: float
) -> None:
    f = 80e6
    world = make_world(
        single_detector_profile(mu=mu, length_km=length_km, eta=eta, dark_hz=dark_hz, rep_rate_hz=f)
    )
    # A dark count falls in a pulse's slot (1/f wide) with probability 1 - exp(-dark/f).
    p = p_click(mu, eta, 0.2, length_km, p_dark=-math.expm1(-dark_hz / f))
    # About 3e5 expected clicks: a relative precision of ~0.2 %.
    duration = min(0.2, 3e5 / (p * f))
    block = world.tagger("bob.tagger").read(duration)
    # Pulses 0 .. k1-1 were emitted after power-on and arrive inside the window; the last
    # fibre delay's worth of pulses arrives after it.
    _, n_pulses = pulse_window(world, block, "bob.det")
    k = clicked_pulses(world, block)
    clicks = int(np.count_nonzero(k < n_pulses))
    lo, hi = binomial_interval(n_pulses, p, 0.999)
    # Slots at the window edges may be cut: allow one pulse either way.
    assert lo - 1 <= clicks <= hi + 1, (clicks, n_pulses * p)


def test_attenuator_setting_changes_click_probability() -> None:
    table = single_detector_profile(mu=0.5, length_km=10.0, eta=0.5)
    table["nodes"]["alice"]["components"]["att"] = {"type": "attenuator", "max_attenuation_db": 60}
    table["nodes"]["alice"]["components"]["tx"]["path"] = ["alice.att", "ab", "bob.det"]
    world = make_world(table)
    world.attenuator("alice.att").attenuation_db = 6.0
    assert world.truth.mean_photon_numbers("alice.tx")[0] == pytest.approx(0.5 * 10**-0.6)
    block = world.tagger("bob.tagger").read(0.1)
    _, n = pulse_window(world, block, "bob.det")
    p = 1 - math.exp(-0.5 * 10**-0.6 * 0.5 * 10 ** (-0.2))
    lo, hi = binomial_interval(n, p)
    assert lo - 1 <= np.count_nonzero(clicked_pulses(world, block) < n) <= hi + 1


def test_intensity_noise_averages_the_click_probability() -> None:
    sigma, mu, eta = 0.3, 2.0, 0.5
    table = single_detector_profile(mu=mu, length_km=0.0, eta=eta)
    table["nodes"]["alice"]["components"]["tx"]["intensity_noise_rel"] = sigma
    world = make_world(table)
    block = world.tagger("bob.tagger").read(0.005)
    n = round(0.005 * 80e6)
    # E[1 - exp(-mu (1 + sigma z) eta)] over a standard normal z (clipped at 6 sigma).
    z = np.linspace(-6, 6, 20001)
    w = np.exp(-0.5 * z**2)
    p = float(np.sum(w * -np.expm1(-mu * np.maximum(0, 1 + sigma * z) * eta)) / w.sum())
    lo, hi = binomial_interval(n, p)
    assert lo - 1 <= clicked_pulses(world, block).size <= hi + 1
    # Without the fluctuation the probability would be 1 - exp(-1) = 0.632, outside.
    assert not lo <= n * -math.expm1(-mu * eta) <= hi


def test_link_background_counts() -> None:
    table = single_detector_profile(mu=0.0, length_km=20.0, eta=0.25)
    table["links"]["ab"]["background_rate_hz"] = 4e5
    world = make_world(table)
    ts = world.tagger("bob.tagger").read(0.05).timestamps_ps
    lo, hi = stats.poisson.interval(0.999, 4e5 * 0.25 * 0.05)
    assert lo <= ts.size <= hi
