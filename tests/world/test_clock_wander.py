"""Node clocks that wander: a seeded random walk of frequency (issue 9).

A node's fractional frequency is drift + W(t), W a Wiener process from power-on with
std(W(t + tau) - W(t)) = wander * 1e-9 * sqrt(tau / 1 s); its clock reads
offset + (1 + drift) t + integral of W. The walk is a pure function of (world seed,
node name), whatever times are asked for and in what chunks.

Statistical checks are two-sided at 99.9 % confidence each, on fixed seeds.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from helpers import bb84_profile, coincidence_deltas, make_world, spdc_profile
from scipy import stats

from qhil.emulators.world import World, load_world_config
from qhil.emulators.world.clock import (
    WANDER_BLOCK,
    WANDER_CACHE_BLOCKS,
    WANDER_STEP_PS,
    NodeClock,
)
from qhil.errors import ConfigError

PS = 10**12
CONF = 0.999
SYNC_EVERY = 80_000  # 80 MHz / 80 000: one sync tag per ms
INPUT_DELAY_PS = 3_000_000.5


def _wandering(wander: float, *, alice_wander: float = 0.0, seed: int = 1) -> World:
    table = bb84_profile(mu=0.0, bob_offset_s=2.5e-3, bob_drift_ppm=-3.0)
    table["nodes"]["bob"]["clock_wander_ppb_per_sqrt_s"] = wander
    table["nodes"]["alice"]["clock_wander_ppb_per_sqrt_s"] = alice_wander
    return make_world(table, seed=seed)


def _sync_world(wander: float | None) -> World:
    """No photons: Alice's transmitter (clock without wander) puts a sync tag on Bob's tagger
    every ms, no jitter, 1 ps bins; channel 5 has an input delay. Bob's tags are then a pure
    function of his clock."""
    table = bb84_profile(mu=0.0, bob_offset_s=2.5e-3, bob_drift_ppm=-3.0)
    table["nodes"]["alice"]["components"]["tx"]["sync_outputs"] = [
        {"tagger": "bob.tagger", "channel": 5, "every_n_pulses": SYNC_EVERY}
    ]
    tagger = table["nodes"]["bob"]["components"]["tagger"]
    tagger["n_channels"] = 5
    tagger["input_delays_ps"] = {5: INPUT_DELAY_PS}
    if wander is not None:
        table["nodes"]["bob"]["clock_wander_ppb_per_sqrt_s"] = wander
    return make_world(table, seed=5)


def _read_sync(world: World, chunk_s: float, total_s: float) -> np.ndarray:
    reader = world.tagger("bob.tagger").open_reader()
    parts = [reader.read(chunk_s) for _ in range(round(total_s / chunk_s))]
    reader.close()
    ts = np.concatenate([p.timestamps_ps[p.channels == 5] for p in parts])
    return ts


def _expected_sync(world: World, n: int) -> np.ndarray:
    """Bob's reading of each sync's arrival: floor(node_of_true(k P + input delay)), exactly."""
    clock = world.node("bob").clock
    period = Fraction(PS) / Fraction(80e6) * SYNC_EVERY
    delay = Fraction(INPUT_DELAY_PS)
    return np.array([math.floor(clock.node_of_true(k * period + delay)) for k in range(n)])


# -- the random walk -------------------------------------------------------------------------


@pytest.mark.parametrize("tau_s", [0.01, 0.1, 1.0, 10.0])
def test_frequency_increments_are_wiener(tau_s: float) -> None:
    """Non-overlapping increments of y over tau are N(0, (wander sqrt(tau))^2): KS against
    the normal law and a chi-square test of their variance, each two-sided at 99.9 %."""
    wander = 7.0
    clock = _wandering(wander, seed=11).node("bob").clock
    n = 2000
    t = np.arange(n + 1) * (tau_s * PS)
    y = clock.wander(t)
    assert y[0] == 0.0  # the walk starts at power-on
    z = np.diff(y) / (wander * 1e-9 * math.sqrt(tau_s))
    assert stats.kstest(z, "norm").pvalue > 1 - CONF
    chi2 = float(np.sum(z**2))
    lo, hi = stats.chi2.ppf([(1 - CONF) / 2, (1 + CONF) / 2], n)
    assert lo < chi2 < hi, (chi2, lo, hi)


def test_allan_and_hadamard_deviation_of_random_walk_fm() -> None:
    """The README's sigma_y(tau) = wander sqrt(tau / 3): the overlapping Allan variance of the
    phase at tau = 1 s over 20 000 s, within its 99.9 % interval (equivalent degrees of
    freedom ~ N / 2 for random-walk FM at this N / m, taken as N / 4 to stay conservative)."""
    wander = 3.0
    clock = _wandering(wander, seed=12).node("bob").clock
    tau = 1.0
    x = clock.phase_ps(np.arange(20_001) * tau * PS) / PS  # phase, s
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    avar = float(np.mean(d2**2)) / (2 * tau**2)
    expected = (wander * 1e-9) ** 2 * tau / 3
    dof = x.size / 4
    lo, hi = stats.chi2.ppf([(1 - CONF) / 2, (1 + CONF) / 2], dof) / dof
    assert lo < avar / expected < hi, avar / expected
    # Hadamard: third differences of the phase, sigma_H^2 = (wander 1e-9)^2 tau / 6 (fewer
    # equivalent degrees of freedom: N / 6 taken).
    d3 = x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]
    hvar = float(np.mean(d3**2)) / (6 * tau**2)
    dof = x.size / 6
    lo, hi = stats.chi2.ppf([(1 - CONF) / 2, (1 + CONF) / 2], dof) / dof
    assert lo < hvar / (expected / 2) < hi, hvar / (expected / 2)


def test_phase_is_the_integral_of_the_frequency() -> None:
    """The clock's reading minus its linear part equals a fine numerical integral of its
    frequency (trapezoid on a 0.3 ms grid, which does not fall on the 10 ms knots)."""
    world = _wandering(40.0, seed=13)
    clock = world.node("bob").clock
    h = 0.3e-3 * PS
    t = np.arange(0, 30 * PS, h)
    y = clock.wander(t)
    numeric = np.concatenate([[0.0], np.cumsum((y[1:] + y[:-1]) * (h / 2))])
    phase = clock.phase_ps(t)
    assert np.max(np.abs(phase)) > 1e3  # a wander well above the tolerance below
    assert np.max(np.abs(phase - numeric)) < 1e-3 * np.max(np.abs(phase)) + 1e-3
    # The reading itself: offset + (1 + drift) t + phase, also through the ground truth.
    for ts in (0.0, 1.234567, 29.9):
        tp = round(ts * PS)
        linear = clock._offset_ps + clock._scale * tp
        got = float(clock.node_of_true(tp) - linear)
        assert got == pytest.approx(float(clock.phase_ps(tp)), abs=1e-6)
        off = world.truth.clock_offset_ps("bob", ts)
        assert off == pytest.approx(float(linear - tp) + got, abs=1e-3)
    # The instantaneous rate is the derivative of the reading.
    tp = round(7.77 * PS)
    d = 10**6
    slope = float((clock.node_of_true(tp + d) - clock.node_of_true(tp - d)) / (2 * d))
    assert slope - 1 == pytest.approx(clock.rate_at(tp) - 1, abs=1e-12)
    ppb = world.truth.clock_frequency_ppb("bob", 7.77)
    assert ppb == pytest.approx((clock.rate_at(tp) - 1) * 1e9, abs=1e-6)
    assert ppb == pytest.approx(-3000.0 + world.truth.clock_wander_ppb("bob", 7.77), abs=1e-9)


def test_true_of_node_inverts_node_of_true() -> None:
    world = _wandering(200.0, seed=14)
    clock = world.node("bob").clock
    reading = world.truth.clock_reading_ps("bob", 12.5)
    assert world.truth.clock_true_time_s("bob", reading) == pytest.approx(12.5, abs=1e-15)
    for tp in (0, 123_456_789, 3 * PS + 17, 47 * PS + 5):
        back = clock.true_of_node(clock.node_of_true(tp))
        assert abs(float(back - tp)) < 1e-3
    t = np.linspace(0.0, 50 * PS, 1001)
    assert np.max(np.abs(clock.true_of_node_f(clock.node_of_true_f(t)) - t)) < 0.05


def test_grid_correction_puts_pulses_on_their_node_times() -> None:
    """Pulses every 12.5 ns of a wandering clock, placed at the nominal rate from an exact
    first one and corrected, each read its own node time (to 1e-3 ps)."""
    clock = _wandering(300.0, seed=15).node("bob").clock
    base = 37 * PS + 11
    anchor = 1234.5
    rel = anchor + np.arange(0, 8_000_000, 997) * (12_500.0 / clock.rate)
    corr = clock.grid_correction_ps(base, anchor, rel)
    want = (rel - anchor) * clock.rate  # node time since the anchor pulse
    got = clock.node_delta_ps(base, rel + corr) - clock.node_delta_ps(base, np.array(anchor))
    assert np.max(np.abs(corr)) > 1e3  # the wander matters over the 0.1 s...
    assert np.max(np.abs(got - want)) < 1e-3  # ...and the correction takes it out
    assert not np.any(NodeClock("a", 0.0, 1.0).grid_correction_ps(base, anchor, rel))


# -- determinism and independence ------------------------------------------------------------


def test_walk_is_a_pure_function_of_seed_and_node() -> None:
    """The same times give the same walk whatever was asked before, in what order, and in
    which chunks; another seed gives another walk."""
    t = np.sort(np.random.default_rng(3).uniform(0, 60 * PS, 5000))
    a = _wandering(5.0, seed=21).node("bob").clock
    whole = a.wander(t), a.phase_ps(t)
    b = _wandering(5.0, seed=21).node("bob").clock
    b.phase_ps(90 * PS)  # far ahead first
    backwards = [(b.wander(c), b.phase_ps(c)) for c in np.array_split(t, 37)[::-1]][::-1]
    assert np.array_equal(whole[0], np.concatenate([w for w, _ in backwards]))
    assert np.array_equal(whole[1], np.concatenate([p for _, p in backwards]))
    # The wander's part of the node time elapsed over a stretch does not depend on where
    # the stretch was cut (the linear part is exact arithmetic).
    base = 10 * PS
    rel = t[t > base] - base
    cut = 2_500 * 10**9 + 7
    one = b.wander_delta_ps(base, rel)
    two = b.wander_delta_ps(base + cut, rel - cut) + b.wander_delta_ps(base, np.array(cut))
    assert np.max(np.abs(one)) > 1e4
    assert np.max(np.abs(one - two)) < 1e-3
    assert np.array_equal(b.node_delta_ps(base, rel), rel * b.rate + one)
    other = _wandering(5.0, seed=22).node("bob").clock
    assert not np.allclose(other.wander(t), whole[0])
    # The size of the wander scales one trajectory (it is seeded, not drawn per size).
    c = _wandering(10.0, seed=21).node("bob").clock
    assert np.allclose(c.wander(t), 2 * whole[0], rtol=1e-12, atol=0)


def test_memory_stays_bounded_and_forgotten_blocks_come_back_identical() -> None:
    """A long run keeps only the last `WANDER_CACHE_BLOCKS` blocks whole; an early time asked
    again afterwards (a block generated anew from its kept start) reads the same."""
    clock = _wandering(5.0, seed=23).node("bob").clock
    early = np.array([0.5, 1.0, 7.3]) * PS
    first = clock.wander(early), clock.phase_ps(early)
    block_ps = WANDER_BLOCK * WANDER_STEP_PS
    for j in range(WANDER_CACHE_BLOCKS + 30):  # one long run, read 1 s at a time
        for k in range(0, block_ps, 5 * PS):
            clock.phase_ps(j * block_ps + k + np.linspace(0.0, PS, 50))
    assert len(clock._walk._blocks) <= WANDER_CACHE_BLOCKS
    assert 0 not in clock._walk._blocks
    # Reading the present again generates nothing: a query touches only its own blocks.
    made = []
    generate = clock._walk._generate
    clock._walk._generate = lambda j: made.append(j) or generate(j)  # type: ignore[method-assign]
    clock.phase_ps((WANDER_CACHE_BLOCKS + 29.5) * WANDER_BLOCK * WANDER_STEP_PS + np.arange(9.0))
    assert made == []
    del clock._walk._generate
    assert np.array_equal(clock.wander(early), first[0])
    assert np.array_equal(clock.phase_ps(early), first[1])
    late = (WANDER_CACHE_BLOCKS + 29.5) * block_ps
    fresh = _wandering(5.0, seed=23).node("bob").clock
    assert fresh.phase_ps(late) == clock.phase_ps(late)


def test_two_nodes_wander_independently() -> None:
    """Increments of alice's and bob's walks over 10 ms are uncorrelated: |r| within the
    99.9 % two-sided bound of a zero correlation, 3.29 / sqrt(n)."""
    world = _wandering(5.0, alice_wander=5.0, seed=31)
    t = np.arange(20_001) * WANDER_STEP_PS
    da = np.diff(world.node("alice").clock.wander(t))
    db = np.diff(world.node("bob").clock.wander(t))
    r = float(np.corrcoef(da, db)[0, 1])
    assert abs(r) < stats.norm.ppf((1 + CONF) / 2) / math.sqrt(da.size), r


# -- the tagger sees it ----------------------------------------------------------------------


def test_tags_follow_the_wandering_clock_in_any_chunks() -> None:
    """Bob's tags of Alice's syncs are his wandering clock's readings of their arrivals
    (input delay included), the same read as 1 x 1 s or 20 x 50 ms."""
    world = _sync_world(300.0)
    one = _read_sync(world, 1.0, 1.0)
    chunked = _read_sync(_sync_world(300.0), 0.05, 1.0)
    assert one.size == 1000
    assert np.array_equal(one, chunked)
    expected = _expected_sync(world, one.size)
    # Exact but for the float rounding of a reading that falls on a bin edge.
    assert np.max(np.abs(one - expected)) <= 1
    # The wander is visible: far more than a bin from the clock without it.
    linear = _expected_sync(_sync_world(None), one.size)
    assert np.max(np.abs(one - linear)) > 1000


def test_pairs_keep_their_delta_on_a_wandering_clock() -> None:
    """Photon pairs (CW SPDC at alice, idler over 10 km to bob, 40 ps jitter each): bob's tag
    minus alice's is bob's wandering clock at the idler's arrival minus alice's reading of the
    signal's, within sigma_rel / sqrt(N) (two-sided, 99.9 %); the linear clock misses them."""
    sigma = 40.0
    table = spdc_profile(
        length_km=10.0,
        bob_offset_s=1.234567e-3,
        bob_drift_ppm=0.7,
        jitter_ps=(sigma, sigma),
        pairs_per_s=5e5,
    )
    table["nodes"]["bob"]["clock_wander_ppb_per_sqrt_s"] = 300.0
    world = make_world(table, seed=9)
    world.advance_to(20.0)
    ra = world.tagger("alice.tagger").open_reader()
    rb = world.tagger("bob.tagger").open_reader()
    a, b = ra.read(0.5).timestamps_ps, rb.read(0.5).timestamps_ps
    bob = world.node("bob").clock
    d_a = world.truth.path_delay_s("alice.spdc", "alice.da") * PS
    d_b = world.truth.path_delay_s("alice.spdc", "bob.db") * PS
    emitted = a.astype(float) - d_a  # alice's clock is true time
    centre = bob.node_of_true_f(emitted + d_b) - a
    for t in (20.1, 20.4):
        want = world.truth.expected_delta_ps("alice.spdc", "alice.da", "bob.db", t)
        assert float(bob.node_of_true_f(np.array(t * PS + d_b))) - (t * PS + d_a) == (
            pytest.approx(want, abs=1e-2)
        )
    d = coincidence_deltas(a, b, centre, 1000.0)
    assert d.size > 2000
    z = stats.norm.ppf((1 + CONF) / 2)
    assert abs(d.mean()) < z * math.sqrt(2) * sigma / math.sqrt(d.size), (d.mean(), d.size)
    linear = float(bob._offset_ps) + (emitted + d_b) * bob.rate - a
    assert coincidence_deltas(a, b, linear, 1000.0).size < 50


