"""Qubitekk CC1: byte-exact protocol (docs/protocols/qubitekk-cc1.md) both ways, faults, physics.

Bytes come from InstrumentKit's CC1 tests (tests/test_qubitekk/test_qubitekk_cc1.py):
its connect sequence ``:ACKN OF`` / ``FIRM?``, the setter syntax of both firmware
dialects and the reply formats. qhil's driver adds one ``FIRM?`` after each setter
to collect the CC1's error lines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from qhil.drivers.qubitekk.cc1 import CC1, parse_firmware
from qhil.emulators.qubitekk.cc1 import CC1Emulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

NEW = b"Firmware v2.010\n"
OLD = b"Firmware v2.001\n"
CONNECT_NEW = [(b":ACKN OF\n", b":ACKN OF\n"), (b"FIRM?\n", NEW)]
CONNECT_OLD = [(b":ACKN OF\n", b"Unknown Command\n"), (b"FIRM?\n", OLD)]
SYNC_NEW = (b"FIRM?\n", NEW)
SYNC_OLD = (b"FIRM?\n", OLD)

Call = Callable[[Any], Awaitable[Any]]


def seq(*steps: Call) -> Call:
    """A case call made of several driver calls; returns the last result."""

    async def run(d: Any) -> Any:
        result = None
        for step in steps:
            result = await step(d)
        return result

    return run


async def _firmware(d: CC1) -> tuple[int, int, int]:
    return d.firmware_version


NEW_CASES = [
    ProtocolCase("connect", _firmware, [], (2, 10, 0)),
    ProtocolCase(
        "window",
        seq(lambda d: d.window_ns.set(7), lambda d: d.window_ns.get()),
        [(b":WIND 7\n", b""), SYNC_NEW, (b"WIND?\n", b"7\n")],
        7,
    ),
    ProtocolCase(
        "delay",
        seq(lambda d: d.delay_ns.set(2), lambda d: d.delay_ns.get()),
        [(b":DELA 2\n", b""), SYNC_NEW, (b"DELA?\n", b"2\n")],
        2,
    ),
    ProtocolCase(
        "dwell in seconds",
        seq(lambda d: d.set_dwell_time_s(2), lambda d: d.dwell_time_s()),
        [(b":DWEL 2\n", b""), SYNC_NEW, (b"DWEL?\n", b"2\n")],
        2.0,
    ),
    ProtocolCase(
        "gate",
        seq(lambda d: d.set_gate(True), lambda d: d.gate.get()),
        [(b":GATE:ON\n", b""), SYNC_NEW, (b"GATE?\n", b"ON\n")],
        True,
    ),
    ProtocolCase(
        "gate off",
        seq(lambda d: d.set_gate(False), lambda d: d.gate.get()),
        [(b":GATE:OFF\n", b""), SYNC_NEW, (b"GATE?\n", b"OFF\n")],
        False,
    ),
    ProtocolCase(
        "subtract",
        seq(lambda d: d.set_subtract_accidentals(True), lambda d: d.subtract.get()),
        [(b":SUBT:ON\n", b""), SYNC_NEW, (b"SUBT?\n", b"ON\n")],
        True,
    ),
    ProtocolCase(
        "trigger",
        seq(lambda d: d.set_trigger_mode("start_stop"), lambda d: d.trigger_mode_setting()),
        [(b":TRIG:MODE STOP\n", b""), SYNC_NEW, (b"TRIG?\n", b"MODE STOP\n")],
        "start_stop",
    ),
    ProtocolCase("clear", lambda d: d.clear_counts(), [(b"CLEA\n", b""), SYNC_NEW]),
    ProtocolCase(
        "count C1",
        lambda d: d.count.get(channel=1),
        [(b"COUN:C1?\n", b"20\n")],
        20,
        emulator_exact=False,  # counts come from the world's physics
    ),
    ProtocolCase(
        "count CO",
        lambda d: d.count.get(channel="coincidences"),
        [(b"COUN:CO?\n", b"3\n")],
        3,
        emulator_exact=False,
    ),
]

OLD_CASES = [
    ProtocolCase("connect", _firmware, [], (2, 1, 0)),
    ProtocolCase(
        "dwell reported in ms",
        seq(lambda d: d.set_dwell_time_s(2), lambda d: d.dwell_time_s()),
        [(b":DWEL 2\n", b""), SYNC_OLD, (b"DWEL?\n", b"2000\n")],
        2.0,
    ),
    ProtocolCase(
        "gate",
        seq(lambda d: d.set_gate(True), lambda d: d.gate.get()),
        [(b":GATE 1\n", b""), SYNC_OLD, (b"GATE?\n", b"1\n")],
        True,
    ),
    ProtocolCase(
        "subtract off",
        seq(lambda d: d.set_subtract_accidentals(False), lambda d: d.subtract.get()),
        [(b":SUBT 0\n", b""), SYNC_OLD, (b"SUBT?\n", b"0\n")],
        False,
    ),
    ProtocolCase(
        "trigger",
        seq(lambda d: d.set_trigger_mode("start_stop"), lambda d: d.trigger_mode_setting()),
        [(b":TRIG 1\n", b""), SYNC_OLD, (b"TRIG?\n", b"1\n")],
        "start_stop",
    ),
]

DIALECTS = [
    *[("2.010", CONNECT_NEW, c) for c in NEW_CASES],
    *[("2.001", CONNECT_OLD, c) for c in OLD_CASES],
]
IDS = [f"fw{fw}-{c.id}" for fw, _, c in DIALECTS]


@pytest.mark.parametrize(("firmware", "connect", "case"), DIALECTS, ids=IDS)
async def test_driver_sends_documented_bytes(
    firmware: str, connect: list[tuple[bytes, bytes]], case: ProtocolCase
) -> None:
    async with expected_protocol(CC1, [*connect, *case.exchanges], connect=True) as drv:
        result = await case.call(drv)
    if case.result is not None:
        assert result == case.result


@pytest.mark.parametrize(
    ("firmware", "connect", "case"),
    [x for x in DIALECTS if x[2].emulator_exact],
    ids=[i for i, x in zip(IDS, DIALECTS, strict=True) if x[2].emulator_exact],
)
async def test_emulator_answers_documented_bytes(
    firmware: str, connect: list[tuple[bytes, bytes]], case: ProtocolCase
) -> None:
    await run_on_emulator(CC1Emulator(firmware=firmware), [*connect, *case.exchanges])


def test_firmware_parsing_matches_instrumentkit() -> None:
    assert parse_firmware("Firmware v2.010") == (2, 10, 0)
    assert parse_firmware("Firmware v2") == (2, 0, 0)
    assert parse_firmware("Firmware v2.010.1") == (2, 10, 1)
    with pytest.raises(ValueError):
        parse_firmware("Unknown Command")


async def test_connect_when_acknowledgements_are_already_off() -> None:
    # No reply to ":ACKN OF": the driver does not wait for one, it reads up to the firmware.
    async with expected_protocol(CC1, [(b":ACKN OF\n", b""), SYNC_NEW], connect=True) as drv:
        assert drv.new_dialect


async def test_acknowledgement_echo_takes_effect_after_the_exchange() -> None:
    # InstrumentKit's test_acknowledge dialogue, on a power-up emulator (acks on).
    await run_on_emulator(
        CC1Emulator(),
        [
            (b"CLEA\n", b"CLEA\n"),
            (b"WIND?\n", b"WIND?\n7\n"),
            (b":ACKN OF\n", b":ACKN OF\n"),
            (b"CLEA\n", b""),
            (b":ACKN ON\n", b""),
            (b"CLEA\n", b"CLEA\n"),
            (b":ACKN OF\n", b":ACKN OF\n"),
            (b"CLEA\n", b""),
        ],
    )


async def test_each_dialect_refuses_the_other() -> None:
    await run_on_emulator(
        CC1Emulator(),
        [*CONNECT_NEW, (b":GATE 1\n", b"Unknown Command\n"), (b":TRIG 0\n", b"Unknown Command\n")],
    )
    await run_on_emulator(
        CC1Emulator(firmware="2.001"),
        [
            *CONNECT_OLD,
            (b":GATE:ON\n", b"Unknown Command\n"),
            (b":ACKN ON\n", b"Unknown Command\n"),
            (b"GATE?\n", b"0\n"),
        ],
    )


async def test_emulator_refuses_bad_values_and_unknown_headers() -> None:
    await run_on_emulator(
        CC1Emulator(),
        [
            *CONNECT_NEW,
            (b":WIND 9\n", b"Unable to comply\n"),
            (b":DELA 3\n", b"Unable to comply\n"),
            (b"HELLO\n", b"Unknown Command\n"),
            (b"WIND?\n", b"7\n"),
        ],
    )


async def test_error_line_after_setter_is_an_instrument_error() -> None:
    exchanges = [*CONNECT_NEW, (b":WIND 3\n", b""), (b"FIRM?\n", b"Unable to comply\n" + NEW)]
    async with expected_protocol(CC1, exchanges, connect=True) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.window_ns.set(3)
    assert err.value.code == "Unable to comply" and err.value.command == ":WIND 3"


async def test_error_line_instead_of_reply_is_an_instrument_error() -> None:
    async with expected_protocol(CC1, [(b"WIND?\n", b"Unknown Command\n")]) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.window_ns.get()
    assert err.value.code == "Unknown Command" and err.value.command == "WIND?"


async def test_driver_skips_a_command_echo() -> None:
    async with expected_protocol(CC1, [(b"DELA?\n", b"DELA?\n4\n")]) as drv:
        assert await drv.delay_ns.get() == 4


@pytest.mark.parametrize(
    ("attr", "value"), [("window_ns", 8), ("delay_ns", 3), ("delay_ns", 16), ("dwell_s", -1)]
)
async def test_out_of_range_refused_before_any_byte(attr: str, value: float) -> None:
    async with expected_protocol(CC1, CONNECT_NEW, connect=True) as drv:
        with pytest.raises(ValidationError):
            await getattr(drv, attr).set(value)


async def test_driver_over_pty_with_faults(emulator_host: EmulatorHost) -> None:
    emu = CC1Emulator(name="cc1")
    ep = emulator_host.add(emu)
    async with CC1.open(ep.resource, timeout_s=0.5) as cc:
        assert cc.new_dialect and not emu.ack
        await cc.window_ns.set(3)
        assert await cc.window_ns.get() == 3
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tout:
            await cc.delay_ns.get()
        assert tout.value.command == "DELA?" and tout.value.termination == "\n"
        assert tout.value.resource == ep.resource
        emu.faults.error_next = ("Unable to comply", "")
        with pytest.raises(InstrumentError) as err:
            await cc.window_ns.get()
        assert err.value.code == "Unable to comply"
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await cc.window_ns.get()
        # The pty came back at the same path (as after a USB replug): the next call reconnects.
        assert await cc.window_ns.get() == 3


@pytest.mark.fidelity
@pytest.mark.parametrize("firmware", ["2.010", "2.001"])
def test_instrumentkit_cc1_drives_the_emulator(emulator_host: EmulatorHost, firmware: str) -> None:
    """InstrumentKit's CC1 driver, unmodified, over the emulator's serial port."""
    ik = pytest.importorskip("instruments")
    u = pytest.importorskip("instruments.units").ureg
    emu = CC1Emulator(name="cc1", firmware=firmware)
    ep = emulator_host.add(emu)
    cc = ik.qubitekk.CC1.open_serial(ep.address, 19200, timeout=1)
    try:
        assert cc.firmware == parse_firmware("Firmware v" + firmware)
        cc.window = 3 * u.ns
        assert cc.window == 3 * u.ns
        cc.delay = 4 * u.ns
        assert cc.delay == 4 * u.ns
        cc.dwell_time = 2 * u.s
        assert cc.dwell_time == 2 * u.s  # old firmware reports ms; InstrumentKit divides
        cc.gate = True
        assert cc.gate is True and emu.gate
        cc.subtract = True
        assert cc.subtract is True and emu.subtract
        cc.trigger_mode = cc.TriggerMode.start_stop
        assert cc.trigger_mode == cc.TriggerMode.start_stop
        cc.clear_counts()
        assert [cc.channel[i].count for i in range(3)] == [0, 0, 0]  # nothing wired
        assert emu.window_ns == 3 and emu.delay_ns == 4 and emu.dwell_s == 2
    finally:
        cc._file._conn.close()  # (InstrumentKit's close() calls a socket-only shutdown())


# --- window and delay move the physics -----------------------------------------------------


async def test_coincidences_follow_pairs_window_and_delay(emulator_host: EmulatorHost) -> None:
    import math

    from qhil.emulators.world import World
    from qhil.emulators.world.config import load_world_file

    world = World(load_world_file("tests/instruments/data/misc_bench.toml"), seed=3)
    emu = CC1Emulator(name="cc1", world=world, inputs=["lab.cc_a", "lab.cc_b"])
    ep = emulator_host.add(emu)
    z = 3.2905  # two-sided 99.9 %
    t = 0.1
    async with CC1.open(ep.resource) as cc:
        await cc.window_ns.set(7)
        peak = await cc.acquire(t)
        s1, s2 = peak.singles
        rate = world.truth.pair_rate_hz("lab.pairs")
        # Pairs detected at both inputs: C = R eta_a eta_b T = S1 S2 / (R T), plus accidentals.
        expected = s1 * s2 / (rate * t) + s1 * s2 * 14e-9 / t
        sigma = math.sqrt(expected + expected**2 * (1 / s1 + 1 / s2))
        assert abs(peak.coincidences - expected) < z * sigma, (peak, expected)
        # Window [12, 16] ns away from the pair peak: accidentals S1 S2 (2w) / T only.
        await cc.delay_ns.set(14)
        await cc.window_ns.set(2)
        off = await cc.acquire(t)
        acc = off.singles[0] * off.singles[1] * 4e-9 / t
        assert abs(off.coincidences - acc) < z * math.sqrt(acc) + 1, (off, acc)
        assert off.coincidences < peak.coincidences / 20
