"""PHYSICS.md validation case 7: two nodes' clocks disagree exactly as the truth says.

The emulated timestamps of the two photons of a pair, each in its own node's clock,
must differ by the true clock offset plus the fibre delay (and drift): an estimate
from N coincidences agrees with it within sigma_rel / sqrt(N)."""

from __future__ import annotations

import math

import numpy as np
from helpers import Z999, bb84_profile, coincidence_deltas, make_world, spdc_profile
from scipy import stats

OFFSET_S = 1.234567891e-3
LENGTH_KM = 10.0


def expected_delta_ps(t_true_ps: np.ndarray | float, drift_ppm: float) -> np.ndarray | float:
    """From first principles: Bob's tag of the idler minus Alice's tag of the signal.

    Alice's clock is true time; Bob's reads offset + (1 + drift) * t; the idler
    arrives L * 4.9 us/km later than the signal."""
    fibre = LENGTH_KM * 4.9e6
    bob = OFFSET_S * 1e12 + (t_true_ps + fibre) * (1 + drift_ppm * 1e-6)
    return bob - t_true_ps


def run(drift_ppm: float) -> tuple[np.ndarray, np.ndarray, object]:
    sigma = 40.0
    world = make_world(
        spdc_profile(
            length_km=LENGTH_KM,
            bob_offset_s=OFFSET_S,
            bob_drift_ppm=drift_ppm,
            jitter_ps=(sigma, sigma),
            pairs_per_s=5e5,
        )
    )
    ra = world.tagger("alice.tagger").open_reader()
    rb = world.tagger("bob.tagger").open_reader()
    a = ra.read(1.0).timestamps_ps
    b = rb.read(1.0).timestamps_ps
    return a, b, world


def test_truth_matches_first_principles() -> None:
    _, _, world = run(0.7)
    truth = world.truth  # type: ignore[attr-defined]
    for t in (0.0, 0.5):
        got = truth.expected_delta_ps("alice.spdc", "alice.da", "bob.db", t)
        assert abs(got - expected_delta_ps(t * 1e12, 0.7)) < 1e-3
    assert truth.clock_offset_s("bob") == OFFSET_S
    assert truth.link_delay_s("ab") == LENGTH_KM * 4.9e-6


def test_offset_recovered_within_sigma_over_sqrt_n() -> None:
    a, b, _ = run(0.0)
    d = coincidence_deltas(a, b, expected_delta_ps(0.0, 0.0), 1000.0)
    sigma_rel = math.sqrt(2) * 40.0
    n = d.size
    assert n > 5000
    # Accidentals in a 1 ns window are ~1e-3 of the pairs here; the mean is the estimate.
    # Timestamps are floored to 1 ps: the difference of two floors has mean 0.
    assert abs(d.mean()) < Z999 * sigma_rel / math.sqrt(n), (d.mean(), n)
    # And the spread is the two detectors' jitter.
    core = d[np.abs(d) < 6 * sigma_rel]
    assert stats.kstest(core, "norm", args=(0.0, math.sqrt(sigma_rel**2 + 1 / 6))).pvalue > 1e-3


def test_drift_moves_the_offset_linearly() -> None:
    drift = 2.0  # ppm: Bob's clock gains 2 us per second
    a, b, _ = run(drift)
    centre = expected_delta_ps(a.astype(float), drift)
    d = coincidence_deltas(a, b, centre, 1000.0)
    assert d.size > 5000
    assert abs(d.mean()) < Z999 * math.sqrt(2) * 40.0 / math.sqrt(d.size)
    # Without the drift term the pairs would be microseconds away from the window.
    assert coincidence_deltas(a, b, expected_delta_ps(a.astype(float), 0.0), 1000.0).size < 50


def test_sync_pulses_tick_in_each_node_clock() -> None:
    table = bb84_profile(bob_offset_s=OFFSET_S, bob_drift_ppm=0.5)
    table["nodes"]["alice"]["components"]["tx"]["sync_outputs"] = [
        {"tagger": "bob.tagger", "channel": 4, "every_n_pulses": 8000, "link": "ab"}
    ]
    # The sync takes channel 4 on Bob's tagger: detector A goes to a 5th channel.
    bob = table["nodes"]["bob"]["components"]
    bob["tagger"]["n_channels"] = 5
    bob["a"]["channel"] = 5
    world = make_world(table)
    block = world.tagger("bob.tagger").read(0.01)
    ts = block.timestamps_ps[block.channels == 4]
    assert ts.size == 100
    # 8000 pulses at 80 MHz = 100 us of Alice's clock, read by Bob's (0.5 ppm fast).
    step = np.diff(ts)
    assert np.all(np.abs(step - 100e6 * (1 + 0.5e-6)) <= 1.0)
    # Each sync marks pulse k = 8000 m: it leaves at k / f and crosses 10 km of fibre.
    k = np.rint((ts - OFFSET_S * 1e12) / (1 + 0.5e-6) - 10 * 4.9e6) / 12_500
    assert np.all(k % 8000 == 0)


def test_fibre_delay_random_walk() -> None:
    sigma = 200.0  # ps / sqrt(s)
    table = bb84_profile()
    table["links"]["ab"]["delay_drift_ps_per_sqrt_s"] = sigma
    table["nodes"]["alice"]["components"]["tx"]["sync_outputs"] = [
        {"tagger": "bob.tagger", "channel": 4, "every_n_pulses": 80_000, "link": "ab"}
    ]
    bob = table["nodes"]["bob"]["components"]
    bob["tagger"]["n_channels"] = 5
    bob["a"]["channel"] = 5
    world = make_world(table)
    block = world.tagger("bob.tagger").read(2.0)
    ts = block.timestamps_ps[block.channels == 4].astype(float)
    k = np.arange(ts.size) * 80_000 + round(ts[0] / 12_500 - 10 * 4.9e6 / 12_500)
    emitted = k * 12_500.0
    # Each sync carries the fibre delay of its moment, as the truth reports it (1 ms grid).
    truth = np.array([world.truth.link_delay_s("ab", t * 1e-12) * 1e12 for t in emitted])
    assert np.all(np.abs(ts - emitted - truth) <= 1.0)
    # The delay walks: steps of 1 ms have standard deviation sigma * sqrt(1 ms).
    steps = np.diff(truth)
    assert stats.kstest(steps, "norm", args=(0.0, sigma * math.sqrt(1e-3))).pvalue > 1e-3
