"""Thorlabs PM100D power meter: byte-exact protocol both ways, the clients' spellings,
errors, and the world's physics behind its readings (power of the light the pattern makes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qhil.drivers.roles import PowerMeter
from qhil.drivers.thorlabs.pm100d import PM100D
from qhil.emulators.server import EmulatorHost
from qhil.emulators.thorlabs.pm100d import PM100DEmulator
from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_config
from qhil.emulators.world.power_meter import photon_energy_j
from qhil.errors import ConfigError, InstrumentError
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

NO_ERROR = (b":SYSTem:ERRor?\n", b'0,"No error"\n')
IDN = b"Thorlabs,PM100D,P0012345,2.7.0"


CASES = [
    ProtocolCase("idn", lambda d: d.identity(), [(b"*IDN?\n", IDN + b"\n")], IDN.decode()),
    ProtocolCase(
        "sensor",
        lambda d: d.sensor_idn.get(),
        [(b":SYSTem:SENSor:IDN?\n", b"S155C,220101001,01-Jan-2026,1,18,289\n")],
        "S155C,220101001,01-Jan-2026,1,18,289",
    ),
    ProtocolCase(
        "wavelength set",
        lambda d: d.set_wavelength_nm(1550),
        [(b":SENSe:CORRection:WAVelength 1550.0\n", b""), NO_ERROR],
    ),
    ProtocolCase(
        "wavelength",
        lambda d: d.wavelength_nm.get(),
        [(b":SENSe:CORRection:WAVelength?\n", b"1.550000E+03\n")],
        1550.0,
    ),
    ProtocolCase(
        "wavelength max",
        lambda d: d.wavelength_limit_nm.get(which="max"),
        [(b":SENSe:CORRection:WAVelength? MAXimum\n", b"1.700000E+03\n")],
        1700.0,
    ),
    ProtocolCase(
        "averaging",
        lambda d: d.set_averaging(300),
        [(b":SENSe:AVERage:COUNt 300\n", b""), NO_ERROR],
    ),
    ProtocolCase(
        "averaging at power-on",
        lambda d: d.average_count.get(),
        [(b":SENSe:AVERage:COUNt?\n", b"1\n")],
        1,
    ),
    ProtocolCase(
        "auto range",
        lambda d: d.auto_range.get(),
        [(b":SENSe:POWer:RANGe:AUTO?\n", b"1\n")],
        True,
    ),
    ProtocolCase(
        "unit",
        lambda d: d.power_unit.set("W"),
        [(b":SENSe:POWer:UNIT W\n", b""), NO_ERROR],
    ),
    ProtocolCase(
        "configure", lambda d: d.configure_power(), [(b":CONFigure:POWer\n", b""), NO_ERROR]
    ),
    ProtocolCase("initiate", lambda d: d.initiate(), [(b":INITiate\n", b""), NO_ERROR]),
    ProtocolCase(
        "dark power",
        lambda d: d.power_w(),
        [(b":MEASure:POWer?\n", b"1.234567E-09\n")],
        1.234567e-9,
        emulator_exact=False,
    ),
    ProtocolCase(
        "zero", lambda d: d.zero_dark(), [(b":SENSe:CORRection:COLLect:ZERO\n", b""), NO_ERROR]
    ),
    ProtocolCase("errors", lambda d: d.check_errors(), [NO_ERROR]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(PM100D, case.exchanges) as drv:
        result = await case.call(drv)
    if isinstance(case.result, float):
        assert result == pytest.approx(case.result, rel=1e-12)
    elif case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", [c for c in CASES if c.emulator_exact], ids=lambda c: c.id)
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(PM100DEmulator(), case.exchanges)


async def test_connect_selects_watts() -> None:
    exchanges = [NO_ERROR, (b"*CLS\n", b""), NO_ERROR, (b":SENSe:POWer:UNIT W\n", b""), NO_ERROR]
    async with expected_protocol(PM100D, exchanges, connect=True) as drv:
        assert isinstance(drv, PowerMeter)


async def test_emulator_takes_the_clients_spellings() -> None:
    # Short and long forms as PyMeasure and the ThorlabsPM100 package send them.
    await run_on_emulator(
        PM100DEmulator(),
        [
            (b"SENSE:CORR:WAV 1310\n", b""),
            (b"SENS:CORR:WAV?\n", b"1.310000E+03\n"),
            (b"SENS:CORR:WAV? MIN\n", b"8.000000E+02\n"),
            (b"sens:aver:coun 10\n", b""),
            (b"SENS:AVER:COUN?\n", b"10\n"),
            (b"SENS:AVER:COUN MAX\n", b""),
            (b"SENS:AVER:COUN?\n", b"100000\n"),
            (b"SENS:POW:RANG:AUTO 0\n", b""),
            (b"SENS:POW:DC:RANG:AUTO?\n", b"0\n"),
            (b"SYST:SENSOR:IDN?\n", b"S155C,220101001,01-Jan-2026,1,18,289\n"),
            (b"SYST:ERR?\n", b'0,"No error"\n'),
        ],
    )


async def test_out_of_range_wavelength_is_the_instruments_error() -> None:
    await run_on_emulator(
        PM100DEmulator(),
        [
            (b"SENS:CORR:WAV 2000\n", b""),
            (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b"SENS:CORR:WAV?\n", b"1.550000E+03\n"),
            (b"SENS:POW:FOO?\n", b""),
            (b"SYST:ERR?\n", b'-113,"Undefined header"\n'),
        ],
    )


async def test_driver_reports_the_instruments_error(emulator_host: EmulatorHost) -> None:
    ep = emulator_host.add(PM100DEmulator(name="pm"))
    async with PM100D.open(ep.resource) as pm:
        with pytest.raises(InstrumentError) as err:
            await pm.set_wavelength_nm(600.0)
    assert "-222" in str(err.value) and "Data out of range" in str(err.value)


# --- physics: the reading is the power of the light the pattern makes ---------------------

MUS = [0.6, 0.12, 0.0]
REP_RATE = 50e6


def meter_world(*, seed: int = 3, **meter: Any) -> World:
    table: dict[str, Any] = {
        "seed": seed,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": REP_RATE,
                        "mus": MUS,
                        "pattern": [0, 1, 2, 3] * 7 + [4, 5] * 2 + [8] * 2,  # 28 sig, 4 dec, 2 vac
                        "path": ["alice.det"],
                    },
                    "det": {"type": "detector", "efficiency": 0.1},
                    "pm": {"type": "power_meter", "source": "tx", **meter},
                }
            }
        },
    }
    return World(load_world_config(table, "test_thorlabs_pm100d"), mode="fast")


def expected_w(world: World, gain_db: float) -> float:
    mean_mu = (28 * MUS[0] + 4 * MUS[1] + 2 * MUS[2]) / 34
    return mean_mu * photon_energy_j(1550.0) * REP_RATE * 10 ** (gain_db / 10)


async def test_reading_is_the_patterns_average_power(emulator_host: EmulatorHost) -> None:
    world = meter_world(calibration_error_rel=0.02, noise_w=0.0, dark_offset_w=3e-12)
    ep = emulator_host.add(PM100DEmulator(name="pm", world=world, component="alice.pm"))
    want = expected_w(world, 30.0)  # ~2.3 nW
    async with PM100D.open(ep.resource) as pm:
        assert await pm.power_w() == pytest.approx(want * 1.02 + 3e-12, rel=1e-6)
        world.transmitter("alice.tx").set_pattern(np.full(100, 8, dtype=np.uint8))  # vacuum
        await pm.zero_dark()
        assert await pm.zero_w.get() == pytest.approx(3e-12, rel=1e-6)
        assert await pm.power_w() == pytest.approx(0.0, abs=1e-18)
        world.transmitter("alice.tx").set_pattern(np.full(100, 4, dtype=np.uint8))  # decoy only
        decoy = MUS[1] * photon_energy_j(1550.0) * REP_RATE * 1e3 * 1.02
        assert await pm.power_w() == pytest.approx(decoy, rel=1e-6)
        # The responsivity correction for the wrong wavelength scales the reading.
        await pm.set_wavelength_nm(1310.0)
        assert await pm.power_w() == pytest.approx(decoy * 1550 / 1310, rel=1e-6)
        await pm.power_unit.set("dBm")
        assert await pm.measure_power.get() == pytest.approx(
            10 * np.log10(decoy * 1550 / 1310 / 1e-3), abs=1e-4
        )


async def test_noise_averages_down_and_calibration_error_stays_in_the_stated_accuracy(
    emulator_host: EmulatorHost,
) -> None:
    errors = [meter_world(seed=s).component("alice.pm").calibration_error_rel for s in range(40)]
    assert max(np.abs(errors)) <= 0.05
    assert np.std(errors) > 0.01  # drawn per sensor, not one fixed value

    world = meter_world(calibration_error_rel=0.0, noise_w=1e-10, dark_offset_w=0.0)
    ep = emulator_host.add(PM100DEmulator(name="pm", world=world, component="alice.pm"))
    want = expected_w(world, 30.0)
    async with PM100D.open(ep.resource) as pm:
        one = [await pm.power_w() for _ in range(200)]
        await pm.set_averaging(100)
        hundred = [await pm.power_w() for _ in range(200)]
    # Sample std of 200 normal readings: within 25 % of sigma at far beyond 99.99 % confidence.
    assert np.std(one) == pytest.approx(1e-10, rel=0.25)
    assert np.std(hundred) == pytest.approx(1e-11, rel=0.25)
    assert np.mean(hundred) == pytest.approx(want, abs=5 * 1e-11 / np.sqrt(200))


async def test_sensor_without_1550_starts_on_the_heads_wavelength(
    emulator_host: EmulatorHost,
) -> None:
    # A silicon sensor (400-1100 nm): the head falls back to its minimum at reset; the
    # emulator reports and sets the head's wavelength (one value, not a copy of its own).
    world = meter_world(min_wavelength_nm=400.0, max_wavelength_nm=1100.0)
    head = world.component("alice.pm")
    ep = emulator_host.add(PM100DEmulator(name="pm", world=world, component="alice.pm"))
    async with PM100D.open(ep.resource) as pm:
        assert await pm.wavelength_nm.get() == pytest.approx(400.0)
        await pm.set_wavelength_nm(850.0)
        assert head.wavelength_nm == 850.0
        head.set_wavelength_nm(633.0)
        assert await pm.wavelength_nm.get() == pytest.approx(633.0)


def test_source_must_be_a_transmitter() -> None:
    with pytest.raises(ConfigError, match=r"components\.pm\.source: names 'det'"):
        meter_world(source="det")
