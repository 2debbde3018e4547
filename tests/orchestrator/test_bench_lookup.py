"""Bench runtime: instruments and roles by name, and where each one is reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from qhil.drivers.ozoptics.epc400 import EPC400
from qhil.drivers.roles import Detector, PhotonSource, PolarizationController, Role
from qhil.drivers.santec.tsl570 import TSL570
from qhil.emulators.bench import EmulatedBench
from qhil.errors import ConfigError
from qhil.orchestrator.addresses import needs_emulators, resolve_resources
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.bench_errors import BenchLookupError
from qhil.orchestrator.profile import Profile, load_profile

from ._bench_support import closed_port, write_profile


def _unconnected_bench(tmp_path: Path) -> tuple[Bench, Profile]:
    profile = load_profile(str(write_profile(tmp_path)))
    port = closed_port()
    # Drivers are created, never connected: lookup needs no instrument.
    addresses = {
        (n, i): f"TCPIP0::127.0.0.1::{port + k}::SOCKET"
        for k, (n, i, _) in enumerate(profile.instruments())
    }
    return Bench(profile, addresses), profile


async def test_instrument_lookup(tmp_path: Path) -> None:
    bench, _ = _unconnected_bench(tmp_path)
    laser = bench.instrument("alice", "laser")
    assert isinstance(laser, TSL570) and laser.name == "alice.laser"
    assert isinstance(bench.instrument("bob", "polctrl"), EPC400)
    assert bench.instrument("alice", "polctrl") is not bench.instrument("bob", "polctrl")
    with pytest.raises(BenchLookupError, match=r"no instrument bob\.laser") as caught:
        bench.instrument("bob", "laser")
    assert "alice.laser, alice.polctrl, bob.polctrl" in str(caught.value)
    await bench.close()


async def test_role_lookup(tmp_path: Path) -> None:
    bench, _ = _unconnected_bench(tmp_path)
    assert bench.role("alice", PhotonSource) is bench.instrument("alice", "laser")
    assert bench.role("bob", PolarizationController) is bench.instrument("bob", "polctrl")
    assert bench.role("alice", Role, name="polctrl") is bench.instrument("alice", "polctrl")
    with pytest.raises(BenchLookupError, match="no instrument playing PhotonSource"):
        bench.role("bob", PhotonSource)
    with pytest.raises(BenchLookupError, match="no instrument playing Detector") as caught:
        bench.role("alice", Detector)
    assert "laser (santec.tsl570), polctrl (ozoptics.epc400)" in str(caught.value)
    with pytest.raises(BenchLookupError, match="several instruments playing Role"):
        bench.role("alice", Role)
    with pytest.raises(BenchLookupError, match="no node 'carol'"):
        bench.role("carol", PhotonSource)
    with pytest.raises(TypeError):
        bench.role("alice", "PhotonSource")  # type: ignore[arg-type]
    await bench.close()


async def test_instrument_spec_timeout_reaches_the_session(tmp_path: Path) -> None:
    profile = load_profile(str(write_profile(tmp_path, laser_extra="timeout_s = 0.75")))
    addresses = {(n, i): "TCPIP0::127.0.0.1::1::SOCKET" for n, i, _ in profile.instruments()}
    bench = Bench(profile, addresses)
    assert bench.instrument("alice", "laser").session.timeout_s == 0.75
    assert bench.instrument("bob", "polctrl").session.timeout_s == EPC400.timeout_s
    await bench.close()


def test_addresses_resolve_only_emulated_instruments(tmp_path: Path) -> None:
    real = "TCPIP0::192.0.2.10::5000::SOCKET"
    profile = load_profile(str(write_profile(tmp_path, laser=real)))
    assert needs_emulators(profile)
    emu = {("alice", "polctrl"): "ASRL/a::INSTR", ("bob", "polctrl"): "ASRL/b::INSTR"}
    assert resolve_resources(profile, emu) == {
        ("alice", "laser"): real,
        ("alice", "polctrl"): "ASRL/a::INSTR",
        ("bob", "polctrl"): "ASRL/b::INSTR",
    }
    with pytest.raises(ConfigError) as caught:
        resolve_resources(profile, {("alice", "polctrl"): "ASRL/a::INSTR"})
    assert caught.value.field == "nodes.bob.instruments.polctrl.resource"
    assert caught.value.source == profile.source
    with pytest.raises(ConfigError, match="real address") as caught:
        resolve_resources(profile, {**emu, ("alice", "laser"): "TCPIP0::127.0.0.1::9::SOCKET"})
    assert caught.value.field == "nodes.alice.instruments.laser.resource"
    with pytest.raises(ConfigError, match=r"unknown instruments: carol\.x"):
        resolve_resources(profile, {**emu, ("carol", "x"): "ASRL/c::INSTR"})


def test_lab_profile_needs_no_emulators() -> None:
    lab = load_profile("lab_example")
    assert not needs_emulators(lab)
    resources = resolve_resources(lab)
    assert resources == {(n, i): s.resource for n, i, s in lab.instruments()}
    # An emulated bench of a lab profile serves nothing.
    with EmulatedBench(lab) as emulated:
        assert emulated.addresses() == {}


async def test_async_with_connects_configures_and_closes(tmp_path: Path) -> None:
    path = write_profile(tmp_path, alice_pc_extra="settings = { voltages_mv = [7, 0, 0, 0] }")
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated:
        async with Bench(profile, emulated.addresses(), emulated.extra_addresses()) as bench:
            assert bench.connected
            assert emulated.emulators[("alice", "polctrl")].voltages == [7, 0, 0, 0]
            pc = bench.role("alice", PolarizationController)
            assert await pc.voltages_mv() == [7, 0, 0, 0]
        assert not bench.connected
        assert all(not m.driver.session.is_open for m in bench.instruments if m.driver)
        assert "closed" in repr(bench)


async def test_async_with_closes_when_configure_fails(tmp_path: Path) -> None:
    path = write_profile(tmp_path, laser_extra="settings = { colour = 'red' }")
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated:
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        with pytest.raises(ConfigError, match=r"laser\.settings\.colour"):
            async with bench:
                raise AssertionError("not reached")
        assert not bench.connected
        assert all(not m.driver.session.is_open for m in bench.instruments if m.driver)
