"""Santec TSL-570: byte-exact protocol (docs/protocols/santec-tsl570.md), driver and emulator."""

from __future__ import annotations

import pytest

from qhil.drivers.santec.tsl570 import TSL570
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import InstrumentError, ValidationError
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

# Bytes as the manual transcription and PyMeasure/QCoDeS captures show them (SCPI command set).
CASES = [
    ProtocolCase(
        "idn",
        lambda d: d.idn.get(),
        [(b"*IDN?\r", b"SANTEC,TSL-570,21020001,0026.0026.0011\r")],
        "SANTEC,TSL-570,21020001,0026.0026.0011",
    ),
    ProtocolCase(
        "wavelength?",
        lambda d: d.wavelength_nm.get(),
        [(b":WAVelength?\r", b"+1.55000000E-006\r")],
        1550.0,
    ),
    ProtocolCase(
        "wavelength=",
        lambda d: d.wavelength_nm.set(1550.0),
        [(b":WAVelength 1.55000000E-06\r", b""), (b":SYSTem:ERRor?\r", b'0,"No error"\r')],
    ),
    ProtocolCase(
        "wavelength min (SCPI query parameter)",
        lambda d: d.wavelength_limit_nm.get(which="min"),
        [(b":WAVelength? MINimum\r", b"+1.48000000E-006\r")],
        1480.0,
    ),
    ProtocolCase(
        "output?", lambda d: d.output_enabled.get(), [(b":POWer:STATe?\r", b"+0\r")], False
    ),
    ProtocolCase(
        "power unit?", lambda d: d.power_unit.get(), [(b":POWer:UNIT?\r", b"+0\r")], "dBm"
    ),
    ProtocolCase(
        "command set?",
        lambda d: d.command_set.get(),
        [(b":SYSTem:COMMunicate:CODe?\r", b"+1\r")],
        "scpi",
    ),
    ProtocolCase(
        "errors drained", lambda d: d.check_errors(), [(b":SYSTem:ERRor?\r", b'0,"No error"\r')]
    ),
    ProtocolCase(
        "alerts", lambda d: d.alerts.get(), [(b":SYSTem:ALERt?\r", b"No alerts.\r")], "No alerts."
    ),
    ProtocolCase(
        "sweep speed?",
        lambda d: d.sweep_speed.get(),
        [(b":WAVelength:SWEep:SPEed?\r", b"+10.0\r")],
        10,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(TSL570, case.exchanges) as drv:
        result = await case.call(drv)
    if case.result is not None:
        assert (
            result == pytest.approx(case.result)
            if isinstance(case.result, float)
            else result == case.result
        )


@pytest.mark.parametrize("case", [c for c in CASES if c.emulator_exact], ids=lambda c: c.id)
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    emu = TSL570Emulator(command_set="scpi")
    await run_on_emulator(emu, case.exchanges)


async def test_connect_selects_the_scpi_command_set() -> None:
    no_error = (b":SYSTem:ERRor?\r", b'0,"No error"\r')
    # A clean start first (read what another client left, *CLS), then the command set.
    exchanges = [
        no_error,
        (b"*CLS\r", b""),
        no_error,
        (b":SYSTem:COMMunicate:CODe 1\r", b""),
        no_error,
    ]
    async with expected_protocol(TSL570, exchanges, connect=True):
        pass


async def test_legacy_command_set_formats() -> None:
    emu = TSL570Emulator(command_set="legacy")
    await run_on_emulator(
        emu,
        [
            (b":WAV?\r", b"1550.0000\r"),
            (b":POW:STAT?\r", b"0\r"),
            (b":WAV:SWE:SPE?\r", b"10.0\r"),
            (b":WAV:FREQ?\r", b"193.41449\r"),
        ],
    )
    # Legacy numbers carry no unit: a suffix is refused, the wavelength unchanged.
    await run_on_emulator(
        emu,
        [
            (b":WAV 1560nm\r", b""),
            (b":SYST:ERR?\r", b'-148,"Character data not allowed"\r'),
            (b":WAV 1560\r", b""),
            (b":WAV?\r", b"1560.0000\r"),
        ],
    )


async def test_out_of_range_is_refused_before_any_byte() -> None:
    async with expected_protocol(TSL570, []) as drv:
        with pytest.raises(ValidationError, match="1480"):
            await drv.wavelength_nm.set(1700)


async def test_instrument_error_carries_code_and_text() -> None:
    exchanges = [
        (b":POWer:STATe 1\r", b""),
        (b":SYSTem:ERRor?\r", b'-222,"Data out of range"\r'),
        (b":SYSTem:ERRor?\r", b'0,"No error"\r'),
    ]
    async with expected_protocol(TSL570, exchanges) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.output_enabled.set(True)
    assert err.value.code == -222 and err.value.text == "Data out of range"
    assert err.value.command == ":POWer:STATe 1"


async def test_compound_commands_and_relative_paths() -> None:
    emu = TSL570Emulator(command_set="scpi")
    await run_on_emulator(
        emu, [(b":POW:STAT 1;STAT?;:WAV 1560nm;:WAV?\r", b"+1;+1.56000000E-006\r")]
    )


async def test_reset_restores_settings_and_clears_the_error_queue() -> None:
    # The TSL's *RST clears the error queue (manual via QMI and the vendor class).
    emu = TSL570Emulator(command_set="legacy")
    await run_on_emulator(
        emu,
        [
            (b":WAV 1600\r", b""),
            (b"BOGUS\r", b""),
            (b"*RST\r", b""),
            (b":WAV?\r", b"1550.0000\r"),
            (b"SYST:ERR?\r", b'0,"No error"\r'),
        ],
    )


@pytest.mark.parametrize(("start", "other"), [("scpi", b"0"), ("legacy", b"1")])
async def test_command_set_is_a_system_setting_that_survives_reset(
    start: str, other: bytes
) -> None:
    emu = TSL570Emulator(command_set=start)
    chosen = b"0" if other == b"0" else b"+1"  # the reply is in the chosen set's format
    await run_on_emulator(
        emu,
        [
            (b":SYST:COMM:COD " + other + b"\r", b""),
            (b"*RST\r", b""),
            (b":SYST:COMM:COD?\r", chosen + b"\r"),
        ],
    )
    emu.reset()  # a power cycle keeps it too
    await run_on_emulator(emu, [(b":SYST:COMM:COD?\r", chosen + b"\r")])


async def test_driver_reads_the_wavelength_right_after_a_reset(emulator_host: EmulatorHost) -> None:
    ep = emulator_host.add(TSL570Emulator(command_set="legacy"))
    async with TSL570.open(ep.resource) as laser:  # connect selects the SCPI set
        await laser.set_wavelength_nm(1550.5)
        await laser.reset()
        assert await laser.command_set.get() == "scpi"
        assert await laser.wavelength() == 1550.0
        await laser.set_wavelength_nm(1560.0)
        assert await laser.wavelength() == 1560.0


# --- numbers with units (review #6) ---


async def test_scpi_power_suffixes_convert_to_the_power_unit() -> None:
    emu = TSL570Emulator(command_set="scpi")
    await run_on_emulator(
        emu,
        [
            (b":POW 10MW\r", b""),  # dBm unit: 10 mW is +10 dBm
            (b":POW?\r", b"+1.00000000E+001\r"),
            (b":POW 5DBM\r", b""),
            (b":POW?\r", b"+5.00000000E+000\r"),
            (b":POW 1UW\r", b""),  # -30 dBm: below the -15 dBm floor, refused
            (b":POW?\r", b"+5.00000000E+000\r"),
            (b":POW:UNIT 1\r", b""),
            (b":POW 2500UW\r", b""),  # mW unit: 2.5 mW
            (b":POW?\r", b"+2.50000000E+000\r"),
            (b":POW 3 dBm\r", b""),  # 3 dBm = 1.995 mW
            (b":POW?\r", b"+1.99526231E+000\r"),
            (b":SYST:ERR?\r", b'-222,"Data out of range"\r'),
            (b":SYST:ERR?\r", b'0,"No error"\r'),
        ],
    )


@pytest.mark.parametrize(
    "command",
    [b":POW 1XY\r", b":POW 0.5e\r", b":WAV 1550XM\r", b":FREQ 193NM\r", b":POW:ATT 5NM\r"],
)
async def test_scpi_unknown_suffix_is_invalid_and_changes_nothing(command: bytes) -> None:
    emu = TSL570Emulator(command_set="scpi")
    before = (emu.power_setpoint, emu.wavelength, emu.attenuation)
    await run_on_emulator(emu, [(command, b""), (b":SYST:ERR?\r", b'-131,"Invalid suffix"\r')])
    assert (emu.power_setpoint, emu.wavelength, emu.attenuation) == before


async def test_scpi_length_frequency_and_db_suffixes() -> None:
    emu = TSL570Emulator(command_set="scpi")
    await run_on_emulator(
        emu,
        [
            (b":WAV 1.5505UM\r", b""),
            (b":WAV?\r", b"+1.55050000E-006\r"),
            (b":FREQ 193.41449THZ\r", b""),
            (b":WAV?\r", b"+1.55000000E-006\r"),
            (b":POW:ATT 7.5DB\r", b""),
            (b":POW:ATT?\r", b"+7.50000000E+000\r"),
            (b":SYST:ERR?\r", b'0,"No error"\r'),
        ],
    )


@pytest.mark.parametrize("command", [b":POW 3MW\r", b":POW:ATT 5DB\r", b":WAV:SWE:DWEL 1S\r"])
async def test_legacy_numbers_take_no_unit_at_all(command: bytes) -> None:
    emu = TSL570Emulator(command_set="legacy")
    before = (emu.power_setpoint, emu.attenuation, emu.sweep["dwell"])
    await run_on_emulator(
        emu, [(command, b""), (b":SYST:ERR?\r", b'-148,"Character data not allowed"\r')]
    )
    assert (emu.power_setpoint, emu.attenuation, emu.sweep["dwell"]) == before


# --- what the open-source clients send at open (review #9) ---

IDN = (b"*IDN?\r", b"SANTEC,TSL-570,21020001,0026.0026.0011\r")


async def test_qcodes_init_sequence_is_answered() -> None:
    # QCoDeS contrib SantecTSL.__init__ (docs/protocols/santec-tsl570.md; the frequency sweep
    # range queries are from its newer revision 58657110): every query must get its line.
    await run_on_emulator(
        TSL570Emulator(command_set="legacy"),
        [
            (b":SYSTem:COMMunicate:CODe 1\r", b""),
            IDN,
            (b":WAVelength? MINimum\r", b"+1.48000000E-006\r"),
            (b":WAVelength? MAXimum\r", b"+1.64000000E-006\r"),
            (b":WAVelength:FREQuency? MINimum\r", b"+1.82800280E+014\r"),
            (b":WAVelength:FREQuency? MAXimum\r", b"+2.02562470E+014\r"),
            (b":POWer? MINimum\r", b"-1.50000000E+001\r"),
            (b":POWer? MAXimum\r", b"+1.30000000E+001\r"),
            (b":WAV:SWE:RANG:MIN?\r", b"+1.48200000E-006\r"),
            (b":WAV:SWE:RANG:MAX?\r", b"+1.64000000E-006\r"),
            (b":FREQuency:SWEep:RANGe:MINimum?\r", b"+1.82800280E+014\r"),
            (b":FREQuency:SWEep:RANGe:MAXimum?\r", b"+2.02289110E+014\r"),
            IDN,
            (b":SYSTem:ERRor?\r", b'0,"No error"\r'),
        ],
    )


async def test_qmi_open_sequence_is_answered_in_legacy_mode() -> None:
    # QMI Santec_Tsl570.open(): wavelength and frequency limits (Legacy syntax), power unit.
    await run_on_emulator(
        TSL570Emulator(command_set="legacy"),
        [
            (b":WAV:MIN?\r", b"1480.0000\r"),
            (b":WAV:MAX?\r", b"1640.0000\r"),
            (b":WAV:FREQ:MIN?\r", b"182.80028\r"),
            (b":WAV:FREQ:MAX?\r", b"202.56247\r"),
            (b":POW:UNIT?\r", b"0\r"),
            (b":POW:MIN?\r", b"-15.00\r"),
            (b":POW:MAX?\r", b"13.00\r"),
            (b":SYST:ERR?\r", b'0,"No error"\r'),
        ],
    )


async def test_power_limits_follow_the_power_unit() -> None:
    emu = TSL570Emulator(command_set="scpi")
    await run_on_emulator(
        emu,
        [
            (b":POW:UNIT 1\r", b""),
            (
                b":POW? MIN;:POW? MAX;:POW:MIN?\r",
                b"+4.00000000E-002;+2.00000000E+001;+4.00000000E-002\r",
            ),
            (b":POW MIN\r", b""),
            (b":POW?\r", b"+4.00000000E-002\r"),
            (b":POW:UNIT 0;:POW MAX;:POW?\r", b"+1.30000000E+001\r"),
            (b":POW DEF;:POW?\r", b"+0.00000000E+000\r"),
            (b":SYST:ERR?\r", b'0,"No error"\r'),
        ],
    )


LIMIT_CASES = [
    ProtocolCase(
        "power min (SCPI query parameter)",
        lambda d: d.power_limit.get(which="min"),
        [(b":POWer? MINimum\r", b"-1.50000000E+001\r")],
        -15.0,
    ),
    ProtocolCase(
        "frequency max (SCPI query parameter)",
        lambda d: d.frequency_limit_thz.get(which="max"),
        [(b":FREQuency? MAXimum\r", b"+2.02562470E+014\r")],
        202.56247,
    ),
    ProtocolCase(
        "frequency min (Legacy syntax)",
        lambda d: d.frequency_min_thz.get(),
        [(b":FREQuency:MINimum?\r", b"+1.82800280E+014\r")],
        182.80028,
    ),
    ProtocolCase(
        "power max (Legacy syntax)",
        lambda d: d.power_max.get(),
        [(b":POWer:MAXimum?\r", b"+1.30000000E+001\r")],
        13.0,
    ),
    ProtocolCase(
        "frequency sweep range max",
        lambda d: d.sweep_range_max_thz.get(),
        [(b":FREQuency:SWEep:RANGe:MAXimum?\r", b"+2.02289110E+014\r")],
        202.28911,
    ),
]


@pytest.mark.parametrize("case", LIMIT_CASES, ids=[c.id for c in LIMIT_CASES])
async def test_limit_queries_both_ways(case: ProtocolCase) -> None:
    async with expected_protocol(TSL570, case.exchanges) as drv:
        assert await case.call(drv) == pytest.approx(case.result, rel=1e-9)
    await run_on_emulator(TSL570Emulator(command_set="scpi"), case.exchanges)


async def test_legacy_sweep_step_has_three_decimals() -> None:
    await run_on_emulator(
        TSL570Emulator(command_set="legacy"),
        [(b":WAV:SWE:STEP?\r", b"0.100\r"), (b":WAV:SWE:STEP 0.0125;STEP?\r", b"0.013\r")],
    )


@pytest.mark.parametrize("spelling", ["SCPI", "Legacy", "scpi"])
def test_command_set_option_takes_either_case(spelling: str) -> None:
    assert TSL570Emulator(command_set=spelling).scpi_mode == (spelling.lower() == "scpi")


@pytest.mark.parametrize("bad", ["scip", "1", "", "SCPI "])
def test_command_set_option_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError, match=r"command_set must be 'legacy' or 'scpi'"):
        TSL570Emulator(command_set=bad)
