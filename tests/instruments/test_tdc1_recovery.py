"""A TDC1 left streaming by a killed client is stopped on the next connect.

A real TDC1 streams timestamps until told ``abort``; a client killed mid-stream
(``kill -9``) never says it, so the next client finds a serial line that never falls
quiet. Connecting drains the line, and if it stays busy sends the driver's own stop
command (``TDC1.quiesce_command``, ``abort``), drains again, and only then fails, with a
message that says what it tried and what to do.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys

import pytest

from qhil.drivers.sfifteen.tdc1 import TDC1, encode_words
from qhil.emulators.server import EmulatorHost
from qhil.emulators.sfifteen.tdc1 import IDENTITY, TDC1Emulator
from qhil.errors import InstrumentConnectionError
from qhil.transport.rawio import ReadTimeout
from qhil.transport.replay import ReplayIO

IDN = IDENTITY.encode() + b"\r\n"
#: What a streaming unit keeps sending: idle (dummy) words.
STREAM_TAIL = encode_words([50_000_000, 100_000_000], [0x10, 0x10])


class _LeftStreaming(ReplayIO):
    """The scripted peer behind a serial line that a dead client left streaming: draining
    never falls quiet until ``abort`` has been written ``aborts_needed`` times."""

    serial_line = True

    def __init__(self, exchanges: list[tuple[bytes, bytes]], aborts_needed: float) -> None:
        super().__init__(exchanges)
        self.aborts_needed = aborts_needed
        self.drains = 0

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        self.drains += 1
        if self.written.count(b"abort\r\n") < self.aborts_needed:
            raise ReadTimeout(STREAM_TAIL)
        return 4096  # the stream's tail, in flight when it stopped


def test_the_stop_command_is_the_drivers_abort() -> None:
    assert TDC1.quiesce_command == TDC1.abort.template.render() == "abort"
    assert TDC1.open("/dev/ttyACM0").session.quiesce == "abort"


async def test_connect_stops_a_stream_left_running_byte_exact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Drain (busy), ``abort\\r\\n``, drain (quiet), then the driver's first query."""
    io = _LeftStreaming([(b"abort\r\n", b""), (b"*IDN?\r\n", IDN)], aborts_needed=1)
    drv = TDC1.open("REPLAY::INSTR", io=io)
    with caplog.at_level(logging.WARNING, logger="qhil.transport.session"):
        await drv.connect()
        try:
            assert await drv.identity() == IDENTITY
        finally:
            await drv.close()
    io.assert_complete()
    assert io.drains == 2
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "sending its stop command 'abort'" in messages
    assert "dropped 4096 byte(s)" in messages


async def test_a_line_the_stop_command_does_not_quiet_fails_saying_what_was_tried() -> None:
    io = _LeftStreaming([(b"abort\r\n", b"")], aborts_needed=2)
    drv = TDC1.open("REPLAY::INSTR", io=io)
    try:
        with pytest.raises(InstrumentConnectionError) as info:
            await drv.connect()
    finally:
        await drv.close()
    io.assert_complete()  # abort sent exactly once, nothing else
    text = str(info.value)
    assert "REPLAY::INSTR" in text
    assert "sending the instrument's stop command 'abort' and draining 2 s more" in text
    assert "stop that client, or power-cycle the instrument" in text
    assert "\n" not in text


_STREAMING_CLIENT = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
os.write(fd, b"INPKT;time 0;timestamp;counts?\r\n")  # what TDC1.stream(None, ...) sends
got = 0
while got < 4096:
    got += len(os.read(fd, 4096))
print("streaming", flush=True)
while True:
    os.read(fd, 4096)
"""


@pytest.mark.slow
async def test_a_new_client_acquires_after_a_streaming_client_was_killed(
    emulator_host: EmulatorHost, caplog: pytest.LogCaptureFixture
) -> None:
    """``kill -9`` of a client reading an endless stream, then a new client: it connects
    (stopping the stream with ``abort``) and acquires normally. Before the fix the connect
    failed: the line was never quiet."""
    emu = TDC1Emulator(name="tdc1")  # no world: idle words only, as fast as they are read
    ep = emulator_host.add(emu)
    client = subprocess.Popen(
        [sys.executable, "-c", _STREAMING_CLIENT, ep.address],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "streaming"
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
    assert client.returncode == -signal.SIGKILL
    drv = TDC1.open(ep.address)
    with caplog.at_level(logging.WARNING, logger="qhil.transport.session"):
        try:
            await drv.connect()
            assert await drv.identity() == IDENTITY
            block = await drv.acquire(0.05)
            assert block.meta["duration_s"] == 0.05 and len(block) == 0  # no world: no events
            assert len(await drv.singles(0.01)) == 4
        finally:
            await drv.close()
    assert "sending its stop command 'abort'" in caplog.text