# Pulse grids (sample_wcs.pulse_range and its users: transmitters, pulsed pumps, syncs) and
# detector gates follow the wander within a batch (NodeClock.grid_correction_ps); both
# tests below failed before that (113 ns and 290 ns off).


def test_pulses_of_a_wandering_transmitter_leave_at_its_clock_times() -> None:
    """Alice's clock wanders, Bob's does not: Bob's tags of her syncs are his readings of the
    true times at which her clock reads t0 + k P (plus the input delay)."""
    table = bb84_profile(mu=0.0, bob_offset_s=2.5e-3, bob_drift_ppm=-3.0)
    table["nodes"]["alice"]["clock_wander_ppb_per_sqrt_s"] = 500.0
    table["nodes"]["alice"]["components"]["tx"]["sync_outputs"] = [
        {"tagger": "bob.tagger", "channel": 5, "every_n_pulses": SYNC_EVERY}
    ]
    tagger = table["nodes"]["bob"]["components"]["tagger"]
    tagger["n_channels"] = 5
    tagger["input_delays_ps"] = {5: INPUT_DELAY_PS}
    world = make_world(table, seed=6)
    world.advance_to(30.0)  # W has grown: the nominal rate is then far off within a batch
    got = _read_sync(world, 0.1, 0.3)
    alice, bob = world.node("alice").clock, world.node("bob").clock
    period = Fraction(PS) / Fraction(80e6) * SYNC_EVERY
    k0 = math.ceil(alice.node_of_true(30 * PS) / period)
    true = [alice.true_of_node((k0 + i) * period) for i in range(got.size)]
    want = np.array([math.floor(bob.node_of_true(t + Fraction(INPUT_DELAY_PS))) for t in true])
    assert got.size == 300
    assert np.max(np.abs(got - want)) <= 1


