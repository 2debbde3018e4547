"""Connecting starts from a clean status: what another client left behind is reported, not blamed.

An SCPI instrument's error queue may hold another client's errors; a serial line may hold
another client's unread replies. Connecting reads and clears the first (``SYST:ERR?``
until ``0``, then ``*CLS``) and drains the second, with a warning naming the instrument.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import termios
import time

import pytest

from qhil.drivers.ozoptics.epc400 import EPC400
from qhil.drivers.santec.tsl570 import TSL570
from qhil.emulators.ozoptics.epc400 import EPC400Emulator
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import InstrumentError
from qhil.testing import expected_protocol

NO_ERROR = (b":SYSTem:ERRor?\r", b'0,"No error"\r')


async def test_connect_reports_a_queued_error_byte_exact(caplog: pytest.LogCaptureFixture) -> None:
    exchanges = [
        (b":SYSTem:ERRor?\r", b'-113,"Undefined header"\r'),
        (b":SYSTem:ERRor?\r", b'-222,"Data out of range"\r'),
        NO_ERROR,
        (b"*CLS\r", b""),
        NO_ERROR,
        (b":SYSTem:COMMunicate:CODe 1\r", b""),
        NO_ERROR,
    ]
    with caplog.at_level(logging.WARNING, logger="qhil.drivers.scpi"):
        async with expected_protocol(TSL570, exchanges, connect=True) as laser:
            assert laser.stale_errors == ((-113, "Undefined header"), (-222, "Data out of range"))
    [record] = [r for r in caplog.records if r.name == "qhil.drivers.scpi"]
    message = record.getMessage()
    assert "TSL570" in message and "REPLAY::INSTR" in message
    assert "-113,'Undefined header'" in message and "-222,'Data out of range'" in message
    assert "another client" in message


def _leave_an_error(address: str) -> None:
    """A second client sends an unknown command and hangs up without reading the queue."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b":NOT:A:COMMand 1\r*OPC?\r")
        reply = b""
        while not reply.endswith(b"\r"):  # *OPC? answered: the bad command was handled
            chunk = s.recv(64)
            assert chunk, "emulator closed the connection"
            reply += chunk
    assert reply == b"1\r"


async def test_an_error_left_by_another_client_does_not_fail_connect(
    emulator_host: EmulatorHost, caplog: pytest.LogCaptureFixture
) -> None:
    ep = emulator_host.add(TSL570Emulator(name="laser"))
    _leave_an_error(ep.address)
    with caplog.at_level(logging.WARNING, logger="qhil.drivers.scpi"):
        async with TSL570.open(ep.resource) as laser:
            assert laser.stale_errors == ((-113, "Undefined header"),)
            await laser.set_wavelength_nm(1550.0)  # the queue is clean: no stale error raised
            assert await laser.wavelength_nm.get() == pytest.approx(1550.0)
            # qhil's own errors are still qhil's, with the instrument's code and text.
            with pytest.raises(InstrumentError, match="-113") as info:
                await laser.command(":NOT:A:COMMand 2")
            assert info.value.command == ":NOT:A:COMMand 2"
    assert any("-113,'Undefined header'" in r.getMessage() for r in caplog.records)


def _queued(fd: int) -> int:
    """Bytes waiting to be read on a tty fd (FIONREAD), without taking them."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def _leave_unread_replies(path: str, commands: int = 600) -> None:
    """A client sends many queries and leaves without reading: the pty fills up and the
    emulator keeps the rest of the replies waiting, to come out after the next open."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"V?\r\n" * commands)
        # Wait (bounded) until the line is full: the emulator is then blocked on writing.
        deadline = time.monotonic() + 10
        last, steady = -1, 0
        while steady < 20 and time.monotonic() < deadline:
            now = _queued(fd)
            steady = steady + 1 if now == last and now >= 4000 else 0
            last = now
            time.sleep(0.005)
        assert last >= 4000, f"the emulator answered only {last} bytes"
    finally:
        os.close(fd)


@pytest.mark.parametrize("backend", ["visa", "pyserial"])
async def test_unread_replies_on_a_serial_line_are_drained_at_connect(
    emulator_host: EmulatorHost, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    ep = emulator_host.add(EPC400Emulator(name="epc"))
    _leave_unread_replies(ep.address)
    resource = ep.resource if backend == "visa" else ep.address
    with caplog.at_level(logging.WARNING, logger="qhil.transport.session"):
        async with EPC400.open(resource) as epc:
            # Without the drain the first reply read here would be a stale "Voltage(mV)" line.
            assert (await epc.identity()).startswith("OZ Optics,EPC-400,")
            assert await epc.voltages_mv() == [0, 0, 0, 0]
    assert any("left unread on the line" in r.getMessage() for r in caplog.records)
