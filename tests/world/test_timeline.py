"""The simulated timeline: seeds, reset, fast and realtime modes, settings hooks."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from helpers import bb84_profile, binomial_interval, make_world

from qhil.emulators.world import UnknownComponentError, WorldSettingError, WorldTimeError


def profile() -> dict:
    return bb84_profile(
        mu=0.5, length_km=10.0, eta=0.2, dark_hz=1e3, dead_time_ns=30.0, afterpulse=0.02, drift=0.1
    )


def read(world: object, duration: float = 0.005) -> np.ndarray:
    block = world.tagger("bob.tagger").read(duration)  # type: ignore[attr-defined]
    return np.stack([block.timestamps_ps, block.channels])


def test_same_seed_same_output_other_seed_other_output() -> None:
    a, b, c = (
        make_world(profile(), seed=1),
        make_world(profile(), seed=1),
        make_world(profile(), seed=2),
    )
    ra, rb, rc = read(a), read(b), read(c)
    np.testing.assert_array_equal(ra, rb)
    assert ra.shape != rc.shape or not np.array_equal(ra, rc)


def test_adding_a_component_does_not_change_the_others() -> None:
    table = profile()
    more = profile()
    more["nodes"]["alice"]["components"]["laser"] = {"type": "cw_laser"}
    more["nodes"]["bob"]["components"]["spare"] = {"type": "detector", "dark_count_rate_hz": 1e4}
    np.testing.assert_array_equal(read(make_world(table)), read(make_world(more)))


def test_reset_restores_power_on_state() -> None:
    fresh = read(make_world(profile()))
    world = make_world(profile())
    world.attenuator("alice.att").attenuation_db = 3.0
    world.polarization_controller("bob.pc").set_voltages([100.0, 200.0, 300.0, 400.0])
    read(world, 0.01)
    world.reset()
    assert world.now_s == 0.0
    assert world.attenuator("alice.att").attenuation_db == 0.0
    np.testing.assert_array_equal(read(world), fresh)


def test_fast_mode_time_moves_only_when_asked() -> None:
    world = make_world(profile())
    assert world.now_s == 0.0
    read(world, 0.01)
    assert world.now_s == pytest.approx(0.01)
    world.advance_to(5.0)
    assert world.now_s == 5.0
    asyncio.run(world.clock.elapse(1.5))
    assert world.now_s == pytest.approx(6.5)


class FakeWall:
    """A wall clock that only moves when the world sleeps on it."""

    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_realtime_mode_waits_for_the_wall_and_keeps_the_physics() -> None:
    wall = FakeWall()
    world = make_world(profile(), mode="realtime", time_fn=wall.time, sleep_fn=wall.sleep)
    tagger = world.tagger("bob.tagger")
    with pytest.raises(WorldTimeError, match="realtime"):
        tagger.read(0.005)
    block = asyncio.run(tagger.read_async(0.005))
    assert sum(wall.slept) == pytest.approx(0.005, abs=1e-12)
    fast = read(make_world(profile()))
    np.testing.assert_array_equal(np.stack([block.timestamps_ps, block.channels]), fast)
    asyncio.run(world.clock.elapse(0.5))
    assert sum(wall.slept) == pytest.approx(0.505, abs=1e-12)
    wall.t += 2.0  # the wall moves on by itself
    assert world.now_s == pytest.approx(2.505, abs=1e-9)
    with pytest.raises(WorldTimeError):
        world.advance_to(10.0)


def test_pattern_upload_sets_what_alice_sends() -> None:
    world = make_world(bb84_profile(mu=0.5, length_km=0.0, eta=0.2))
    tx = world.transmitter("alice.tx")
    tx.set_pattern(np.array([1], np.uint8))  # bit 1, basis Z: V
    block = world.tagger("bob.tagger").read(0.002)
    counts = block.counts([1, 2, 3, 4])
    assert counts[0] == 0 and counts[1] > 0  # no H clicks at all (ideal PBS, no darks)
    n = round(0.002 * 80e6)
    # D and A each get a quarter of the light.
    lo, hi = binomial_interval(n, 1 - math.exp(-0.5 * 0.2 / 4))
    assert lo - 1 <= counts[2] <= hi + 1 and lo - 1 <= counts[3] <= hi + 1
    with pytest.raises(WorldSettingError, match="pattern"):
        tx.set_pattern(np.array([0, 4], np.uint8))  # intensity index 1 does not exist


def test_power_and_enable_change_the_mean_photon_number() -> None:
    world = make_world(bb84_profile(mu=0.5, length_km=0.0, eta=0.2))
    tx = world.transmitter("alice.tx")
    tx.power_mw = 2.0
    assert world.truth.mean_photon_numbers("alice.tx")[0] == pytest.approx(1.0)
    tx.enabled = False
    assert world.truth.mean_photon_numbers("alice.tx")[0] == 0.0
    assert world.tagger("bob.tagger").read(0.002).timestamps_ps.size == 0


def test_lookups_name_what_exists() -> None:
    world = make_world(profile())
    with pytest.raises(UnknownComponentError, match="no component 'bob.nope'.*bob.h"):
        world.component("bob.nope")
    with pytest.raises(UnknownComponentError, match="is a Detector, not a time_tagger"):
        world.tagger("bob.h")
    with pytest.raises(UnknownComponentError, match="no link"):
        world.link("ba")


def test_quantum_memory_component() -> None:
    table = profile()
    table["nodes"]["bob"]["components"]["qm"] = {
        "type": "quantum_memory",
        "n_modes": 4,
        "t1_s": 1e-3,
        "t2_s": 5e-4,
        "read_efficiency": 0.6,
    }
    world = make_world(table)
    mem = world.memory("bob.qm")
    assert mem.n_modes == 4 and mem.params.t2_s == 5e-4
    assert mem.params.read_efficiency == 0.6
