"""S-Fifteen TDC1 timestamp unit: byte-exact protocol (text and binary), faults, physics.

Bytes from docs/protocols/s-fifteen-tdc1.md (S15lib ``TimestampTDC1``, older vendor
sample code): commands end CR LF, chains with ``;``, setters silent; ``time?`` is
printed as a signed 16-bit number; the timestamp stream is 32-bit little-endian
words, time in 2 ns ticks in bits 31..5, dummy flag bit 4, channel pattern bits 3..0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import poisson

from qhil.drivers.roles import TagBlock, TimeTagger
from qhil.drivers.sfifteen.tdc1 import (
    TDC1,
    TimestampDecoder,
    TimestampStreamBusy,
    TimestampStreamCorrupt,
    TimestampStreamStalled,
    encode_words,
    serial_port_of,
)
from qhil.emulators.server import EmulatorHost
from qhil.emulators.sfifteen.tdc1 import IDENTITY, TDC1Emulator, stream_words
from qhil.emulators.sfifteen.timebase import clock_offset_ps, stream_offset_ps, stream_origin
from qhil.emulators.world import World, load_world_file
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator
from qhil.transport.rawio import LinkDown
from qhil.transport.replay import ReplayIO

IDN = IDENTITY.encode() + b"\r\n"
# Dummy (idle) words at 100, 200 and 300 ms of stream time: 50e6 << 5 | 0x10, ...
HEARTBEATS_250MS = b"\x10\x10\x5e\x5f" + b"\x10\x20\xbc\xbe"
HEARTBEATS_350MS = HEARTBEATS_250MS + b"\x10\x30\x1a\x1e"
# The dummy word closing a timed gate, in its last tick: (125e6 - 1) << 5 | 0x10, ...
CLOSE_250MS = b"\xf0'k\xee"
CLOSE_350MS = b"\xf07\xc9M"

CASES = [
    ProtocolCase("identity", lambda d: d.identity(), [(b"*IDN?\r\n", IDN)], IDENTITY),
    ProtocolCase("mode?", lambda d: d.mode.get(), [(b"mode?\r\n", b"0\r\n")], "singles"),
    ProtocolCase("mode pairs", lambda d: d.mode.set("pairs"), [(b"pairs\r\n", b"")]),
    ProtocolCase("gate?", lambda d: d.gate_ms.get(), [(b"time?\r\n", b"1000\r\n")], 1000),
    ProtocolCase("gate? past 32767 ms", lambda d: d.gate_ms.get(),
                 [(b"time?\r\n", b"-25536\r\n")], 40000),
    ProtocolCase("set gate", lambda d: d.gate_ms.set(40000), [(b"time 40000\r\n", b"")]),
    ProtocolCase("NIM levels", lambda d: d.nim_levels(), [(b"NIM\r\n", b"")]),
    ProtocolCase("TTL levels", lambda d: d.ttl_levels(), [(b"TTL\r\n", b"")]),
    ProtocolCase("negative threshold", lambda d: d.set_threshold_v(-0.5), [(b"NEG -0.5\r\n", b"")]),
    ProtocolCase("positive threshold", lambda d: d.set_threshold_v(1.2), [(b"POS 1.2\r\n", b"")]),
    ProtocolCase("threshold?", lambda d: d.threshold_v(), [(b"level?\r\n", b"-0.500 NIM\r\n")],
                 -0.5),
    ProtocolCase("force internal clock", lambda d: d.reference_clock.set("internal"),
                 [(b"REFCLK 2\r\n", b"")]),
    ProtocolCase("clock?", lambda d: d.reference_clock.get(), [(b"REFCLK?\r\n", b"0 internal\r\n")],
                 "0 internal"),
    ProtocolCase("external clock?", lambda d: d.external_clock.get(), [(b"ECLOCK?\r\n", b"0\r\n")],
                 "0"),
    ProtocolCase("abort", lambda d: d.abort(), [(b"abort\r\n", b"")]),
    ProtocolCase("singles 1 s", lambda d: d.singles(1.0),
                 [(b"time 1000\r\n", b""), (b"singles;counts?\r\n", b"0 0 0 0\r\n")], [0, 0, 0, 0]),
    ProtocolCase("pairs 0.5 s", lambda d: d.pairs(0.5),
                 [(b"time 500\r\n", b""), (b"pairs;counts?\r\n", b"0 0 0 0 0 0 0 0\r\n")],
                 ([0, 0, 0, 0], [0, 0, 0, 0])),
]  # fmt: skip

#: Exchanges that bring the emulator into a case's starting state.
SETUP = {"gate? past 32767 ms": [(b"time 40000\r\n", b"")]}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(TDC1, case.exchanges) as drv:
        result = await case.call(drv)
    if case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    emu = TDC1Emulator()  # no world wired in: dark inputs
    await run_on_emulator(emu, SETUP.get(case.id, []))
    await run_on_emulator(emu, case.exchanges)


async def test_idle_timestamp_stream_is_dummy_words_both_ways() -> None:
    exchanges = [
        (b"INPKT;time 250;timestamp;counts?\r\n", HEARTBEATS_250MS + CLOSE_250MS),
        (b"abort\r\n", b""),
    ]
    async with expected_protocol(TDC1, exchanges) as drv:
        block = await drv.acquire(0.25)
    assert len(block) == 0 and block.meta["duration_s"] == 0.25
    await run_on_emulator(TDC1Emulator(), exchanges)


async def test_timestamp_words_decode_with_coincident_bits_and_rollover() -> None:
    events = (
        b"\xa1\x00\x00\x00"  # tick 5 (10 ns), channel 1
        + b"\x0c\x7d\x00\x00"  # tick 1000 (2 us), channels 3 and 4 together
        + HEARTBEATS_250MS[:8]  # 100 ms, 200 ms
        + b"\xe2\x00\x00\x00"  # tick 2**27 + 7 (after the 268.4 ms rollover), channel 2
        + HEARTBEATS_350MS[8:]  # 300 ms
        + CLOSE_350MS
    )
    exchanges = [(b"INPKT;time 350;timestamp;counts?\r\n", events), (b"abort\r\n", b"")]
    async with expected_protocol(TDC1, exchanges) as drv:
        block = await drv.acquire(0.35)
    assert block.timestamps_ps.tolist() == [10_000, 2_000_000, 2_000_000, (2**27 + 7) * 2000]
    assert block.channels.tolist() == [1, 3, 4, 2]
    assert block.timestamps_ps.dtype == np.int64


def test_word_layout_matches_the_documented_bits() -> None:
    assert encode_words([5, 1000, 2**27 + 7], [1, 0xC, 2]) == (
        b"\xa1\x00\x00\x00\x0c\x7d\x00\x00\xe2\x00\x00\x00"
    )
    # Same-tick events on two channels become one word with two pattern bits.
    words = stream_words(np.array([4001, 4999, 9000]), np.array([1, 4, 2]), 0, 20_000)
    assert words == encode_words([2, 4], [0b1001, 0b0010])
    dec = TimestampDecoder()
    for i in range(0, len(HEARTBEATS_350MS), 3):  # split mid-word: chunks join
        dec.feed(HEARTBEATS_350MS[i : i + 3])
    ticks, flags = dec.words()
    assert ticks.tolist() == [50_000_000, 100_000_000, 150_000_000]
    assert flags.tolist() == [0x10] * 3


async def test_software_input_delay_shifts_that_channel() -> None:
    events = (
        b"\xa1\x00\x00\x00" + b"\x04\x01\x00\x00" + HEARTBEATS_250MS + CLOSE_250MS
    )  # ch1 @5, ch3 @8
    exchanges = [(b"INPKT;time 250;timestamp;counts?\r\n", events), (b"abort\r\n", b"")]
    async with expected_protocol(TDC1, exchanges) as drv:
        await drv.set_input_delay_ps(1, 7_000)
        block = await drv.acquire(0.25)
    assert block.timestamps_ps.tolist() == [16_000, 17_000]
    assert block.channels.tolist() == [3, 1]


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.singles(0.0),
        lambda d: d.singles(70.0),
        lambda d: d.pairs(-1),
        lambda d: d.acquire(0.0004),
        lambda d: d.gate_ms.set(70000),
        lambda d: d.set_threshold_v(5.0),
        lambda d: d.set_input_delay_ps(5, 100),
        lambda d: d.reference_clock.set("gps"),
    ],
    ids=["zero gate", "gate too long", "negative", "sub-ms", "gate", "threshold", "ch5", "clock"],
)
async def test_out_of_range_is_refused_before_any_byte(call: Callable[[TDC1], Any]) -> None:
    async with expected_protocol(TDC1, []) as drv:
        with pytest.raises(ValidationError):
            await call(drv)


async def test_emulator_accepts_legacy_spellings_and_ignores_unknown_commands() -> None:
    emu = TDC1Emulator()
    await run_on_emulator(emu, [(b"*RST;INPKT;TTL;TIME400;SINGLES;MODE?", b"0\r\n"),
                                (b"TIME?\n", b"400\r\n"), (b"BOGUS\r\n", b""),
                                (b"LEVEL?", b"1.600 TTL\r\n")])  # fmt: skip


def test_serial_visa_resources_are_read_through_pyserial() -> None:
    assert serial_port_of("ASRL/dev/ttyACM0::INSTR") == "/dev/ttyACM0"
    assert serial_port_of("asrl/tmp/x/tdc1::instr") == "/tmp/x/tdc1"
    assert serial_port_of("/dev/ttyACM1") == "/dev/ttyACM1"
    assert serial_port_of("TCPIP0::127.0.0.1::5000::SOCKET") == "TCPIP0::127.0.0.1::5000::SOCKET"


def test_driver_is_a_time_tagger() -> None:
    assert isinstance(TDC1.open("REPLAY", io=object()), TimeTagger)  # type: ignore[arg-type]


async def test_faults_reach_the_driver_as_typed_errors(emulator_host: EmulatorHost) -> None:
    emu = TDC1Emulator(name="tdc1")
    ep = emulator_host.add(emu)
    drv = TDC1.open(ep.address, timeout_s=0.3)
    try:
        assert await drv.mode.get() == "singles"
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await drv.mode.get()
        assert await drv.mode.get() == "singles"
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tmo:
            await drv.gate_ms.get()
        assert (tmo.value.resource, tmo.value.command, tmo.value.termination) == (
            ep.address,
            "time?",
            "\n",
        )
        # The TDC1 reports no errors of its own (setters are silent, unknown commands
        # ignored); an error line in place of a query's reply is taken as one.
        emu.faults.error_next = ("Error", "FIFO overflow")
        with pytest.raises(InstrumentError) as err:
            await drv.mode.get()
        assert (err.value.code, err.value.text, err.value.command) == (
            "Error",
            "FIFO overflow",
            "mode?",
        )
        assert await drv.singles(0.01) == [0, 0, 0, 0]
    finally:
        await drv.close()


# --- tags from the world, through the driver ---


def pair_world_toml(
    a: str, b: str, *, channel_b: int, delay_ns: float, pairs_per_s_per_mw: float = 1000.0
) -> str:
    """An SPDC source on ``a``'s node (``node.component``), one photon of each pair to
    detector ``a``, the other to detector ``b``; each detector on its node's tagger."""
    source_node = a.split(".")[0]
    text = f"""
[world.nodes.{source_node}.components.source]
type = "spdc_source"
pump_current_ma = 40.0
threshold_current_ma = 20.0
slope_mw_per_ma = 1.0
pairs_per_s_per_mw = {pairs_per_s_per_mw}
heralding_efficiency_signal = 0.5
heralding_efficiency_idler = 0.5
signal_path = ["{a}"]
idler_path = [{'"ab", ' if b.split(".")[0] != source_node else ""}"{b}"]
"""
    for det, channel, delay in ((a, 1, 0.0), (b, channel_b, delay_ns)):
        node, name = det.split(".")
        text += f"""[world.nodes.{node}.components.{name}]
type = "detector"
efficiency = 0.5
dark_count_rate_hz = 100.0
dead_time_ns = 0.0
jitter_ps = 50.0
delay_ns = {delay}
tagger = "{node}.tagger"
channel = {channel}
"""
    for node in sorted({a.split(".")[0], b.split(".")[0]}):
        text += f"""[world.nodes.{node}.components.tagger]
type = "time_tagger"
n_channels = 4
"""
    return text


