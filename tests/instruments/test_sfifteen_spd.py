"""S-Fifteen SPD avalanche-photodiode module: byte-exact protocol, faults, physics, S15lib.

Bytes from docs/protocols/s-fifteen-spd.md (S15lib ``SinglePhotonDetector``):
queries ``x?;``, setters ``x <str(float)>\\r\\n`` (silent unless refused), replies
CR LF. Each case runs against the driver (replay peer) and against the emulator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scipy.special import ndtr
from scipy.stats import poisson

from qhil.drivers.sfifteen.spd import SPD
from qhil.emulators.server import EmulatorHost
from qhil.emulators.sfifteen.spd import IDENTITY, SPDEmulator
from qhil.emulators.world import World, load_world_file
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

OK = b"loop?;"  # the driver's probe after every setter (loop is on at power-on)
IDN = IDENTITY.encode() + b"\r\n"

CASES = [
    ProtocolCase("identity", lambda d: d.identity(), [(b"*idn?;", IDN)], IDENTITY),
    ProtocolCase("bias?", lambda d: d.bias(), [(b"hvolt?;", b"120.000\r\n")], 120.0),
    ProtocolCase("set bias", lambda d: d.set_bias(118.5),
                 [(b"hvolt 118.5\r\n", b""), (OK, b"1\r\n")]),
    ProtocolCase("threshold?", lambda d: d.threshold_v.get(),
                 [(b"threshvolt?;", b"0.100\r\n")], 0.1),
    ProtocolCase("set threshold", lambda d: d.threshold_v.set(0.25),
                 [(b"threshvolt 0.25\r\n", b""), (OK, b"1\r\n")]),
    ProtocolCase("gate?", lambda d: d.gate_ms.get(), [(b"time?;", b"1000.000\r\n")], 1000.0),
    ProtocolCase("set gate", lambda d: d.gate_ms.set(250),
                 [(b"time 250.0\r\n", b""), (OK, b"1\r\n")]),
    ProtocolCase("temperature?", lambda d: d.temperature_c.get(),
                 [(b"temp?;", b"-20.000\r\n")], -20.0),
    ProtocolCase("set temperature", lambda d: d.temperature_setpoint_c.set(-25),
                 [(b"settemp -25.0\r\n", b""), (OK, b"1\r\n")]),
    ProtocolCase("loop off", lambda d: d.loop.set(False), [(b"loop 0\r\n", b""), (OK, b"0\r\n")]),
    ProtocolCase("peltier voltage?", lambda d: d.peltier_voltage.get(),
                 [(b"pvolt?;", b"3.000\r\n")], 3.0),
    ProtocolCase("loop constants?", lambda d: d.loop_i.get(), [(b"consti?;", b"0.100\r\n")], 0.1),
    ProtocolCase("delay?", lambda d: d.delay.get(), [(b"delay?;", b"0.000\r\n")], 0.0),
    ProtocolCase("save", lambda d: d.save(), [(b"save;", b"Settings saved\r\n")], "Settings saved"),
    ProtocolCase("counts in 0.1 s", lambda d: d.counts(0.1),
                 [(b"time 100.0\r\n", b""), (OK, b"1\r\n"), (b"counts?;", b"0\r\n")], [0]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(SPD, case.exchanges) as drv:
        result = await case.call(drv)
    if case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    # No world wired in: no light and no dark counts, power-on values of a bare module.
    await run_on_emulator(SPDEmulator(), case.exchanges)


async def test_emulator_takes_the_other_separators_too() -> None:
    emu = SPDEmulator()
    await run_on_emulator(emu, [(b"HVOLT 110;", b""), (b"hvolt?\r\n", b"110.000\r\n"),
                                (b"time 20;time?;", b"20.000\r\n")])  # fmt: skip


async def test_unknown_command_is_an_instrument_error() -> None:
    async with expected_protocol(SPD, [(b"bogus?;", b"Unknown command\r\n")]) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.ask("bogus?")
    assert (err.value.code, err.value.text) == ("Error", "Unknown command")
    await run_on_emulator(SPDEmulator(), [(b"bogus?;", b"Unknown command\r\n")])


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.set_bias(-5),
        lambda d: d.set_bias(float("nan")),
        lambda d: d.threshold_v.set(4.0),
        lambda d: d.counts(0.0),
        lambda d: d.counts(100.0),
    ],
    ids=["negative bias", "nan bias", "threshold", "zero gate", "gate too long"],
)
async def test_out_of_range_is_refused_before_any_byte(call: Callable[[SPD], Any]) -> None:
    async with expected_protocol(SPD, []) as drv:
        with pytest.raises(ValidationError):
            await call(drv)


async def test_faults_reach_the_driver_as_typed_errors(emulator_host: EmulatorHost) -> None:
    emu = SPDEmulator(name="spd")
    ep = emulator_host.add(emu)
    drv = SPD.open(ep.address, timeout_s=0.3)  # pyserial; the SPDC test goes through VISA
    try:
        assert await drv.bias() == 120.0
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await drv.bias()
        assert await drv.bias() == 120.0  # reconnected to the replugged port
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tmo:
            await drv.threshold_v.get()
        assert (tmo.value.resource, tmo.value.command) == (ep.address, "threshvolt?")
        assert tmo.value.termination == "\n"
        emu.faults.error_next = ("Error", "APD overcurrent")
        with pytest.raises(InstrumentError) as err:
            await drv.bias()
        assert (err.value.code, err.value.text, err.value.command) == (
            "Error",
            "APD overcurrent",
            "hvolt?",
        )
        assert await drv.bias() == 120.0
    finally:
        await drv.close()


# --- the driver moves the physics ---

WORLD_TOML = """
[world]
seed = 11
[world.nodes.lab.components.laser]
type = "weak_coherent_transmitter"
rep_rate_hz = 1e5
mus = [0.2]
path = ["lab.apd"]
[world.nodes.lab.components.apd]
type = "detector"
efficiency = 0.2
dark_count_rate_hz = 5000.0
dead_time_ns = 0.0
nominal_bias = 50.0
onset_bias = 45.0
max_bias = 80.0
efficiency_bias_scale = 2.0
dark_bias_scale = 1.5
pulse_amplitude_per_bias = 0.5
threshold_v = 0.05
temperature_c = -40.0
dark_doubling_c = 8.0
"""


def expected_counts(bias: float, threshold: float, temp_c: float, seconds: float) -> float:
    """Clicks from the world README's SPAD model, written out independently."""

    def gain(v: float) -> float:
        return 0.0 if v <= 45.0 else 1.0 - math.exp(-(v - 45.0) / 2.0)

    amp = (bias - 45.0) * 0.5
    passed = float(ndtr((amp - threshold) / (0.1 * amp)))
    eta = min(1.0, 0.2 * gain(bias) / gain(50.0)) * passed
    signal = 1e5 * (1.0 - math.exp(-0.2 * eta))
    dark = 5000.0 * math.exp((bias - 50.0) / 1.5) * 2.0 ** ((temp_c + 40.0) / 8.0) * passed
    return seconds * (signal + dark)


