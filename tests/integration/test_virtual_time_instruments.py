"""Virtual emulated time through the instruments (issue 12, issue 9's "same interval").

On the default emulated bench (fast mode), driven over the wire protocols:
* the Eos count stream follows the world: the world's clock after an acquisition is
  what the acquisition implies, however long the stream has been connected, and its
  records are the world's periods [k P, (k + 1) P);
* two TDC1 streams started together by two clients cover the same emulated interval:
  the SPDC pairs are found where the world's truth puts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from qhil.drivers.sfifteen.tdc1 import TDC1
from qhil.drivers.singlequantum.eos import Eos, parse_count_line
from qhil.emulators.bench import EmulatedBench
from qhil.emulators.singlequantum.eos import DEFAULT_EPOCH_MS, EosEmulator
from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_config
from qhil.orchestrator.profile import load_profile

BOB_DETS = ["bob.det_h", "bob.det_v", "bob.det_d", "bob.det_a"]


@pytest.fixture
def bench() -> Iterator[EmulatedBench]:
    with EmulatedBench(load_profile()) as b:
        yield b


def _host_port(resource: str) -> tuple[str, int]:
    parts = resource.split("::")
    return parts[1], int(parts[2])


async def _records(resource: str, n: int) -> list[str]:
    reader, writer = await asyncio.open_connection(*_host_port(resource))
    try:
        return [(await asyncio.wait_for(reader.readline(), 20)).decode().strip() for _ in range(n)]
    finally:
        writer.close()


async def test_eos_stream_follows_the_acquisitions(bench: EmulatedBench) -> None:
    res = bench.addresses()
    counts_port = bench.extra_addresses()[("bob", "snspd")]["counts"]
    world = bench.world
    async with Eos.open(res[("bob", "snspd")], counts_resource=counts_port) as eos:
        await eos.set_bias(20.0)
        await eos.set_enabled(True)
        reading = asyncio.create_task(_records(counts_port, 2))
        # The stream is connected (twice) while these commands go by: in fast mode it
        # neither moves the world nor produces a record of its own.
        await eos.bias_voltages()
        assert not reading.done()
        assert world.clock.now_s == 0.0
        async with TDC1.open(res[("bob", "tagger")]) as tdc:
            block = await tdc.acquire(0.3)
        assert block.meta["duration_s"] == 0.3 and len(block) > 50  # dark counts, background
        lines = await reading
    records = [parse_count_line(line) for line in lines]
    # Records of the world's periods [0, 0.1) and [0.1, 0.2), time-stamped at their ends,
    # with the clicks the acquisition generated (no light: dark counts and background).
    assert [r.timestamp_ms for r in records] == [DEFAULT_EPOCH_MS + 100, DEFAULT_EPOCH_MS + 200]
    assert all(sum(r.counts) > 10 for r in records)
    # The world's clock is where the acquisition left it, not where the wall clock would.
    assert world.clock.now_s == pytest.approx(0.3, abs=1e-12)


def _coincidences(world: World, alice_ps: np.ndarray, bob_ps: np.ndarray) -> int:
    """Bob tags within 5 ns of where the truth puts the partner of an alice tag, both in
    ps from their stream's start (a common start removes each clock's offset)."""
    truth = world.truth
    offset_ps = (truth.clock_offset_s("bob") - truth.clock_offset_s("alice")) * 1e12
    bob_sorted = np.sort(bob_ps)
    found = np.zeros(alice_ps.size, bool)
    for det in BOB_DETS:
        ends = [truth.expected_delta_ps("alice.pairs", "alice.det_herald", det, t) for t in (0, 1)]
        expect = alice_ps + ends[0] + (ends[1] - ends[0]) * alice_ps * 1e-12 - offset_ps
        lo = np.searchsorted(bob_sorted, expect - 5000)
        hi = np.searchsorted(bob_sorted, expect + 5000)
        found |= hi > lo
    return int(np.count_nonzero(found))


async def test_two_tdc1_clients_started_together_cover_the_same_interval(
    bench: EmulatedBench,
) -> None:
    res = bench.addresses()
    counts_port = bench.extra_addresses()[("bob", "snspd")]["counts"]
    world = bench.world
    # Pairs only (no clients are connected yet): alice's transmitter off, her source on
    # at phase matching (its driver board powers on with the pump off, the crystal cold).
    world.transmitter("alice.transmitter").enabled = False
    pairs = world.spdc("alice.pairs")
    pairs.enabled, pairs.heater_temp_c, pairs.pump_current_ma = True, 35.0, 25.0
    assert world.truth.pair_rate_hz("alice.pairs") > 5e4
    async with Eos.open(res[("bob", "snspd")], counts_resource=counts_port) as eos:
        await eos.set_bias(20.0)
        await eos.set_enabled(True)
    async with (
        TDC1.open(res[("alice", "tagger")]) as alice,
        TDC1.open(res[("bob", "tagger")]) as bob,
    ):
        a, b = await asyncio.gather(alice.acquire(1.0), bob.acquire(1.0))
    alice_ps = a.timestamps_ps[a.channels == 1].astype(float)
    n = _coincidences(world, alice_ps, b.timestamps_ps.astype(float))
    # ~1e4 heralds/s and ~4 % of their partners detected at bob over 1 s: ~400 pairs,
    # against ~1e4 x 5e3/s x 10 ns ~ 0.5 accidental. Streams offset by a 50 ms chunk: ~0.
    assert n > 100, n


def _pairs_world(seed: int = 7) -> World:
    """The default bench with alice's SPDC source on and her transmitter off: heralds on
    alice's tagger (channel 1), partners over 10 km on bob's four detectors."""
    prof = load_profile()
    world = World(load_world_config(prof.world, prof.source), seed=seed, mode="fast")
    world.transmitter("alice.transmitter").enabled = False
    world.spdc("alice.pairs").pump_current_ma = 25.0  # 5 mW: 1e5 pairs/s
    for name in BOB_DETS:
        world.detector(name).bias = 20.0
    return world


def test_streams_started_together_cover_the_same_interval() -> None:
    """Issue 9: alice's tagger streams 3 chunks of 50 ms before bob's stream is opened
    (as when two clients start together and one is served first); bob's stream joins it
    and the pairs are found where the truth puts them."""
    world = _pairs_world()
    a = world.tagger("alice.tagger").open_reader(join=True)
    alice = [a.read(0.05) for _ in range(3)]
    b = world.tagger("bob.tagger").open_reader(join=True)
    assert b.start_ps == a.start_ps == 0
    bob = [b.read(0.05) for _ in range(3)]
    assert [blk.t_start_ps for blk in alice] == [
        round(world.node("alice").clock.node_of_true(k * 50 * 10**9)) for k in range(3)
    ]
    alice_ps = np.concatenate([blk.timestamps_ps for blk in alice]) - alice[0].t_start_ps
    bob_ps = np.concatenate([blk.timestamps_ps for blk in bob]) - bob[0].t_start_ps
    n = _coincidences(world, alice_ps.astype(float), bob_ps.astype(float))
    # ~1450 heralds in 0.15 s, ~50 of them with their partner detected at bob, against
    # < 0.1 accidental in 6 ns windows; without the join (bob starting 150 ms later): ~1.
    assert n >= 20, n
    # The joined stream is complete: its tags are those of a stream open from the start.
    ref = _pairs_world()
    ra = ref.tagger("alice.tagger").open_reader(join=True)
    rb = ref.tagger("bob.tagger").open_reader(join=True)
    ref_bob = []
    for _ in range(3):
        ra.read(0.05)
        ref_bob.append(rb.read(0.05))
    got = np.concatenate([blk.timestamps_ps for blk in bob])
    want = np.concatenate([blk.timestamps_ps for blk in ref_bob])
    assert got.size == pytest.approx(want.size, rel=0.1)
    assert got[0] - bob[0].t_start_ps < 1e9 and want[0] - ref_bob[0].t_start_ps < 1e9


def test_a_join_needs_a_running_stream() -> None:
    """Once the streams have ended, a new one starts at the present (no old tags)."""
    world = _pairs_world()
    a = world.tagger("alice.tagger").open_reader(join=True)
    a.read(0.05)
    a.close()
    b = world.tagger("bob.tagger").open_reader(join=True)  # nothing streams: the present
    assert b.start_ps >= 50 * 10**9
    b.read(0.05)
    c = world.tagger("alice.tagger").open_reader(join=True)  # b streams: c joins it
    assert c.start_ps == b.start_ps
    first = c.read(0.05)
    assert first.t_start_ps == round(world.node("alice").clock.node_of_true(b.start_ps))
    assert len(first) > 100


async def test_eos_records_do_not_depend_on_when_they_are_taken() -> None:
    """The follower's records are the world's periods: taking them after every
    acquisition or once at the end gives the same lines, and taking them moves nothing."""
    runs = []
    for poll_each in (True, False):
        prof = load_profile()
        world = World(load_world_config(prof.world, prof.source), seed=3, mode="fast")
        emu = EosEmulator(name="eos", world=world, detectors=BOB_DETS)
        await emu.respond(
            b'{"command": "DetectorEnable", "label": "DetectorEnable", "value": true}'
        )
        await emu.respond(
            b'{"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [20, 20, 20, 20]}'
        )
        assert emu.follows_world()
        lines = emu.followed_records()
        reader = world.tagger("bob.tagger").open_reader()
        for _ in range(5):
            reader.read(0.1)
            if poll_each:
                lines += emu.followed_records()
        lines += emu.followed_records()
        assert world.clock.now_s == pytest.approx(0.5, abs=1e-12)
        runs.append(lines)
    assert runs[0] == runs[1]
    stamps = [parse_count_line(line).timestamp_ms - DEFAULT_EPOCH_MS for line in runs[0]]
    assert stamps[:4] == [100, 200, 300, 400] and len(stamps) in (4, 5)


@pytest.mark.parametrize("mode", ["fast", "realtime"])
def test_only_taggers_without_a_stream_keep_tags_and_only_in_fast_mode(mode: str) -> None:
    prof = load_profile()
    wall = [0.0]
    world = World(
        load_world_config(prof.world, prof.source), seed=1, mode=mode, time_fn=lambda: wall[0]
    )
    alice, bob = world.tagger("alice.tagger").pipeline, world.tagger("bob.tagger").pipeline
    a = world.tagger("alice.tagger").open_reader(join=True)
    assert (alice.retain, bob.retain) == (False, mode == "fast")
    b = world.tagger("bob.tagger").open_reader(join=True)
    assert not alice.retain and not bob.retain  # both stream: nobody can join either
    a.close()
    assert alice.retain == (mode == "fast") and not bob.retain
    b.close()
    assert not alice.retain and not bob.retain and not alice.history


async def test_eos_stream_follows_the_wall_clock_in_realtime_mode() -> None:
    """Realtime mode: each record waits for its period on the (here simulated) wall clock."""
    prof = load_profile()
    wall = [0.0]

    async def sleep(seconds: float) -> None:
        wall[0] += seconds

    world = World(
        load_world_config(prof.world, prof.source),
        seed=1,
        mode="realtime",
        time_fn=lambda: wall[0],
        sleep_fn=sleep,
    )
    emu = EosEmulator(name="eos", world=world, detectors=BOB_DETS)
    assert not emu.follows_world()
    lines = [await emu.next_record() for _ in range(3)]
    stamps = [parse_count_line(line).timestamp_ms - DEFAULT_EPOCH_MS for line in lines]
    assert stamps == [100, 200, 300]
    assert wall[0] == pytest.approx(0.3) and world.clock.now_s == pytest.approx(0.3)


async def test_eos_bias_search_and_iv_scan_close_their_readers() -> None:
    """Commanded measurements take their emulated time and then let go of the world: a
    reader left open would keep it warm and buffer every later click (world._readers is
    the world's own record of open readers)."""
    prof = load_profile()
    world = World(load_world_config(prof.world, prof.source), seed=2, mode="fast")
    emu = EosEmulator(name="eos", world=world, detectors=BOB_DETS)
    reply = await emu.respond(b'{"command": "AutoCaliBiasCurrents", "value": true}')
    assert b"BiasCurrentAutoIV" in reply
    assert world.clock.now_s == pytest.approx(14 * 0.1)  # 14 bisection steps of 0.1 s
    assert not world._readers
    await emu.respond(b'{"label": "IVScanEnd", "value": 2}')
    reply = await emu.respond(b'{"command": "IVScanEnable", "value": true}')
    assert b"IVScanEnable" in reply and len(emu.ic_history) == 5
    assert world.clock.now_s == pytest.approx(1.4 + 5 * 0.1)  # 5 steps of one period
    assert not world._readers
