"""HP 8156A attenuator: byte-exact protocol (docs/protocols/hp-8156a.md) both ways, faults.

Reply bytes are the ones captured from a real 8156A (``+2.50000000E+000``,
``+1.31000000E-006``, ``High Performance,0,0``) and the manual's formats; the
driver's headers are the long forms, the clients' short and lower-case forms are
fed to the emulator too.
"""

from __future__ import annotations

import pytest

from qhil.drivers.hp.hp8156a import HP8156A
from qhil.drivers.roles import Attenuator
from qhil.emulators.hp.hp8156a import HP8156AEmulator, nr3
from qhil.emulators.server import EmulatorHost
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

NO_ERROR = (b":SYSTem:ERRor?\n", b'0,"No error"\n')


async def _set_then_get_attenuation(d: HP8156A) -> float:
    await d.set_attenuation_db(2.5)
    return await d.attenuation_db()


async def _open_shutter(d: HP8156A) -> bool:
    await d.set_output(True)
    return await d.shutter_open.get()


CASES = [
    ProtocolCase(
        "idn",
        lambda d: d.identity(),
        [(b"*IDN?\n", b"HEWLETT-PACKARD,HP8156A,0,1.00\n")],
        "HEWLETT-PACKARD,HP8156A,0,1.00",
    ),
    ProtocolCase(
        "attenuation",
        _set_then_get_attenuation,
        [
            (b":INPut:ATTenuation 2.500\n", b""),
            NO_ERROR,
            (b":INPut:ATTenuation?\n", b"+2.50000000E+000\n"),
        ],
        2.5,
    ),
    ProtocolCase(
        "attenuation max",
        lambda d: d.attenuation_limit.get(which="max"),
        [(b":INPut:ATTenuation? MAXimum\n", b"+6.00000000E+001\n")],
        60.0,
    ),
    ProtocolCase(
        "wavelength",
        lambda d: d.wavelength_nm.get(),
        [(b":INPut:WAVelength?\n", b"+1.31000000E-006\n")],
        1310.0,
    ),
    ProtocolCase(
        "wavelength set in metres",
        lambda d: d.wavelength_nm.set(1550),
        [(b":INPut:WAVelength 1.550000E-06\n", b""), NO_ERROR],
    ),
    ProtocolCase(
        "offset",
        lambda d: d.offset.get(),
        [(b":INPut:OFFSet?\n", b"+0.00000000E+000\n")],
        0.0,
    ),
    ProtocolCase(
        "shutter",
        _open_shutter,
        [(b":OUTPut 1\n", b""), NO_ERROR, (b":OUTPut?\n", b"1\n")],
        True,
    ),
    ProtocolCase(
        "shutter closed at power-on",
        lambda d: d.shutter_open.get(),
        [(b":OUTPut?\n", b"0\n")],
        False,
    ),
    ProtocolCase("options", lambda d: d.options.get(), [(b"*OPT?\n", b"High Performance,0,0\n")]),
    ProtocolCase("errors", lambda d: d.check_errors(), [NO_ERROR]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(HP8156A, case.exchanges) as drv:
        result = await case.call(drv)
    if isinstance(case.result, float):
        assert result == pytest.approx(case.result, rel=1e-12)
    elif case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(HP8156AEmulator(), case.exchanges)


async def test_emulator_takes_the_clients_spellings() -> None:
    # Short forms, lower case, units, MIN/MAX: as python-ivi, LabExT and user scripts send them.
    await run_on_emulator(
        HP8156AEmulator(),
        [
            (b":INP:ATT 32.15\n", b""),
            (b":INP:ATT?\n", b"+3.21500000E+001\n"),
            (b":inp:att 10dB\n", b""),
            (b"input:attenuation?\n", b"+1.00000000E+001\n"),
            (b":INPUT:ATT 1.200 DB\n", b""),
            (b":INP:ATT? MIN\n", b"+0.00000000E+000\n"),
            (b"input:attenuation 1.500000e+01\n", b""),
            (b":inp:att?\n", b"+1.50000000E+001\n"),
            (b":INP:WAV 1490NM\n", b""),
            (b":inp:wav?\n", b"+1.49000000E-006\n"),
            (b"input:wavelength 1.550000e-06\n", b""),
            (b":INP:WAV?\n", b"+1.55000000E-006\n"),
            (b":outp on\n", b""),
            (b":OUTP:STAT?\n", b"1\n"),
            (b"output:state 0\n", b""),
            (b"output:state?\n", b"0\n"),
            (b":INP:ATT MAX\n", b""),
            (b":INP:ATT?;:OUTP?\n", b"+6.00000000E+001;0\n"),
            (b":SYST:ERR?\n", b'0,"No error"\n'),
        ],
    )


async def test_offset_moves_the_attenuation_factor_not_the_filter() -> None:
    emu = HP8156AEmulator()
    await run_on_emulator(
        emu,
        [
            (b":INP:ATT 10\n", b""),
            (b":INP:OFFS 4.123dB\n", b""),
            (b":INP:ATT?\n", b"+1.41230000E+001\n"),
            (b":INP:ATT? MIN\n", b"+4.12300000E+000\n"),
            (b":INP:ATT 3\n", b""),  # below the offset: filter would be negative
            (b":SYST:ERR?\n", b'-222,"Data out of range"\n'),
        ],
    )
    assert emu.filter_db == 10.0


async def test_errors_are_queued_and_status_byte_has_no_queue_bit() -> None:
    await run_on_emulator(
        HP8156AEmulator(),
        [
            (b"err?\n", b""),  # python-ivi's error query: not an 8156A header
            (b":INP:ATT 5 NM\n", b""),
            (b":INP:WAV 900NM\n", b""),
            (b"*STB?\n", b"0\n"),
            (b":SYST:ERR?\n", b'-113,"Undefined header"\n'),
            (b":SYST:ERR?\n", b'-131,"Invalid suffix"\n'),
            (b":SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b":SYST:ERR?\n", b'0,"No error"\n'),
            (b"*ESR?\n", b"176\n"),  # power-on 128 + command error 32 + execution error 16
        ],
    )


async def test_instrument_error_carries_code_and_text() -> None:
    exchanges = [
        (b":INPut:ATTenuation 70.000\n", b""),
        (b":SYSTem:ERRor?\n", b'-222,"Data out of range"\n'),
        NO_ERROR,
    ]
    async with expected_protocol(HP8156A, exchanges) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.set_attenuation_db(70)
    assert err.value.code == -222 and err.value.text == "Data out of range"
    assert err.value.command == ":INPut:ATTenuation 70.000"


@pytest.mark.parametrize(
    ("attr", "value"), [("attenuation", 200.0), ("wavelength_nm", 1000.0), ("offset", -120.0)]
)
async def test_out_of_range_refused_before_any_byte(attr: str, value: float) -> None:
    async with expected_protocol(HP8156A, []) as drv:
        with pytest.raises(ValidationError):
            await getattr(drv, attr).set(value)


def test_implements_the_attenuator_role_and_takes_gpib_resources() -> None:
    drv = HP8156A.open("GPIB0::28::INSTR")  # a lab address; nothing is opened yet
    assert isinstance(drv, Attenuator)
    assert drv.resource == "GPIB0::28::INSTR"
    drv.session.shutdown()


def test_nr3_format() -> None:
    assert nr3(2.5) == "+2.50000000E+000"
    assert nr3(1.31e-6) == "+1.31000000E-006"


async def test_driver_over_tcp_with_faults(emulator_host: EmulatorHost) -> None:
    emu = HP8156AEmulator(name="voa")
    ep = emulator_host.add(emu)
    async with HP8156A.open(ep.resource, timeout_s=0.5) as voa:
        await voa.set_attenuation_db(12.5)
        assert await voa.attenuation_db() == 12.5
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tout:
            await voa.wavelength_nm.get()
        assert tout.value.command == ":INPut:WAVelength?" and tout.value.termination == "\n"
        assert tout.value.resource == ep.resource
        emu.faults.error_next = (-222, "Data out of range")
        with pytest.raises(InstrumentError) as err:
            await voa.set_output(True)
        assert err.value.code == -222
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await voa.attenuation_db()
        assert await voa.attenuation_db() == 12.5  # reconnected by itself


# --- the attenuator moves the physics -------------------------------------------------------

BENCH = "tests/instruments/data/misc_bench.toml"
Z_999 = 3.2905  # two-sided 99.9 % normal quantile


async def test_attenuation_sets_the_mean_photon_number_and_the_counts(
    emulator_host: EmulatorHost,
) -> None:
    import math

    from qhil.emulators.world import World
    from qhil.emulators.world.config import load_world_file

    world = World(load_world_file(BENCH), seed=11)
    emu = HP8156AEmulator(name="voa", world=world, component="lab.voa")
    ep = emulator_host.add(emu)
    counter = world.counter(["lab.det_att"])
    rep, mu0, eta, dark, t = 1e6, 0.5, 0.2, 50.0, 0.2
    async with HP8156A.open(ep.resource) as voa:
        await voa.set_output(False)
        counter.seek_now()
        shut = int(counter.read(t).counts[0])
        # Shutter closed: dark counts only (Poisson, 99.9 % two-sided).
        assert abs(shut - dark * t) < Z_999 * math.sqrt(dark * t) + 1
        await voa.set_output(True)
        for db in (0.0, 3.0, 10.0):
            await voa.set_attenuation_db(db)
            mu = world.truth.mean_photon_numbers("lab.transmitter")[0]
            assert mu == pytest.approx(mu0 * 10 ** (-db / 10), rel=1e-9)
            counter.seek_now()
            n = int(counter.read(t).counts[0])
            # PHYSICS.md case 1: P_click = 1 - exp(-mu eta) per pulse, plus dark counts.
            expected = rep * t * (1 - math.exp(-mu * eta)) + dark * t
            assert abs(n - expected) < Z_999 * math.sqrt(expected), (db, n, expected)


@pytest.mark.parametrize(
    "command", [b":DISP:BRIG 0.5XY\n", b":INP:ATT 0.5e\n", b":INP:OFFS 1NM\n", b":INP:WAV 1.3THZ\n"]
)
async def test_unknown_suffix_is_invalid_and_changes_nothing(command: bytes) -> None:
    emu = HP8156AEmulator()
    before = (emu.brightness, emu.filter_db, emu.offset_db, emu.wavelength_nm)
    await run_on_emulator(emu, [(command, b""), (b":SYST:ERR?\n", b'-131,"Invalid suffix"\n')])
    assert (emu.brightness, emu.filter_db, emu.offset_db, emu.wavelength_nm) == before
