"""Bench runtime: profile settings reach the instruments, or fail naming field and file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from qhil.emulators.bench import EmulatedBench
from qhil.errors import ConfigError
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.bench_errors import BenchConfigureError
from qhil.orchestrator.profile import load_profile

from ._bench_support import write_profile


@asynccontextmanager
async def connected(path: Path) -> AsyncIterator[tuple[Bench, EmulatedBench]]:
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated:
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        await bench.connect(timeout_s=10)
        try:
            yield bench, emulated
        finally:
            await bench.close()


async def test_settings_reach_the_emulators(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        # Order matters: the setpoint is in the unit chosen just before it.
        laser_extra='settings = { wavelength_nm = 1549.25, power_unit = "mW", '
        "power_setpoint = 5.0 }",
        alice_pc_extra="settings = { voltages_mv = [100, -200, 300, -400] }",
        bob_pc_extra="settings = { voltage = { channel = 3, value = 1234 }, mode = 'dc' }",
    )
    async with connected(path) as (bench, emulated):
        laser = emulated.emulators[("alice", "laser")]
        alice_pc = emulated.emulators[("alice", "polctrl")]
        bob_pc = emulated.emulators[("bob", "polctrl")]
        assert laser.wavelength == 1550.0 and alice_pc.voltages == [0, 0, 0, 0]  # power-on
        await bench.configure()
        assert laser.wavelength == pytest.approx(1549.25)
        assert laser.power_unit == 1
        # 5 dBm converted to mW would be 3.16: the unit was set first, then 5 mW.
        assert laser.power_setpoint == pytest.approx(5.0)
        assert alice_pc.voltages == [100, -200, 300, -400]
        assert bob_pc.voltages == [0, 0, 1234, 0]
        assert bob_pc.mode == "DC"


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        (
            "settings = { wavelength_nm = 1551.0, wavelenght_nm = 1550.0 }",
            "wavelenght_nm",
            "unknown setting 'wavelenght_nm'",
        ),
        ("settings = { wavelength_nm = 1551.0, power = 3.0 }", "power", "read-only"),
        (
            "settings = { wavelength_nm = 1551.0, sweep_repeat = true }",
            "sweep_repeat",
            "an action, not a setting",
        ),
        ("settings = { wavelength_nm = 1700.0 }", "wavelength_nm", "1700.0 is not allowed"),
        (
            "settings = { wavelength_nm = 1551.0, power_unit = 'watts' }",
            "power_unit",
            "'watts' is not allowed",
        ),
    ],
)
async def test_bad_setting_is_a_config_error_and_nothing_is_sent(
    tmp_path: Path, extra: str, key: str, problem: str
) -> None:
    path = write_profile(tmp_path, laser_extra=extra, alice_pc_extra="settings = { mode = 'ac' }")
    async with connected(path) as (bench, emulated):
        with pytest.raises(ConfigError) as caught:
            await bench.configure()
        err = caught.value
        assert err.source == str(path)
        assert err.field == f"nodes.alice.instruments.laser.settings.{key}"
        assert problem in err.problem
        assert str(path) in str(err) and err.field in str(err)
        # Resolved before sending: neither the valid laser setting nor the other
        # instrument's setting reached an emulator.
        assert emulated.emulators[("alice", "laser")].wavelength == 1550.0
        assert emulated.emulators[("alice", "polctrl")].mode == "DC"


async def test_unknown_setting_lists_what_is_settable(tmp_path: Path) -> None:
    path = write_profile(tmp_path, bob_pc_extra="settings = { voltage_mv = 10 }")
    async with connected(path) as (bench, _):
        with pytest.raises(ConfigError) as caught:
            await bench.configure()
    assert caught.value.field == "nodes.bob.instruments.polctrl.settings.voltage_mv"
    settable = caught.value.problem.split("settable: ")[1].split(", ")
    assert {"voltage", "voltages_mv", "mode", "frequency"} <= set(settable)
    assert "voltages" not in settable  # a Measurement, read-only


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1234", "needs its argument(s) channel"),
        ("{ channel = 3 }", "needs its argument(s) channel"),
        ("{ channel = 9, value = 10 }", "9 is not allowed"),
    ],
)
async def test_control_with_arguments_needs_a_table(
    tmp_path: Path, value: str, problem: str
) -> None:
    path = write_profile(tmp_path, bob_pc_extra=f"settings = {{ voltage = {value} }}")
    async with connected(path) as (bench, _):
        with pytest.raises(ConfigError, match=r"settings\.voltage: ") as caught:
            await bench.configure()
    assert problem in caught.value.problem


async def test_role_method_refusal_names_the_field(tmp_path: Path) -> None:
    # set_voltages_mv refuses three values for four channels before sending.
    path = write_profile(
        tmp_path,
        alice_pc_extra="settings = { voltages_mv = [1, 2, 3] }",
        bob_pc_extra="settings = { voltages_mv = [5, 6, 7, 8] }",
    )
    async with connected(path) as (bench, emulated):
        with pytest.raises(BenchConfigureError) as caught:
            await bench.configure()
        assert emulated.emulators[("bob", "polctrl")].voltages == [5, 6, 7, 8]
        assert emulated.emulators[("alice", "polctrl")].voltages == [0, 0, 0, 0]
    err = caught.value
    assert list(err.errors) == ["alice.polctrl"] and err.succeeded == ["bob.polctrl"]
    inner = err.errors["alice.polctrl"]
    assert isinstance(inner, ConfigError)
    assert inner.field == "nodes.alice.instruments.polctrl.settings.voltages_mv"
    assert "4 channels, got 3" in str(err)


async def test_instrument_errors_while_configuring_are_gathered(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        laser_extra="settings = { wavelength_nm = 1548.0 }",
        alice_pc_extra="settings = { mode = 'ac' }",
        bob_pc_extra="settings = { mode = 'ac' }",
    )
    async with connected(path) as (bench, emulated):
        for key in (("alice", "polctrl"), ("bob", "polctrl")):
            emulated.emulators[key].faults.error_next = (1, "injected")
        with pytest.raises(BenchConfigureError) as caught:
            await bench.configure()
        assert emulated.emulators[("alice", "laser")].wavelength == pytest.approx(1548.0)
    err = caught.value
    assert sorted(err.errors) == ["alice.polctrl", "bob.polctrl"]
    assert err.succeeded == ["alice.laser"]
    assert "2 of 3 instruments failed to apply their settings" in str(err)
    assert str(err).count("InstrumentError") == 2


async def test_configure_needs_a_connected_bench(tmp_path: Path) -> None:
    profile = load_profile(str(write_profile(tmp_path)))
    fake: dict[tuple[str, str], Any] = {
        (n, i): "TCPIP0::127.0.0.1::1::SOCKET" for n, i, _ in profile.instruments()
    }
    bench = Bench(profile, fake)
    with pytest.raises(RuntimeError, match="not connected"):
        await bench.configure()
    with pytest.raises(RuntimeError, match="not connected"):
        await bench.identities()
    await bench.close()
