"""The async transport over a real TCP socket, against the TSL-570 emulator."""

from __future__ import annotations

import asyncio
import socket

import pytest
import pyvisa

from qhil.drivers.santec.tsl570 import TSL570
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import (
    ConnectionLostError,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.transport import ExchangeLog, Framing, ReconnectPolicy, Session


@pytest.fixture(params=["asyncio", "pyvisa"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both ways of driving a raw socket: on the event loop, or through pyvisa-py."""
    return str(request.param)


@pytest.fixture
def tsl(emulator_host: EmulatorHost) -> tuple[TSL570Emulator, str]:
    emu = TSL570Emulator(name="laser", seed=3)
    return emu, emulator_host.add(emu).resource


def test_raw_pyvisa_idn_returns_santec_identity(tsl: tuple[TSL570Emulator, str]) -> None:
    _, resource = tsl
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(resource, write_termination="\r", read_termination="\r", timeout=2000)
    try:
        assert inst.query("*IDN?").startswith("SANTEC,TSL-570,")
        assert inst.query(":WAV?") == "1550.0000"  # Legacy set at power-on
    finally:
        inst.close()


async def test_driver_round_trip(tsl: tuple[TSL570Emulator, str], backend: str) -> None:
    emu, resource = tsl
    async with TSL570.open(resource, socket_backend=backend) as laser:
        await laser.set_wavelength_nm(1561.25)
        assert await laser.wavelength() == pytest.approx(1561.25)
        assert emu.wavelength == pytest.approx(1561.25)  # the setting reached the instrument
        assert emu.scpi_mode == 1  # the driver selected the SCPI set at connect


async def test_fifty_concurrent_queries_each_get_their_own_reply(
    tsl: tuple[TSL570Emulator, str],
    backend: str,
) -> None:
    _emu, resource = tsl
    async with TSL570.open(resource, socket_backend=backend) as laser:
        # Distinct replies per query kind; any interleaving would mismatch them.
        queries = {
            "idn": (laser.idn.get, "SANTEC,TSL-570,21020001,0026.0026.0011"),
            "wav": (laser.wavelength_nm.get, 1550.0),
            "min": (laser.wavelength_min_nm.get, 1480.0),
            "max": (laser.wavelength_max_nm.get, 1640.0),
            "alerts": (laser.alerts.get, "No alerts."),
        }
        keys = [list(queries)[i % len(queries)] for i in range(50)]
        results = await asyncio.gather(*(queries[k][0]() for k in keys))
    for k, r in zip(keys, results, strict=True):
        expected = queries[k][1]
        assert r == (pytest.approx(expected) if isinstance(expected, float) else expected), k


async def test_setter_and_its_error_check_are_one_unit(
    tsl: tuple[TSL570Emulator, str], backend: str
) -> None:
    """Concurrent setters: each one's SYST:ERR? must see only its own error."""
    _, resource = tsl
    async with TSL570.open(resource, socket_backend=backend) as laser:
        good = [laser.wavelength_nm.set(1500 + i) for i in range(10)]
        await asyncio.gather(*good)
        assert await laser.wavelength_nm.get() == pytest.approx(1509.0)


async def test_dropped_connection_then_reconnect(
    tsl: tuple[TSL570Emulator, str], backend: str
) -> None:
    emu, resource = tsl
    async with TSL570.open(
        resource, reconnect=ReconnectPolicy(attempts=5, initial_delay_s=0.01)
    ) as laser:
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError) as err:
            await laser.idn.get()
        assert resource in str(err.value) and "*IDN?" in str(err.value)
        # The next exchange reconnects by itself.
        assert (await laser.idn.get()).startswith("SANTEC")


async def test_stalled_reply_times_out_naming_resource_command_termination(
    tsl: tuple[TSL570Emulator, str],
    backend: str,
) -> None:
    emu, resource = tsl
    async with TSL570.open(resource, socket_backend=backend, timeout_s=0.3) as laser:
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as err:
            await laser.wavelength_nm.get()
        msg = str(err.value)
        assert resource in msg and ":WAVelength?" in msg and "'\\r'" in msg
        assert err.value.command == ":WAVelength?" and err.value.termination == "\r"
        # The session recovers for the next query.
        assert await laser.wavelength_nm.get() == pytest.approx(1550.0)


async def test_injected_error_reaches_driver_with_code_and_text(
    tsl: tuple[TSL570Emulator, str],
    backend: str,
) -> None:
    emu, resource = tsl
    async with TSL570.open(resource, socket_backend=backend) as laser:
        emu.faults.error_next = (-222, "Data out of range")
        with pytest.raises(InstrumentError) as err:
            await laser.power_setpoint.set(3.0)
        assert err.value.code == -222 and err.value.text == "Data out of range"


async def test_out_of_range_sends_nothing(tsl: tuple[TSL570Emulator, str], backend: str) -> None:
    _, resource = tsl
    log = ExchangeLog()
    async with TSL570.open(resource, socket_backend=backend, exchange_log=log) as laser:
        n = len(log)
        with pytest.raises(ValidationError):
            await laser.wavelength_nm.set(900.0)
        assert len(log) == n


async def test_unknown_resource_string_is_a_clear_error(backend: str) -> None:
    with pytest.raises(InstrumentConnectionError, match="not a VISA resource string"):
        Session("laser-on-the-bench")
    s = Session("TCPIP0::not a host name::5000::SOCKET", open_timeout_s=1, socket_backend=backend)
    with pytest.raises(InstrumentConnectionError, match="cannot open"):
        await s.open()


async def test_closed_port_is_a_clear_error_without_hanging(backend: str) -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Session(f"TCPIP0::127.0.0.1::{port}::SOCKET", open_timeout_s=1, socket_backend=backend)
    with pytest.raises(InstrumentConnectionError) as err:
        await asyncio.wait_for(s.open(), 5)
    assert str(port) in str(err.value)


async def test_wrong_read_termination_times_out_showing_what_arrived(
    tsl: tuple[TSL570Emulator, str],
    backend: str,
) -> None:
    _, resource = tsl
    s = Session(
        resource,
        Framing(write_termination="\r", read_termination="\n"),
        timeout_s=0.3,
        socket_backend=backend,
    )
    async with s:
        with pytest.raises(InstrumentTimeoutError) as err:
            await s.query("*IDN?")
    assert "'\\n'" in str(err.value)


async def test_exchange_log_replays_as_a_byte_exact_test(
    tsl: tuple[TSL570Emulator, str], backend: str, tmp_path
) -> None:
    from qhil.transport import ReplayIO

    _, resource = tsl
    log = ExchangeLog(resource)
    async with TSL570.open(resource, socket_backend=backend, exchange_log=log) as laser:
        await laser.set_wavelength_nm(1530.5)
        await laser.wavelength()
    path = tmp_path / "session.jsonl"
    log.save(path)
    replay = ReplayIO(ExchangeLog.load(path))
    async with TSL570.open("REPLAY", io=replay) as laser:
        await laser.set_wavelength_nm(1530.5)
        assert await laser.wavelength() == pytest.approx(1530.5)
    replay.assert_complete()
    # A driver that sends anything else fails the replay.
    replay = ReplayIO(ExchangeLog.load(path))
    async with TSL570.open("REPLAY", io=replay) as laser:
        with pytest.raises(AssertionError):
            await laser.set_wavelength_nm(1530.6)