PAIRS_PER_S = 1000.0 * (40.0 - 20.0)  # pairs/s/mW x slope x (I - threshold)
SINGLES_PER_S = PAIRS_PER_S * 0.5 * 0.5 + 100.0  # heralding x efficiency + dark
COINCIDENCES_PER_S = PAIRS_PER_S * (0.5 * 0.5) ** 2


def make_world(tmp_path: Path, delay_ns: float) -> Any:
    path = tmp_path / "tdc1_world.toml"
    path.write_text(
        "[world]\nseed = 5\n"
        + pair_world_toml("lab.det_a", "lab.det_b", channel_b=3, delay_ns=delay_ns)
    )
    world = World(load_world_file(path), seed=5, mode="fast")
    # First use imports the pair-state model (qutip), which can take longer than a count
    # reply may: warm up here, before the emulator is served.
    warm = world.tagger("lab.tagger").open_reader()
    warm.read(1e-3)
    warm.close()
    return world


def in_interval(n: int, mean: float) -> bool:
    lo, hi = poisson.interval(0.999, mean)
    return bool(lo <= n <= hi)


async def test_singles_and_pairs_counts_follow_the_source(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """Counting modes against the SPDC rates (two-sided 99.9 % Poisson intervals).

    Inputs 1 and 3 see the pair's two arms; 2 and 4 are dark (no detector wired).
    Coincidences 1-3 are the pairs seen by both (accidentals ~ S1 S3 w = 0.1/s).
    """
    world = make_world(tmp_path, delay_ns=0.0)
    ep = emulator_host.add(TDC1Emulator(name="tdc1", world=world, component="lab.tagger"))
    drv = TDC1.open(ep.address)
    try:
        s = await drv.singles(0.5)
        singles, coinc = await drv.pairs(0.5)
    finally:
        await drv.close()
    for counts in (s, singles):
        assert in_interval(counts[0], SINGLES_PER_S * 0.5)
        assert in_interval(counts[2], SINGLES_PER_S * 0.5)
        assert counts[1] == counts[3] == 0
    assert in_interval(coinc[0], COINCIDENCES_PER_S * 0.5)
    assert coinc[1:] == [0, 0, 0]


async def test_timestamps_show_the_pairs_at_the_fibre_delay(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """Binary stream -> TagBlock: rates, the coincidence peak at arm B's 30 ns delay
    (world truth), and timestamps that run through two 268 ms rollovers without a jump."""
    world = make_world(tmp_path, delay_ns=30.0)
    ep = emulator_host.add(TDC1Emulator(name="tdc1", world=world, component="lab.tagger"))
    drv = TDC1.open(ep.resource)  # the VISA address a bench profile gives; read via pyserial
    try:
        block: TagBlock = await drv.acquire(0.6)
    finally:
        await drv.close()
    t, ch = block.timestamps_ps, block.channels
    assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 600_000_000_000
    assert t[-1] > 590_000_000_000  # events right up to the end: no rollover lost
    assert set(np.unique(ch).tolist()) <= {1, 3}
    assert in_interval(int(np.count_nonzero(ch == 1)), SINGLES_PER_S * 0.6)
    assert in_interval(int(np.count_nonzero(ch == 3)), SINGLES_PER_S * 0.6)
    truth = emulator_host.call(_expected_delta(world))
    ta, tb = t[ch == 1], t[ch == 3]
    near = np.searchsorted(ta, tb - truth, side="left").clip(1, ta.size - 1)
    delta = tb - np.where(
        np.abs(tb - truth - ta[near - 1]) < np.abs(tb - truth - ta[near]), ta[near - 1], ta[near]
    )
    peak = np.abs(delta - truth) <= 4000  # 2 ns ticks on both tags, 50 ps jitter
    assert in_interval(int(peak.sum()), COINCIDENCES_PER_S * 0.6)
    assert abs(float(np.median(delta[peak])) - truth) <= 2000


async def _expected_delta(world: Any) -> float:
    return float(world.truth.expected_delta_ps("lab.source", "lab.det_a", "lab.det_b", 0.1))


# --- fidelity: the vendor's own library, unmodified, drives the emulator ---


@pytest.mark.fidelity
def test_s15lib_timestamp_tdc1_runs_the_emulator(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """S15lib's ``TimestampTDC1`` (pip: s15lib==0.3.0): counting, pairs, the signed
    ``time?`` quirk and a binary timestamp run decoded by S15lib's own parser."""
    instruments = pytest.importorskip("S15lib.instruments")
    world = make_world(tmp_path, delay_ns=0.0)
    emu = TDC1Emulator(name="tdc1", world=world, component="lab.tagger")
    ep = emulator_host.add(emu)
    tdc = instruments.TimestampTDC1(ep.address)  # "\r\n", singles, NIM, "time 1000;"
    try:
        assert tdc.mode == "singles" and tdc.int_time == 1000
        tdc.int_time = 40  # "time 40000;", read back as -25536 and fixed up by S15lib
        assert tdc.int_time == 40000
        s1, s2, s3, s4 = tdc.get_counts(0.2)
        assert in_interval(s1, SINGLES_PER_S * 0.2) and in_interval(s3, SINGLES_PER_S * 0.2)
        assert s2 == s4 == 0
        counts = tdc.get_counts_and_coincidences(0.2)
        assert len(counts) == 8 and in_interval(counts[4], COINCIDENCES_PER_S * 0.2)
        assert float(tdc.level.split()[0]) == -0.5
        tdc.threshold = -0.3
        assert float(tdc.level.split()[0]) == -0.3
        tdc.clock = "2"
        assert tdc.clock.split()[0] == b"2"
        t_ns, patterns = tdc.get_timestamps(0.3, legacy=False)
        assert tdc.mode == "timestamp"
        ch1 = t_ns[(patterns & 1) != 0]
        ch3 = t_ns[(patterns & 4) != 0]
        assert in_interval(ch1.size, SINGLES_PER_S * 0.3)
        assert in_interval(ch3.size, SINGLES_PER_S * 0.3)
        assert np.all(np.diff(t_ns) >= 0) and t_ns[0] >= 0 and t_ns[-1] < 300_000_000
        assert t_ns[-1] > 290_000_000  # S15lib unwrapped the 268 ms rollover
    finally:
        tdc._com.close()


DARK_WORLD_TOML = """
[world]
seed = 3
mode = "{mode}"
[world.nodes.lab]
clock_offset_s = {offset_s}
clock_drift_ppm = {drift_ppm}
[world.nodes.lab.components.dark]
type = "detector"
dark_count_rate_hz = {rate}
dead_time_ns = 0.0
tagger = "lab.tagger"
channel = 2
[world.nodes.lab.components.tagger]
type = "time_tagger"
n_channels = 4
"""


def dark_world(
    tmp_path: Path, mode: str, rate: float, drift_ppm: float = 0.0, offset_s: float = 0.0
) -> Any:
    path = tmp_path / "dark.toml"
    text = DARK_WORLD_TOML.format(mode=mode, rate=rate, drift_ppm=drift_ppm, offset_s=offset_s)
    path.write_text(text)
    return World(load_world_file(path), seed=3)


async def test_acquisition_beyond_the_16_bit_gate_streams_until_abort(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """70 s > 65.535 s: ``time 0`` (unlimited), stopped with ``abort``; dark counts only."""
    world = dark_world(tmp_path, "fast", 10.0)
    emu = TDC1Emulator(name="tdc1", world=world, component="lab.tagger")
    ep = emulator_host.add(emu)
    drv = TDC1.open(ep.address)
    try:
        block = await drv.acquire(70.0)
        assert await drv.gate_ms.get() == 0 and await drv.mode.get() == "timestamp"
    finally:
        await drv.close()
    t = block.timestamps_ps
    assert set(block.channels.tolist()) == {2}
    assert in_interval(len(block), 10.0 * 70.0)
    assert t[-1] < 70_000_000_000_000 and t[-1] > 65_000_000_000_000
    assert block.meta["duration_s"] == 70.0


@pytest.mark.parametrize(("mode", "chunks"), [("realtime", 4), ("fast", 1)])
async def test_realtime_stream_is_sent_in_chunks_of_a_few_ms(
    tmp_path: Path, mode: str, chunks: int
) -> None:
    """Realtime: 20 ms of gate in four 5 ms chunks, as a unit's USB transfers arrive (one
    50 ms chunk, as fast mode sends, left the driver's 20 ms end-of-stream silence to chance:
    under load it cut the gate's last 50 ms, test_realtime_world_streams_as_the_gate_passes)."""
    world = dark_world(tmp_path, mode, 1000.0)
    emu = TDC1Emulator(name="tdc1", world=world, component="lab.tagger")
    sent = [chunk async for chunk in emu._stream_chunks(0.02)]
    assert len(sent) == chunks


async def test_realtime_world_streams_as_the_gate_passes(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """Realtime mode: the stream arrives over the gate, not at once; same content rules."""
    world = dark_world(tmp_path, "realtime", 1000.0)
    ep = emulator_host.add(TDC1Emulator(name="tdc1", world=world, component="lab.tagger"))
    drv = TDC1.open(ep.address)
    try:
        block = await drv.acquire(0.3)
        singles = await drv.singles(0.1)
    finally:
        await drv.close()
    assert in_interval(len(block), 1000.0 * 0.3)
    assert block.timestamps_ps[-1] > 290_000_000_000
    assert in_interval(singles[1], 1000.0 * 0.1) and singles[0] == singles[2] == 0


# --- the stream's timebase: monotonic in the unit's own (drifting) clock ---


def unwrapped_words(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(ticks, low five bits) of each word; a drop of more than half the 2**27 period is
    a rollover, a smaller one stays a step back (the driver's decoder would hide it)."""
    words = np.frombuffer(data, "<u4")
    raw = (words >> 5).astype(np.int64)
    wraps = np.cumsum(np.r_[0, np.diff(raw) < -(1 << 26)])
    return raw + (wraps << 27), words & 0x1F


@pytest.mark.parametrize("drift_ppm", [500.0, -500.0, 0.5])
async def test_stream_is_monotonic_in_the_units_own_clock(tmp_path: Path, drift_ppm: float) -> None:
    """On a drifting node clock, over many 50 ms chunks, every word (events and idle dummy
    words) has an unwrapped tick >= the previous word's: the device's stream is ordered in
    its own clock (a dummy word behind an event reads as a 268 ms rollover to S15lib's
    ``read_timestamps_bin``). Before the fix dummy words sat at chunk ticks of stream time
    while events were in node-clock time: up to drift x elapsed behind."""
    # 200 kHz: at +0.5 ppm ~18 events are expected in the lag windows before the 60 dummy
    # words of the old placement (P(none) ~ 1e-8), so the test fails on it.
    world = dark_world(tmp_path, "fast", 200_000.0, drift_ppm, offset_s=1.25e-3)
    emu = TDC1Emulator(name="tdc1", world=world, component="lab.tagger")
    data = b"".join([c async for c in emu._stream_chunks(6.0)])
    ticks, flags = unwrapped_words(data)
    # A dummy word every 100 ms after the start, and the one closing the gate, in its last tick.
    assert np.count_nonzero(flags & 0x10) == 59 + 1
    assert np.all(np.diff(ticks) >= 0)
    assert ticks[-1] == 6.0e12 / 2000 - 1 and flags[-1] == 0x10


# --- one continuous stream in blocks (TimeTagger.stream) ---

#: 400 ms dummy word: 200e6 << 5 | 0x10.
HEARTBEAT_400MS = b"\x10\x00\x78\x7d"


async def test_stream_sends_documented_bytes_and_cuts_one_timebase_into_blocks() -> None:
    """A known duration runs on the unit's own gate (``time 350``) and one ``counts?``: one
    counter reset, then blocks of 100 ms of stream time cut from the words as they come (the
    268 ms rollover unwrapped across blocks). The unit stops at its gate, so the last block
    ends with the word closing the gate (a unit without it: when the line falls silent
    after the last heartbeat). ``abort`` after it is harmless (the unit has stopped)."""
    events = (
        b"\xa1\x00\x00\x00"  # tick 5 (10 ns), channel 1
        + b"\x0c\x7d\x00\x00"  # tick 1000 (2 us), channels 3 and 4 together
        + HEARTBEATS_250MS[:8]  # 100 ms, 200 ms
        + b"\xe2\x00\x00\x00"  # tick 2**27 + 7 (268.4 ms), channel 2
        + HEARTBEATS_350MS[8:]  # 300 ms: the last heartbeat of a 350 ms gate
        + CLOSE_350MS  # and the word closing it
    )
    exchanges = [(b"INPKT;time 350;timestamp;counts?\r\n", events), (b"abort\r\n", b"")]
    async with expected_protocol(TDC1, exchanges) as drv:
        blocks = [b async for b in drv.stream(0.35, 0.1)]
    assert [(b.meta["t_start_ps"], b.meta["t_stop_ps"]) for b in blocks] == [
        (0.0, 1e11),
        (1e11, 2e11),
        (2e11, 3e11),
        (3e11, 3.5e11),
    ]
    assert [b.timestamps_ps.tolist() for b in blocks] == [
        [10_000, 2_000_000, 2_000_000],
        [],
        [(2**27 + 7) * 2000],
        [],
    ]
    assert blocks[0].channels.tolist() == [1, 3, 4] and blocks[2].channels.tolist() == [2]
    assert [b.meta["chunk"] for b in blocks] == [0, 1, 2, 3]
    assert all(b.lost == 0 and b.meta["resolution_ps"] == 2000 for b in blocks)


async def test_stream_that_falls_silent_raises_a_stall_naming_what_it_waited_for() -> None:
    exchanges = [
        (b"INPKT;time 1000;timestamp;counts?\r\n", HEARTBEATS_250MS),
        (b"abort\r\n", b""),
    ]
    async with expected_protocol(TDC1, exchanges) as drv:
        got = []
        with pytest.raises(TimestampStreamStalled) as err:
            async for block in drv.stream(1.0, 0.15, stall_timeout_s=0.2):
                got.append(block)
    assert len(got) == 1  # [0, 150 ms) is complete (the 200 ms word), [150, 300 ms) never
    msg = str(err.value)
    assert "REPLAY::INSTR" in msg and "counts?" in msg and "0.300000 s" in msg
    assert "0.200000 s" in msg  # the last word seen


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.stream(1.0, 0.0),
        lambda d: d.stream(1.0, float("nan")),
        lambda d: d.stream(0.0, 0.1),
        lambda d: d.stream(1.0, 0.1, stall_timeout_s=0),
    ],
)
async def test_stream_refuses_bad_arguments_before_any_byte(call: Callable[[TDC1], Any]) -> None:
    async with expected_protocol(TDC1, []) as drv:
        with pytest.raises(ValidationError):
            async for _ in call(drv):
                pass


async def test_stream_on_a_drifting_clock_keeps_one_timebase_until_closed(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """An endless stream (duration None) read block by block on a +500 ppm clock: the
    blocks tile the stream time, every tag is inside its block, times never go back,
    the count follows the dark rate (two-sided 99.9 %), and closing the iterator aborts
    the stream so the unit answers queries again."""
    world = dark_world(tmp_path, "fast", 5000.0, drift_ppm=500.0, offset_s=0.3)
    ep = emulator_host.add(TDC1Emulator(name="tdc1", world=world, component="lab.tagger"))
    drv = TDC1.open(ep.address)
    blocks: list[TagBlock] = []
    try:
        async with contextlib.aclosing(drv.stream(None, 0.05)) as stream:
            async for block in stream:
                blocks.append(block)
                if len(blocks) == 40:
                    break
        assert await drv.singles(0.01) is not None
    finally:
        await drv.close()
    edges = [(b.meta["t_start_ps"], b.meta["t_stop_ps"]) for b in blocks]
    assert edges == [(k * 5e10, (k + 1) * 5e10) for k in range(40)]
    for b, (lo, hi) in zip(blocks, edges, strict=True):
        assert b.timestamps_ps.size == 0 or (lo <= b.timestamps_ps[0] and b.timestamps_ps[-1] < hi)
    t = np.concatenate([b.timestamps_ps for b in blocks])
    assert np.all(np.diff(t) >= 0)
    # 2 s of the unit's clock = 2 s / (1 + 500 ppm) of true time at 5 kHz.
    assert in_interval(t.size, 5000.0 * 2.0 / (1 + 500e-6))


# --- the offset between two units' streams, and the emulator's truth of it ---

TWO_NODE_TOML = """
[world]
seed = 7
[world.nodes.alice]
clock_offset_s = 0.0
clock_drift_ppm = 0.0
[world.nodes.bob]
clock_offset_s = {offset_s}
clock_drift_ppm = {drift_ppm}
[world.links.ab]
a = "alice"
b = "bob"
length_km = 0.002
alpha_db_per_km = 0.0
"""


def pair_differences(ta: np.ndarray, tb: np.ndarray, window_ps: float) -> np.ndarray:
    """Bob minus nearest alice, for bob tags with an alice tag within +-window (the
    expected difference already removed from ``tb``)."""
    near = np.searchsorted(ta, tb, side="left").clip(1, ta.size - 1)
    pick = np.where(np.abs(tb - ta[near - 1]) < np.abs(tb - ta[near]), near - 1, near)
    d = tb - ta[pick]
    return d[np.abs(d) <= window_ps]


async def test_two_streams_show_the_stream_offset_the_truth_gives(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """Two TDC1s started together (fast mode: the second joins the first's interval) on
    clocks 1.25 ms and +50 ppm apart: the pairs' stream-time differences follow
    `stream_offset_ps` (+ the 30 ns detector delay) early and late in the run, not the
    nodes' clock offset (the counters reset at the start, as the real unit's do); the
    clock offset is the stream offset plus the clocks' readings at the resets.
    Per 0.3 s window ~1500 pairs, per-pair spread ~0.8 ns (two 2 ns ticks): the mean is known
    to ~20 ps; 200 ps is a 10-sigma bound, and 50 ppm over the run moves it by 50 us:
    without the truth's drift or with the clock offset instead, no pair is in the window."""
    path = tmp_path / "two.toml"
    path.write_text(
        TWO_NODE_TOML.format(offset_s=1.25e-3, drift_ppm=50.0)
        + pair_world_toml(
            "alice.det", "bob.det", channel_b=1, delay_ns=30.0, pairs_per_s_per_mw=4000.0
        )
    )
    world = World(load_world_file(path), seed=7, mode="fast")
    emu_a = TDC1Emulator(name="a", world=world, component="alice.tagger")
    emu_b = TDC1Emulator(name="b", world=world, component="bob.tagger")
    drv_a = TDC1.open(emulator_host.add(emu_a).address)
    drv_b = TDC1.open(emulator_host.add(emu_b).address)
    blocks_a: list[TagBlock] = []
    blocks_b: list[TagBlock] = []
    try:
        async with (
            contextlib.aclosing(drv_a.stream(1.0, 0.1)) as sa,
            contextlib.aclosing(drv_b.stream(1.0, 0.1)) as sb,
        ):
            blocks_a.append(await anext(sa))
            blocks_b.append(await anext(sb))
            blocks_a += [b async for b in sa]
            blocks_b += [b async for b in sb]
    finally:
        await drv_a.close()
        await drv_b.close()
    ta = np.concatenate([b.timestamps_ps for b in blocks_a])
    tb = np.concatenate([b.timestamps_ps for b in blocks_b])
    oa, ob = stream_origin(emu_a), stream_origin(emu_b)
    assert (oa.node, ob.node) == ("alice", "bob") and oa.true_ps == ob.true_ps  # joined
    truth = world.truth
    delay_ps = 30_000.0 + 1e12 * (
        truth.path_delay_s("alice.source", "bob.det")
        - truth.path_delay_s("alice.source", "alice.det")
    )
    # The truth on a 10 ms grid of alice's stream time (the clocks are linear here), looked
    # up by bob's stream time of the same instants (grid + offset).
    grid = np.linspace(0.0, 1e12, 101)
    offsets = stream_offset_ps(world, oa, ob, grid)
    for lo, hi in ((0.0, 0.3e12), (0.7e12, 1e12)):
        sel = tb[(tb >= lo) & (tb < hi)].astype(np.float64)
        expected = np.interp(sel, grid + offsets, offsets) + delay_ps
        d = pair_differences(ta, sel - expected, 10_000.0)
        assert d.size > 1000
        assert abs(float(np.mean(d))) < 200.0
    # Started together, the streams show no offset at the start but the drift since it.
    s0, s1 = stream_offset_ps(world, oa, ob, [0.0, 1e12])
    assert abs(s0) < 2.0 and s1 == pytest.approx(50e-6 * 1e12, rel=1e-6)
    c0 = float(clock_offset_ps(world, emu_a, emu_b, [0.0])[0])
    assert c0 == pytest.approx(1.25e9 + 50e-6 * oa.true_ps, abs=2.0)


async def test_stream_stepped_from_other_tasks_and_cancelled_still_stops_cleanly(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """A consumer that steps the stream through ``wait_for`` (each step in a child task)
    and closes it from its own task, then one whose task is cancelled mid-stream: each
    time ``abort`` goes out, the unit answers again, and while a stream runs the driver
    refuses another acquisition with a clear error. (Holding the session lock across the
    blocks failed here: its context token was reset in another task's context.)"""
    world = dark_world(tmp_path, "fast", 5000.0)
    emu = TDC1Emulator(name="tdc1", world=world, component="lab.tagger")
    drv = TDC1.open(emulator_host.add(emu).address)
    try:
        stream = drv.stream(None, 0.05)
        first = await asyncio.wait_for(anext(stream), 30)
        second = await asyncio.wait_for(anext(stream), 30)
        assert second.meta["t_start_ps"] == first.meta["t_stop_ps"]
        with pytest.raises(TimestampStreamBusy, match="timestamp stream is running"):
            await drv.singles(0.01)
        await stream.aclose()
        assert len(await drv.singles(0.01)) == 4

        started = asyncio.Event()

        async def consume() -> None:
            async for _ in drv.stream(None, 0.05):
                started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(await drv.singles(0.01)) == 4
        assert not emulator_host.call(_streaming(emu))
    finally:
        await drv.close()


async def _streaming(emu: TDC1Emulator) -> bool:
    return emu.streaming


class _AbortLost(ReplayIO):
    """The scripted peer, unplugged when the driver sends ``abort``."""

    def write(self, data: bytes) -> None:
        if data == b"abort\r\n":
            raise LinkDown("USB device unplugged")
        super().write(data)


async def test_a_stall_is_not_hidden_by_an_abort_that_fails_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stream stalls, then the abort finds the link down: the stall (what ended the
    stream) reaches the caller, the failed abort is logged."""
    io = _AbortLost([(b"INPKT;time 1000;timestamp;counts?\r\n", HEARTBEATS_250MS)])
    drv = TDC1.open("REPLAY::INSTR", io=io)
    await drv.session.open()
    try:
        with pytest.raises(TimestampStreamStalled):
            async for _ in drv.stream(1.0, 0.15, stall_timeout_s=0.2):
                pass
    finally:
        await drv.close()
    assert "abort after a failed stream also failed" in caplog.text


async def test_a_gap_no_healthy_stream_leaves_is_reported_as_corrupt() -> None:
    """Words lost (a host that fell behind) or misaligned leave a step longer than half the
    27-bit period, which a stream with a dummy word every 100 ms never has: the block
    before it is delivered, then a clear error, and the stream is aborted."""
    events = HEARTBEATS_250MS[:4] + HEARTBEATS_350MS[8:]  # 100 ms, then 300 ms: 200 ms gap
    exchanges = [(b"INPKT;time 350;timestamp;counts?\r\n", events), (b"abort\r\n", b"")]
    got = []
    async with expected_protocol(TDC1, exchanges) as drv:
        with pytest.raises(TimestampStreamCorrupt) as err:
            async for block in drv.stream(0.35, 0.1):
                got.append(block)
    assert [b.meta["t_stop_ps"] for b in got] == [1e11]
    assert "gap of 200.0 ms after stream time 0.100000 s" in str(err.value)
    assert "REPLAY::INSTR" in str(err.value) and "counts?" in str(err.value)
