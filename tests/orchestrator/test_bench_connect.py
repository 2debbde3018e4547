"""Bench runtime: parallel connect, one gathered error, clean teardown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from qhil.drivers.instrument import Instrument
from qhil.emulators.bench import EmulatedBench
from qhil.errors import InstrumentConnectionError, InstrumentTimeoutError
from qhil.orchestrator.bench import Bench, open_bench
from qhil.orchestrator.bench_errors import BenchConnectError, ConnectTimeoutError
from qhil.orchestrator.profile import load_profile
from qhil.transport.visa_io import resource_manager

from ._bench_support import (
    closed_port,
    io_threads,
    open_fds,
    settle,
    silent_server,
    write_profile,
)


def _track_concurrency(bench: Bench) -> dict[str, int]:
    """Wrap every driver's connect to count how many are in flight at once."""
    stats = {"now": 0, "max": 0, "calls": 0}
    for member in bench.instruments:
        drv = member.driver
        assert drv is not None
        original = drv.connect

        async def connect(original: Any = original) -> None:
            stats["now"] += 1
            stats["calls"] += 1
            stats["max"] = max(stats["max"], stats["now"])
            try:
                await original()
            finally:
                stats["now"] -= 1

        drv.connect = connect  # type: ignore[method-assign]
    return stats


async def test_default_profile_connects_all_instruments_in_parallel() -> None:
    profile = load_profile("default")
    with EmulatedBench(profile) as emulated:
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        n = len(bench.instruments)
        assert n == len(profile.instruments()) >= 3
        stats = _track_concurrency(bench)
        await bench.connect(timeout_s=10)
        try:
            assert bench.connected
            # Sequential connecting would never have more than one in flight.
            assert stats["calls"] == n and stats["max"] == n
            drivers = [m.driver for m in bench.instruments]
            assert all(isinstance(d, Instrument) and d.session.is_open for d in drivers)
            ids = await bench.identities()
            assert list(ids) == [f"{node}.{name}" for node, name, _ in profile.instruments()]
            for m in bench.instruments:
                assert m.driver is not None
                assert ids[m.key] == await m.driver.identity()
            # Each identity came over the wire from that instrument's own emulator.
            for key in (("alice", "laser"), ("alice", "polctrl"), ("bob", "polctrl")):
                expected = emulated.emulators[key].describe()["identity"]
                assert ids[".".join(key)] == expected
        finally:
            await bench.close()
        assert not any(m.driver is not None and m.driver.session.is_open for m in bench.instruments)


async def test_two_unreachable_instruments_fail_in_one_message(tmp_path: Path) -> None:
    port = closed_port()
    refused = f"TCPIP0::127.0.0.1::{port}::SOCKET"
    path = write_profile(tmp_path, laser=refused, bob_pc="not-a-resource-string")
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated:
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        with pytest.raises(BenchConnectError) as caught:
            await bench.connect(timeout_s=10)
    err = caught.value
    assert set(err.errors) == {"alice.laser", "bob.polctrl"}
    assert err.succeeded == ["alice.polctrl"]
    assert all(isinstance(e, InstrumentConnectionError) for e in err.errors.values())
    text = str(err)
    lines = text.splitlines()
    assert str(path) in lines[0] and "2 of 3 instruments failed to connect" in lines[0]
    laser_line = next(line for line in lines if line.strip().startswith("alice.laser"))
    assert "santec.tsl570" in laser_line and refused in laser_line
    assert "InstrumentConnectionError" in laser_line and "cannot open" in laser_line
    bad_line = next(line for line in lines if line.strip().startswith("bob.polctrl"))
    assert "ozoptics.epc400" in bad_line and "not-a-resource-string" in bad_line
    assert "not a VISA resource string" in bad_line
    assert lines[-1].startswith("connected (and closed again): alice.polctrl")
    # The one that connected was closed again, and the bench cannot be reused.
    good = bench.instrument("alice", "polctrl")
    assert not good.session.is_open
    with pytest.raises(RuntimeError, match="closed"):
        await bench.connect()


