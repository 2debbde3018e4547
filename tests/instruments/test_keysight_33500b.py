"""Keysight 33522B as the BB84 pattern source: byte-exact protocol both ways, faults, key hygiene,
and the uploaded pattern driving the world's transmitter (docs/protocols/keysight-33500b.md).

Reply bytes follow the protocol notes: ``+0,"No error"`` with its sign, short mnemonics
(``SIN``, ``IMM``, ``NORM``), NR3 numbers, ``FUNC:ARB?`` quoted, ``INF`` read back as
``+9.9E+37``. Pattern bytes are the encoding in ``qhil.drivers.keysight.bb84_pattern``
written out by hand: polarization levels -32767, -10922, 10922, 32767 (0x8001, 0xD556,
0x2AAA, 0x7FFF) and intensity levels -32767 + k * 9362 (0x8001, 0xA493, 0xC925, 0xEDB7,
0x1249, 0x36DB, 0x5B6D, 0x7FFF), int16 big-endian.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.drivers.keysight import bb84_pattern
from qhil.drivers.keysight.ks33500b import Keysight33500B, PatternReusedError
from qhil.drivers.roles import PatternGenerator
from qhil.emulators.keysight.ks33500b import Keysight33500BEmulator, nr3
from qhil.emulators.server import EmulatorHost
from qhil.emulators.world import World, load_world_config
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator
from qhil.transport.exchange_log import ExchangeLog

NO_ERROR = (b":SYSTem:ERRor?\n", b'+0,"No error"\n')

# Eight symbols covering every polarization level and every intensity level once.
SYMBOLS = np.array([0, 5, 10, 15, 16, 21, 26, 31], dtype=np.uint8)
POL_BLOCK = b"#216\x80\x01\xd5\x56\x2a\xaa\x7f\xff\x80\x01\xd5\x56\x2a\xaa\x7f\xff"
INT_BLOCK = b"#216\x80\x01\xa4\x93\xc9\x25\xed\xb7\x12\x49\x36\xdb\x5b\x6d\x7f\xff"

LOAD_PATTERN = [
    (b"SOURce1:DATA:VOLatile:CLEar\n", b""),
    NO_ERROR,
    (b"SOURce1:DATA:ARBitrary:DAC QHILPOL," + POL_BLOCK + b"\n", b""),
    NO_ERROR,
    # The channel's selection, rate, filter and shape, then one error check for them.
    (b"SOURce1:FUNCtion:ARBitrary QHILPOL\n", b""),
    (b"SOURce1:FUNCtion:ARBitrary:SRATe 80000000\n", b""),
    (b"SOURce1:FUNCtion:ARBitrary:FILTer STEP\n", b""),
    (b"SOURce1:FUNCtion ARBitrary\n", b""),
    NO_ERROR,
    (b"SOURce2:DATA:VOLatile:CLEar\n", b""),
    NO_ERROR,
    (b"SOURce2:DATA:ARBitrary:DAC QHILINT," + INT_BLOCK + b"\n", b""),
    NO_ERROR,
    (b"SOURce2:FUNCtion:ARBitrary QHILINT\n", b""),
    (b"SOURce2:FUNCtion:ARBitrary:SRATe 80000000\n", b""),
    (b"SOURce2:FUNCtion:ARBitrary:FILTer STEP\n", b""),
    (b"SOURce2:FUNCtion ARBitrary\n", b""),
    (b"FUNCtion:ARBitrary:SYNChronize\n", b""),
    NO_ERROR,
]


async def _load_then_read(d: Keysight33500B) -> tuple[str, int, float, str]:
    await d.load_pattern(SYMBOLS, 80e6)
    return (
        await d.arb_name.get(channel=2),
        await d.arb_points.get(channel=2),
        await d.arb_sample_rate_hz.get(channel=1),
        await d.shape.get(channel=1),
    )


async def _load_inf(d: Keysight33500B) -> float:
    await d.output_load_ohm.set(math.inf, channel=2)
    return await d.output_load_ohm.get(channel=2)


async def _outputs_on(d: Keysight33500B) -> bool:
    await d.set_output(True)
    return await d.output()


CASES = [
    ProtocolCase(
        "idn",
        lambda d: d.identity(),
        [(b"*IDN?\n", b"Agilent Technologies,33522B,MY00000000,5.00-1.19-2.00-58-00\n")],
        "Agilent Technologies,33522B,MY00000000,5.00-1.19-2.00-58-00",
    ),
    ProtocolCase("no error has a sign", lambda d: d.check_errors(), [NO_ERROR]),
    ProtocolCase(
        "function?", lambda d: d.shape.get(channel=2), [(b"SOURce2:FUNCtion?\n", b"SIN\n")], "SIN"
    ),
    ProtocolCase(
        "function=",
        lambda d: d.shape.set("ARB", channel=1),
        [(b"SOURce1:FUNCtion ARBitrary\n", b""), NO_ERROR],
    ),
    ProtocolCase(
        "built-in arb selected at power-on, quoted",
        lambda d: d.arb_name.get(channel=1),
        [(b"SOURce1:FUNCtion:ARBitrary?\n", b'"INT:\\BUILTIN\\EXP_RISE.ARB"\n')],
        "INT:\\BUILTIN\\EXP_RISE.ARB",
    ),
    ProtocolCase(
        "sample rate? (power-on 40 kSa/s)",
        lambda d: d.arb_sample_rate_hz.get(channel=1),
        [(b"SOURce1:FUNCtion:ARBitrary:SRATe?\n", b"+4.000000000000000E+04\n")],
        40e3,
    ),
    ProtocolCase(
        "output off at power-on",
        lambda d: d.output_enabled.get(channel=1),
        [(b"OUTPut1?\n", b"0\n")],
        False,
    ),
    ProtocolCase(
        "both outputs on",
        _outputs_on,
        [
            (b"OUTPut1 1\n", b""),
            (b"OUTPut2 1\n", b""),
            NO_ERROR,  # one error check for both
            (b"OUTPut1?\n", b"1\n"),
            (b"OUTPut2?\n", b"1\n"),
        ],
        True,
    ),
    ProtocolCase(
        "load INF reads back 9.9E+37",
        _load_inf,
        [
            (b"OUTPut2:LOAD INF\n", b""),
            NO_ERROR,
            (b"OUTPut2:LOAD?\n", b"+9.900000000000000E+37\n"),
        ],
        math.inf,
    ),
    ProtocolCase(
        "byte order", lambda d: d.byte_order.get(), [(b"FORMat:BORDer?\n", b"NORM\n")], "NORM"
    ),
    ProtocolCase(
        "burst cycles",
        lambda d: d.burst_cycles.get(channel=1),
        [(b"SOURce1:BURSt:NCYCles?\n", b"+1.000000000000000E+00\n")],
        1.0,
    ),
    ProtocolCase(
        "trigger source",
        lambda d: d.trigger_source.get(channel=1),
        [(b"TRIGger1:SOURce?\n", b"IMM\n")],
        "IMM",
    ),
    ProtocolCase(
        "pattern upload",
        _load_then_read,
        [
            *LOAD_PATTERN,
            (b"SOURce2:FUNCtion:ARBitrary?\n", b'"QHILINT"\n'),
            (b"SOURce2:FUNCtion:ARBitrary:POINts?\n", b"+8\n"),
            (b"SOURce1:FUNCtion:ARBitrary:SRATe?\n", b"+8.000000000000000E+07\n"),
            (b"SOURce1:FUNCtion?\n", b"ARB\n"),
        ],
        ("QHILINT", 8, 80e6, "ARB"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(Keysight33500B, case.exchanges) as drv:
        result = await case.call(drv)
    if case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(Keysight33500BEmulator(), case.exchanges)


def test_encoding_round_trips_and_matches_the_documented_levels() -> None:
    pol, inten = bb84_pattern.encode(SYMBOLS)
    assert pol.tolist() == [-32767, -10922, 10922, 32767] * 2
    assert inten.tolist() == [-32767, -23405, -14043, -4681, 4681, 14043, 23405, 32767]
    symbols = np.random.default_rng(3).integers(0, 32, 10_000).astype(np.uint8)
    assert np.array_equal(bb84_pattern.decode(*bb84_pattern.encode(symbols)), symbols)
    # A drive a little off a level still lands on it; half a step away lands on the next.
    assert bb84_pattern.nearest_level([-10922 + 5000, -10922 + 12000], 4).tolist() == [1, 2]


@pytest.mark.parametrize("n", [8, 9, 4097])
def test_upload_message_is_the_block_of_the_encoded_codes(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver's one-buffer upload (two symbols per gather, in steps of 100 pairs here)
    # against the plain encoding, byte for byte: both channels, both byte orders, odd
    # lengths, a reused bigger buffer.
    monkeypatch.setattr(bb84_pattern, "ENCODE_CHUNK", 100)
    symbols = np.random.default_rng(n).integers(0, 32, n).astype(np.uint8)
    scratch = np.zeros(4 * n + 100, np.uint8)
    for channel, codes in zip((1, 2), bb84_pattern.encode(symbols), strict=True):
        for order in (">", "<"):
            want = b"SOUR:DATA:ARB:DAC X," + bb84_pattern.dac_block(codes, order) + b"\n"
            got, buf = bb84_pattern.dac_message(
                b"SOUR:DATA:ARB:DAC X,", symbols, channel, order, b"\n", scratch
            )
            assert got == want and buf is scratch


def test_decoding_in_chunks_equals_the_nearest_level(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every int16 code on both channels, decoded in steps that do not divide the length.
    monkeypatch.setattr(bb84_pattern, "DECODE_CHUNK", 1000)
    codes = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    other = np.roll(codes[::-1], 12345)
    want = bb84_pattern.nearest_level(codes, 4) | (bb84_pattern.nearest_level(other, 8) << 2)
    np.testing.assert_array_equal(bb84_pattern.decode(codes, other), want)


async def test_a_strided_pattern_uploads_as_its_symbols(emulator_host: EmulatorHost) -> None:
    # A non-contiguous symbol array (a view with a step) is uploaded as the symbols it holds.
    world = _bench()
    ep = emulator_host.add(Keysight33500BEmulator(name="awg", world=world, component="alice.tx"))
    every_other = (np.arange(64, dtype=np.uint8) % 8)[::2]
    async with Keysight33500B.open(ep.resource) as awg:
        await awg.load_pattern(every_other, REP_RATE)
        await awg.set_output(True)
    assert world.transmitter("alice.tx").pattern.tolist() == every_other.tolist()


async def test_connect_sets_big_endian_blocks() -> None:
    exchanges = [NO_ERROR, (b"*CLS\n", b""), NO_ERROR, (b"FORMat:BORDer NORMal\n", b""), NO_ERROR]
    async with expected_protocol(Keysight33500B, exchanges, connect=True):
        pass


async def test_emulator_takes_pymeasure_and_short_forms() -> None:
    emu = Keysight33500BEmulator()
    await run_on_emulator(
        emu,
        [
            (b"SOUR1:FUNC ARB\n", b""),
            (b"FUNC?\n", b"ARB\n"),  # channel-less forms act on channel 1
            (b"SOUR1:DATA:ARB:DAC test, 0, 1000, -1000, 0, 0, 0, 0, 0\n", b""),
            (b"SOUR1:FUNC:ARB test\n", b""),
            (b"SOUR1:FUNC:ARB?\n", b'"TEST"\n'),
            (b"SOUR1:FUNC:ARB:SRAT 1000000.000000\n", b""),
            (b"FUNC:ARB:SRAT?\n", b"+1.000000000000000E+06\n"),
            (b"SOUR2:DATA:ARB ramp, -1.0, -0.5, 0, 0.5, 1.0, 0.5, 0, -0.5\n", b""),
            (b":sour2:func:arb RAMP;:SOUR2:FUNC:ARB:POIN?\n", b"+8\n"),
            (b"OUTP2:LOAD INF\n", b""),
            (b"OUTP2:LOAD?;:OUTP2?\n", b"+9.900000000000000E+37;0\n"),
            (b"SOURCE2:BURST:MODE GATED\n", b""),
            (b"SOUR2:BURS:MODE?\n", b"GAT\n"),
            (b"SYST:ERR?\n", b'+0,"No error"\n'),
        ],
    )
    assert emu.channels[1].waveforms["TEST"].codes.tolist() == [0, 1000, -1000, 0, 0, 0, 0, 0]
    assert emu.channels[2].waveforms["RAMP"].codes.tolist()[:3] == [-32767, -16384, 0]


async def test_emulator_errors_and_clipping() -> None:
    emu = Keysight33500BEmulator()
    await run_on_emulator(
        emu,
        [
            (b"SOUR1:DATA:ARB:DAC test, 0, 1, 2, 3, 4, 5, 6, 7\n", b""),
            (b"SOUR1:DATA:ARB:DAC TEST, 0, 1, 2, 3, 4, 5, 6, 7\n", b""),  # name exists
            (b"SOUR1:DATA:ARB:DAC short, 0, 1, 2\n", b""),  # fewer than 8 points
            (b"SOUR1:DATA:ARB:DAC big, 0, 1, 2, 3, 4, 5, 6, 40000\n", b""),
            (b"SOUR1:FUNC:ARB nosuch\n", b""),
            (b"SOUR1:FUNC:ARB:SRAT 200e6\n", b""),  # beyond the 33522B's 160 MSa/s: clipped
            (b"SOUR1:FUNC:ARB:SRAT?\n", b"+1.600000000000000E+08\n"),
            (b"SOUR3:FUNC SIN\n", b""),
            (b"SOUR1:DATA:ARB:DAC blk,#14\x00\x01\x00\x02\n", b""),  # 2 points
            (b"SYST:ERR?\n", b'+786,"Arb waveform name already exists"\n'),
            (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b"SYST:ERR?\n", b'-224,"Illegal parameter value"\n'),
            (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b"SYST:ERR?\n", b'-113,"Undefined header"\n'),
            (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b"SYST:ERR?\n", b'+0,"No error"\n'),
        ],
    )


async def test_blocks_survive_terminator_and_whitespace_bytes(emulator_host: EmulatorHost) -> None:
    # Over the wire a block may hold "\n" and end in " " or "\r": the framer must keep them.
    emu = Keysight33500BEmulator(name="awg")
    ep = emulator_host.add(emu)
    codes = np.array([0x0A0A, 0x0D20, 0x2020, 0x0A0D, 10, 2570, 3338, 0x0D0A], dtype=np.int16)
    async with Keysight33500B.open(ep.resource, timeout_s=2) as awg:
        await awg.upload_dac_block(1, "WS", codes)
        await awg.byte_order.set("SWAP")
        await awg.upload_dac_block(2, "WS", codes.byteswap())  # sent LSB first, same values
    assert emu.channels[1].waveforms["WS"].codes.tolist() == codes.tolist()
    assert emu.channels[2].waveforms["WS"].codes.tolist() == codes.tolist()


def test_nr3_format() -> None:
    assert nr3(80e6) == "+8.000000000000000E+07"
    assert nr3(math.inf) == "+9.900000000000000E+37"


# --- validation and key hygiene -------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbols", "rate", "match"),
    [
        (np.array([0, 1, 2, 3, 4, 5, 6, 32], dtype=np.uint8), 80e6, "0..31"),
        (np.zeros(7, dtype=np.uint8), 80e6, "8..16777216"),
        (np.zeros((2, 8), dtype=np.uint8), 80e6, "1-D"),
        (np.arange(8, dtype=np.uint8), 1e9, "SRATe"),
    ],
)
async def test_bad_pattern_or_rate_refused_before_any_byte(
    symbols: np.ndarray, rate: float, match: str
) -> None:
    async with expected_protocol(Keysight33500B, []) as drv:
        with pytest.raises(ValidationError, match=match) as err:
            await drv.load_pattern(symbols, rate)
    assert str(symbols.tolist()) not in str(err.value)  # no symbol values in the message


async def test_the_same_pattern_is_never_uploaded_twice() -> None:
    async with expected_protocol(Keysight33500B, LOAD_PATTERN) as drv:
        await drv.load_pattern(SYMBOLS, 80e6)
        with pytest.raises(PatternReusedError, match="fresh random pattern"):
            await drv.load_pattern(SYMBOLS.copy(), 80e6)  # equal content, another array
        with pytest.raises(PatternReusedError):
            await drv.load_pattern(SYMBOLS.astype(np.int64), 40e6)  # same symbols, any rate
    # expected_protocol checked that nothing was written after the first upload.


async def test_a_new_driver_session_has_its_own_memory_of_patterns() -> None:
    for _ in range(2):
        async with expected_protocol(Keysight33500B, LOAD_PATTERN) as drv:
            await drv.load_pattern(SYMBOLS, 80e6)


async def test_pattern_bytes_never_reach_logs_or_exchange_log(
    emulator_host: EmulatorHost, caplog: pytest.LogCaptureFixture
) -> None:
    emu = Keysight33500BEmulator(name="awg")
    ep = emulator_host.add(emu)
    xlog = ExchangeLog(ep.resource)
    symbols = np.random.default_rng(11).integers(0, 8, 4096).astype(np.uint8)
    pol, inten = bb84_pattern.encode(symbols)
    secret = [bb84_pattern.dac_block(pol)[6:40], bb84_pattern.dac_block(inten)[6:40]]
    caplog.set_level(logging.DEBUG)
    async with Keysight33500B.open(ep.resource, exchange_log=xlog, timeout_s=0.5) as awg:
        await awg.load_pattern(symbols, 80e6)
        emu.faults.error_next = (-225, "Out of memory")  # a failed upload hides the pattern too
        with pytest.raises(InstrumentError) as err:
            await awg.upload_dac_block(1, "AGAIN", pol)
    assert err.value.command == "SOURce1:DATA:ARBitrary:DAC AGAIN,<block>"
    assert err.value.code == -225 and "#" not in str(err.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    traffic = b"".join(e.out + e.inp for e in xlog)
    for chunk in secret:
        assert chunk not in traffic and repr(chunk)[2:-1] not in logged
    assert b"DATA:ARBitrary" not in traffic and "<sensitive>" in logged
    # The rest of the session is logged as usual (so the test above can fail).
    assert b"SOURce1:FUNCtion:ARBitrary QHILPOL\n" in traffic
    assert "SOURce2:FUNCtion:ARBitrary:SRATe 80000000" in logged
    assert np.array_equal(emu.channels[1].waveforms["QHILPOL"].codes, pol)  # it did arrive


# --- faults over TCP --------------------------------------------------------------------------


async def test_driver_over_tcp_with_faults(emulator_host: EmulatorHost) -> None:
    emu = Keysight33500BEmulator(name="awg")
    ep = emulator_host.add(emu)
    async with Keysight33500B.open(ep.resource, timeout_s=0.5) as awg:
        assert isinstance(awg, PatternGenerator)
        await awg.arb_sample_rate_hz.set(1e6, channel=2)
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tout:
            await awg.arb_sample_rate_hz.get(channel=2)
        assert tout.value.command == "SOURce2:FUNCtion:ARBitrary:SRATe?"
        assert tout.value.termination == "\n" and tout.value.resource == ep.resource
        emu.faults.error_next = (-222, "Data out of range")
        with pytest.raises(InstrumentError) as err:
            await awg.set_output(True)
        assert err.value.code == -222 and err.value.text == "Data out of range"
        assert err.value.command == "OUTPut1 1; OUTPut2 1"  # checked together
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await awg.shape.get(channel=1)
        assert await awg.arb_sample_rate_hz.get(channel=2) == 1e6  # reconnected by itself


# --- the pattern drives the world ------------------------------------------------------------

REP_RATE = 80e6
SOURCE_ER_DB = 17.0  # wrong-polarization probability 1 / (1 + 10^1.7) = 0.0196


def _bench() -> World:
    dets = {
        name: {
            "type": "detector",
            "efficiency": 0.5,
            "dark_count_rate_hz": 0.0,
            "dead_time_ns": 0.0,
            "jitter_ps": 20.0,
            "afterpulse_probability": 0.0,
            "tagger": "tagger",
            "channel": ch,
        }
        for ch, name in enumerate(("h", "v", "d", "a"), start=1)
    }
    table: dict[str, Any] = {
        "seed": 17,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": REP_RATE,
                        "mus": [0.05, 0.0],  # signal and vacuum
                        "polarization_extinction_ratio_db": SOURCE_ER_DB,
                        "path": ["ab", "bob.rx"],
                    }
                }
            },
            "bob": {
                "components": {
                    "rx": {
                        "type": "polarization_analyzer",
                        "pbs_extinction_ratio_db": 100.0,
                        "bases": [
                            {"axis": "HV", "weight": 0.5, "plus": "h", "minus": "v"},
                            {"axis": "DA", "weight": 0.5, "plus": "d", "minus": "a"},
                        ],
                    },
                    "tagger": {"type": "time_tagger", "n_channels": 4, "buffer_size": 1 << 24},
                    **dets,
                }
            },
        },
        "links": {"ab": {"a": "alice", "b": "bob", "length_km": 1.0, "alpha_db_per_km": 0.2}},
    }
    return World(load_world_config(table, "test_keysight_33500b"), mode="fast")


async def test_uploaded_pattern_drives_the_transmitter(emulator_host: EmulatorHost) -> None:
    world = _bench()
    emu = Keysight33500BEmulator(name="awg", world=world, component="alice.tx")
    ep = emulator_host.add(emu)
    rng = np.random.default_rng(2024)
    symbols = (
        rng.integers(0, 2, 4096) | rng.integers(0, 2, 4096) << 1 | (rng.random(4096) < 0.2) << 2
    ).astype(np.uint8)
    before = world.transmitter("alice.tx").pattern
    async with Keysight33500B.open(ep.resource) as awg:
        await awg.load_pattern(symbols, REP_RATE)
        assert np.array_equal(world.transmitter("alice.tx").pattern, before)  # outputs still off
        await awg.set_output(True)
    assert np.array_equal(world.transmitter("alice.tx").pattern, symbols)

    block = world.tagger("bob.tagger").read(0.02)
    k = world.truth.pulse_indices("alice.tx", "bob.tagger", block)
    detector = block.channels.astype(np.int64) - 1  # 0 H, 1 V, 2 D, 3 A
    keep = k >= 0
    k, detector = k[keep], detector[keep]
    # One click per pulse only (a multi-photon pulse clicking two detectors is ambiguous).
    pulses, first, clicks = np.unique(k, return_index=True, return_counts=True)
    single = clicks == 1
    sym = symbols[pulses[single] % symbols.size]
    det = detector[first[single]]
    # The intensity channel: vacuum pulses never click (no dark counts, no background).
    assert int((sym >> 2 == 1).sum()) == 0
    assert sym.size > 10_000  # about 30 000 expected: 1.6 M pulses, 2.4 % detected
    # The polarization channel: in the matched basis Bob's bit is Alice's, but for the
    # source's extinction ratio. Two-sided binomial test at 99.9 %.
    sifted = (det >> 1) == ((sym >> 1) & 1)
    errors = int(((det & 1) != (sym & 1))[sifted].sum())
    n = int(sifted.sum())
    p_wrong = 1.0 / (1.0 + 10 ** (SOURCE_ER_DB / 10))
    assert stats.binomtest(errors, n, p_wrong).pvalue > 1e-3, (errors, n, p_wrong)
    # The test has power: with any other pattern (here the previous one) Bob's bits are noise.
    other = before[pulses[single] % before.size]
    sifted_o = (det >> 1) == ((other >> 1) & 1)
    errors_o = int(((det & 1) != (other & 1))[sifted_o].sum())
    assert stats.binomtest(errors_o, int(sifted_o.sum()), p_wrong).pvalue < 1e-6


async def test_sample_rate_must_be_the_pulse_rate(emulator_host: EmulatorHost) -> None:
    world = _bench()
    emu = Keysight33500BEmulator(name="awg", world=world, component="alice.tx")
    ep = emulator_host.add(emu)
    before = world.transmitter("alice.tx").pattern
    async with Keysight33500B.open(ep.resource) as awg:
        await awg.load_pattern(np.arange(16, dtype=np.uint8) % 8, REP_RATE / 2)
        with pytest.raises(InstrumentError) as err:
            await awg.set_output(True)
    assert err.value.code == -221 and "pulse rate" in err.value.text
    assert np.array_equal(world.transmitter("alice.tx").pattern, before)


# --- fidelity: PyMeasure's unmodified Agilent33500 against the emulator ----------------------


@pytest.mark.fidelity
def test_pymeasure_agilent33500_uploads_a_pattern(emulator_host: EmulatorHost) -> None:
    agilent = pytest.importorskip("pymeasure.instruments.agilent")
    world = _bench()
    emu = Keysight33500BEmulator(name="awg", world=world, component="alice.tx")
    ep = emulator_host.add(emu)
    gen = agilent.Agilent33500(
        ep.resource,
        visa_library="@py",
        read_termination="\n",
        write_termination="\n",
        timeout=2000,
    )
    symbols = np.random.default_rng(5).integers(0, 8, 64).astype(np.uint8)
    pol, inten = bb84_pattern.encode(symbols)
    try:
        assert gen.id == "Agilent Technologies,33522B,MY00000000,5.00-1.19-2.00-58-00"
        for ch, name, data, fmt in (
            (gen.ch_1, "pol", pol.tolist(), "DAC"),
            (gen.ch_2, "inten", (inten / 32767).tolist(), "float"),
        ):
            ch.shape = "ARB"
            ch.data_volatile_clear()
            ch.data_arb(name, data, data_format=fmt)
            ch.arb_file = name
            ch.arb_srate = REP_RATE
            assert ch.shape == "ARB"
            assert ch.arb_file == f'"{name.upper()}"'
            assert ch.arb_srate == REP_RATE
        gen.ch_1.amplitude = 2.5
        assert gen.ch_1.amplitude == 2.5
        gen.ch_1.output = True
        gen.ch_2.output = True
        assert gen.ch_2.output is True
        assert gen.check_errors() == []
    finally:
        gen.adapter.close()
    assert np.array_equal(world.transmitter("alice.tx").pattern, symbols)
