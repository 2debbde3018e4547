"""Session robustness: late replies, cancellation, and locking with child tasks."""

from __future__ import annotations

import asyncio

import pytest

from qhil.drivers.santec.tsl570 import TSL570
from qhil.emulators.ozoptics.epc400 import EPC400Emulator
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import InstrumentTimeoutError
from qhil.transport import ReplayIO, Session


@pytest.mark.parametrize("backend", ["asyncio", "pyvisa"])
@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_a_late_reply_never_answers_the_next_query(
    emulator_host: EmulatorHost, backend: str, how: str
) -> None:
    # The laser takes 0.3 s to answer; the first query gives up after 0.1 s.
    ep = emulator_host.add(TSL570Emulator(response_time_s=0.3))
    s = Session(ep.resource, TSL570.framing, timeout_s=0.1, socket_backend=backend)
    async with s:
        if how == "timeout":
            with pytest.raises(InstrumentTimeoutError):
                await s.query("*IDN?")
        else:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(s.query("*IDN?"), 0.05)
        # The identity arrives late; this query must still get its own reply.
        assert await s.query(":SYST:COMM:COD?", timeout_s=2.0) == "0"
        assert (await s.query("*IDN?", timeout_s=2.0)).startswith("SANTEC")


async def test_a_late_serial_reply_is_drained(emulator_host: EmulatorHost) -> None:
    ep = emulator_host.add(EPC400Emulator(response_time_s=0.2))
    s = Session(ep.address, EPC400Emulator.driver.framing, timeout_s=0.1)
    async with s:
        with pytest.raises(InstrumentTimeoutError):
            await s.query_until("V?", lambda line: line == "Done")
        s.timeout_s = 1.0
        assert await s.query_until("M?", lambda line: line == "Done") == ["Work Mode: DC", "Done"]


async def test_child_tasks_inside_locked_neither_deadlock_nor_interleave() -> None:
    idn = (b"*IDN?\r", b"SANTEC,TSL-570,1,2\r")
    wav = (b":WAVelength?\r", b"+1.55000000E-006\r")
    io = ReplayIO([idn, idn, wav, idn])
    drv = TSL570.open("REPLAY::INSTR", io=io)
    await drv.session.open()
    async with drv.session.locked():
        assert (await asyncio.wait_for(drv.idn.get(), 1.0)).startswith("SANTEC")
        # Two children of the holder: each exchange stays whole (replay checks every byte).
        r = await asyncio.wait_for(asyncio.gather(drv.idn.get(), drv.wavelength_nm.get()), 1.0)
        assert r[0].startswith("SANTEC") and r[1] == pytest.approx(1550.0)
    # Another task waits for the holder to finish.
    holder_in = asyncio.Event()
    holder_done = asyncio.Event()

    async def holder() -> None:
        async with drv.session.locked():
            holder_in.set()
            await asyncio.sleep(0.05)
            holder_done.set()

    async def other() -> None:
        await holder_in.wait()  # not a sleep: the holder surely holds the lock now
        await drv.idn.get()
        assert holder_done.is_set()

    await asyncio.gather(holder(), other())
    await drv.close()
    io.assert_complete()


class _StaleAfterReconnectLine:
    """A serial line whose first write finds it gone; reopened, it holds an earlier
    client's unread reply (``stale``) before anything of ours."""

    serial_line = True

    def __init__(self, stale_drains: int = 0) -> None:
        self.buf = b""
        self.opens = 0
        self.writes = 0
        self.stale_drains = stale_drains  # reopens whose drain never goes quiet

    def open(self, timeout_s: float) -> None:
        self.opens += 1
        if self.opens > 1:
            self.buf = b"STALE\n"

    def close(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        from qhil.transport.rawio import LinkDown

        self.writes += 1
        if self.writes == 1:
            raise LinkDown("gone")
        self.buf += b"fresh\n"

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        from qhil.transport.rawio import ReadTimeout

        i = self.buf.find(terminator)
        if i < 0:
            raise ReadTimeout(self.buf)
        out, self.buf = self.buf[: i + len(terminator)], self.buf[i + len(terminator) :]
        return out

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        out, self.buf = self.buf[:count], self.buf[count:]
        return out

    def discard_input(self) -> None:
        self.buf = b""

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        from qhil.transport.rawio import ReadTimeout

        if self.stale_drains > 0:
            self.stale_drains -= 1
            raise ReadTimeout(self.buf)
        n, self.buf = len(self.buf), b""
        return n


@pytest.mark.parametrize("failed_drains", [0, 1])
async def test_a_reconnect_drains_what_the_line_held_before_it(failed_drains: int) -> None:
    from qhil.errors import ConnectionLostError
    from qhil.transport.session import ReconnectPolicy

    line = _StaleAfterReconnectLine()
    s = Session(
        "ASRL/dev/fake::INSTR",
        io=line,  # type: ignore[arg-type]
        timeout_s=0.1,
        reconnect=ReconnectPolicy(attempts=3, initial_delay_s=0.0),
    )
    async with s:
        with pytest.raises(ConnectionLostError):
            await s.query("Q?")
        line.stale_drains = failed_drains  # a drain that never goes quiet fails that attempt
        assert await s.query("Q?") == "fresh"
    assert line.opens == 2 + failed_drains