async def test_bias_threshold_and_temperature_move_the_counts(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """Counts through the driver at several settings against the model's expectation.

    Each count must lie in its two-sided 99.9 % Poisson interval (no dead time or
    afterpulsing in this world, so the count is Poisson). Lower bias or a higher
    threshold must give fewer counts, a warmer APD more dark counts.
    """
    path = tmp_path / "spd_world.toml"
    path.write_text(WORLD_TOML)
    world = World(load_world_file(path), seed=11, mode="fast")
    emu = SPDEmulator(name="spd", world=world, component="lab.apd")
    ep = emulator_host.add(emu)
    drv = SPD.open(ep.address)
    got = {}
    try:
        assert await drv.bias() == 50.0  # the world's detector is at its nominal bias
        for bias, threshold, temp in [
            (50.0, 0.05, -40.0),
            (47.0, 0.05, -40.0),
            (47.0, 0.9, -40.0),
            (50.0, 0.05, -32.0),
        ]:
            await drv.set_bias(bias)
            await drv.threshold_v.set(threshold)
            await drv.temperature_setpoint_c.set(temp)
            (n,) = await drv.counts(0.5)
            mean = expected_counts(bias, threshold, temp, 0.5)
            lo, hi = poisson.interval(0.999, mean)
            assert lo <= n <= hi, (bias, threshold, temp, n, mean)
            got[(bias, threshold, temp)] = n
        # The world refuses a bias beyond its detector's limit; the module keeps its setting.
        with pytest.raises(InstrumentError) as err:
            await drv.set_bias(90.0)
        assert err.value.text == "value out of range"
        assert await drv.bias() == 50.0
    finally:
        await drv.close()
    assert got[(50.0, 0.05, -40.0)] > got[(47.0, 0.05, -40.0)] > got[(47.0, 0.9, -40.0)]
    assert got[(50.0, 0.05, -32.0)] > got[(50.0, 0.05, -40.0)]


# --- fidelity: the vendor's own library, unmodified, drives the emulator ---


@pytest.mark.fidelity
def test_s15lib_single_photon_detector_runs_the_emulator(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """S15lib's ``SinglePhotonDetector`` (pip: s15lib==0.3.0) on a world-backed module."""
    instruments = pytest.importorskip("S15lib.instruments")
    path = tmp_path / "spd_world.toml"
    path.write_text(WORLD_TOML)
    world = World(load_world_file(path), seed=12, mode="fast")
    emu = SPDEmulator(name="spd", world=world, component="lab.apd")
    ep = emulator_host.add(emu)
    dev = instruments.SinglePhotonDetector(ep.address)
    try:
        assert "SPD" in dev.identity()
        assert dev.hvolt == 50.0
        dev.hvolt = 48.0  # "hvolt 48.0\r\n", then 0.1 s
        assert dev.hvolt == 48.0 and world.detector("lab.apd").bias == 48.0
        dev.threshvolt = 0.2
        assert dev.threshvolt == 0.2
        n = dev.counts(0.2)  # "time 200.0\r\n", "counts?;" answered after the gate
        lo, hi = poisson.interval(0.999, expected_counts(48.0, 0.2, -40.0, 0.2))
        assert lo <= n <= hi
        assert dev.time == 200.0
        dev.temperature = -35  # settemp
        assert dev.settemperature == -35.0 and dev.temperature == -35.0
        dev.loop = 0
        dev.pvolt = 1.0  # manual peltier: 15 K below ambient
        assert dev.loop == 0 and dev.temperature == 10.0
        dev.delay = 5
        assert dev.delay == 5.0
        dev.hvolt = 95.0  # beyond the world's limit: refused (S15lib never reads the error)
        assert dev.hvolt == 48.0
        assert dev.save_settings() == "Settings saved"
        assert "hvolt" in dev.help()
    finally:
        dev._com.close()


def test_driver_is_a_detector() -> None:
    from qhil.drivers.roles import Detector

    assert isinstance(SPD.open("/dev/null", io=object()), Detector)  # type: ignore[arg-type]