def test_gates_open_on_the_wandering_clock() -> None:
    """A gated detector's gates are periods of its own (wandering) clock: every dark count,
    tagged on that clock without delay or jitter, lies inside a gate."""
    table = bb84_profile(mu=0.0, dark_hz=2e6, jitter_ps=0.0)
    table["nodes"]["bob"]["clock_wander_ppb_per_sqrt_s"] = 500.0
    for d in "hvda":
        table["nodes"]["bob"]["components"][d].update(
            gate_enabled=True, gate_frequency_hz=1e6, gate_width_ns=1.0, gate_delay_ns=100.0
        )
    world = make_world(table, seed=8)
    world.advance_to(30.0)
    reader = world.tagger("bob.tagger").open_reader()
    ts = np.concatenate([reader.read(0.1).timestamps_ps for _ in range(3)])
    phase = np.mod(ts - 100_000, 1_000_000)
    assert ts.size > 1000
    assert np.all(phase <= 1_000), np.max(phase)


def test_no_wander_is_the_linear_clock_exactly() -> None:
    """wander = 0 (given or left out) reads offset + (1 + drift) t, floored, to the picosecond."""
    given = _read_sync(_sync_world(0.0), 0.1, 0.5)
    absent = _read_sync(_sync_world(None), 0.5, 0.5)
    assert np.array_equal(given, absent)
    clock = NodeClock("bob", 2.5e-3, -3.0)
    period = Fraction(PS) / Fraction(80e6) * SYNC_EVERY
    exact = [
        math.floor(clock._offset_ps + clock._scale * (k * period + Fraction(INPUT_DELAY_PS)))
        for k in range(given.size)
    ]
    assert np.array_equal(given, np.array(exact))
    assert clock.rate_at(10**15) == clock.rate
    assert not np.any(clock.phase_ps(np.arange(5.0) * PS))


# -- configuration ---------------------------------------------------------------------------


def _table_with(value: Any) -> dict[str, Any]:
    table = copy.deepcopy(bb84_profile())
    table["nodes"]["bob"]["clock_wander_ppb_per_sqrt_s"] = value
    return table


@pytest.mark.parametrize("value", [-1.0, 1e4, math.inf, math.nan, "fast"])
def test_bad_wander_names_the_field_and_file(value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        load_world_config(_table_with(value), "hw_profiles/x.toml")
    msg = str(err.value)
    assert "hw_profiles/x.toml" in msg
    assert "nodes.bob.clock_wander_ppb_per_sqrt_s" in msg
    assert "\n" not in msg


def test_wander_setting_is_checked() -> None:
    clock = NodeClock("bob", 0.0, 0.0)
    with pytest.raises(ValueError, match="bob clock wander"):
        clock.wander_ppb_per_sqrt_s = -0.5