@pytest.mark.parametrize(
    ("connect_timeout_s", "io_timeout_s", "expected"),
    [
        (0.2, 0.6, ConnectTimeoutError),  # the bench's deadline comes first
        (5.0, 0.2, InstrumentTimeoutError),  # the driver's own query times out first
    ],
)
async def test_hanging_instrument_is_reported_and_cleaned_up(
    tmp_path: Path, connect_timeout_s: float, io_timeout_s: float, expected: type[Exception]
) -> None:
    async with silent_server() as hanging:
        path = write_profile(tmp_path, laser=hanging, laser_extra=f"timeout_s = {io_timeout_s}")
        profile = load_profile(str(path))
        with EmulatedBench(profile) as emulated:
            bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
            with pytest.raises(BenchConnectError) as caught:
                await bench.connect(timeout_s=connect_timeout_s)
            resources = [m.resource for m in bench.instruments]
            # Teardown waited for the overrunning connect and closed its session.
            laser = bench.instrument("alice", "laser")
            assert not laser.session.is_open
            await settle(lambda: not io_threads(resources))
            assert io_threads(resources) == []
    err = caught.value
    assert list(err.errors) == ["alice.laser"]
    assert type(err.errors["alice.laser"]) is expected
    assert sorted(err.succeeded) == ["alice.polctrl", "bob.polctrl"]
    assert hanging in str(err)


async def test_close_after_partial_connect_leaves_no_sessions_threads_or_fds(
    tmp_path: Path,
) -> None:
    resource_manager("@py")  # the process-wide VISA manager is not the bench's to close
    path = write_profile(tmp_path, alice_pc=f"/dev/qhil-no-such-port-{closed_port()}")
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated:
        before = open_fds()
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        with pytest.raises(BenchConnectError) as caught:
            await bench.connect(timeout_s=10)
        assert list(caught.value.errors) == ["alice.polctrl"]
        assert sorted(caught.value.succeeded) == ["alice.laser", "bob.polctrl"]
        resources = [m.resource for m in bench.instruments]
        assert all(not m.driver.session.is_open for m in bench.instruments if m.driver)
        await settle(lambda: not io_threads(resources) and open_fds() <= before)
        assert io_threads(resources) == []
        assert open_fds() - before == set()
        await bench.close()  # a second close is harmless


async def test_cancelled_connect_tears_everything_down(tmp_path: Path) -> None:
    async with silent_server() as hanging:
        path = write_profile(tmp_path, laser=hanging, laser_extra="timeout_s = 0.3")
        profile = load_profile(str(path))
        with EmulatedBench(profile) as emulated:
            bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bench.connect(timeout_s=30), 0.1)
            resources = [m.resource for m in bench.instruments]
            assert not bench.connected
            assert all(not m.driver.session.is_open for m in bench.instruments if m.driver)
            await settle(lambda: not io_threads(resources))
            assert io_threads(resources) == []


def _emulator_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "qhil-emulators"]


async def test_open_bench_serves_connects_configures_and_stops(tmp_path: Path) -> None:
    before = len(_emulator_threads())
    path = write_profile(tmp_path, laser_extra="settings = { wavelength_nm = 1552.5 }")
    async with open_bench(path) as bench:
        assert bench.connected
        assert len(_emulator_threads()) == before + 1
        laser = bench.instrument("alice", "laser")
        assert await laser.wavelength_nm.get() == pytest.approx(1552.5)
        resources = [m.resource for m in bench.instruments]
    assert not bench.connected and not laser.session.is_open
    await settle(lambda: not io_threads(resources) and len(_emulator_threads()) == before)
    assert io_threads(resources) == []
    assert len(_emulator_threads()) == before


async def test_open_bench_failure_stops_the_emulators_too(tmp_path: Path) -> None:
    before = len(_emulator_threads())
    path = write_profile(tmp_path, bob_pc="garbage")
    with pytest.raises(BenchConnectError, match=r"bob\.polctrl"):
        async with open_bench(path):
            raise AssertionError("a bench that failed to connect must not be entered")
    await settle(lambda: len(_emulator_threads()) == before)
    assert len(_emulator_threads()) == before


async def test_open_bench_applies_overrides() -> None:
    async with open_bench(
        "default", ["nodes.alice.instruments.laser.settings.wavelength_nm=1547.75"]
    ) as bench:
        assert await bench.instrument("alice", "laser").wavelength_nm.get() == pytest.approx(
            1547.75
        )
