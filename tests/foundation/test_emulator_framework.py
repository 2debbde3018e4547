"""The emulator framework itself: handler binding, the SCPI core, framing, faults, serving."""

from __future__ import annotations

import asyncio
import gc
import os
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from qhil.drivers.declarations import Action, Control
from qhil.drivers.ozoptics.epc400 import EPC400
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import Int, Str
from qhil.emulators.base import Emulator, Raw, on
from qhil.emulators.bench import EmulatedBench
from qhil.emulators.framer import MessageFramer, split_units
from qhil.emulators.ozoptics.epc400 import EPC400Emulator
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.scpi import ScpiEmulator, ScpiError
from qhil.emulators.server import EmulatorHost, Endpoint
from qhil.errors import ConfigError, ProtocolError
from qhil.orchestrator.profile import load_profile
from qhil.testing import run_on_emulator
from qhil.transport.framing import Framing


class Toy(ScpiInstrument):
    """A small SCPI instrument for exercising the core (LF both ways)."""

    framing: ClassVar[Framing] = Framing("\n", "\n")
    level = Control(get=":LEVel?", set=":LEVel {value}", value=Int(0, 100), doc="A level.")
    load = Action(
        ":DATA:LOAD {name},{data}",
        args={"name": Str(r"[^,]+"), "data": Str(r"[\s\S]+")},
        doc="Load data, as ASCII or as a definite-length block.",
    )


class ToyEmulator(ScpiEmulator):
    driver = Toy

    def power_on_state(self) -> None:
        super().power_on_state()
        self.level = 0

    @on("level.get")
    def _level_q(self) -> int:
        return self.level

    @on("level.set")
    def _level(self, value: int) -> None:
        self.level = value


# --- handler binding ---


class SignedErrors(ToyEmulator):
    """Overrides a handler of the SCPI core (the 33500's ``+0,"No error"``)."""

    @on("next_error.get")
    def _err_signed(self) -> Raw:
        code, text = self.errors.popleft() if self.errors else (0, "No error")
        return Raw(f'{code:+d},"{text}"')


class LevelTimesTwo(ToyEmulator):
    """Overrides a handler without naming a driver of its own."""

    @on("level.get")
    def _level_twice(self) -> int:
        return 2 * self.level


async def test_subclass_handler_overrides_the_cores_for_the_same_command() -> None:
    emu = SignedErrors()
    assert await emu.respond(b":SYST:ERR?") == b'+0,"No error"\n'
    await emu.respond(b":BOGus")
    assert await emu.respond(b":SYST:ERR?") == b'-113,"Undefined header"\n'
    assert [r.key for r in SignedErrors.routes].count("next_error.get") == 1
    # The base class keeps its own handler.
    assert await ToyEmulator().respond(b":SYST:ERR?") == b'0,"No error"\n'


async def test_subclass_without_a_driver_of_its_own_still_binds_its_handlers() -> None:
    emu = LevelTimesTwo()
    await emu.respond(b":LEV 21")
    assert await emu.respond(b":LEV?") == b"42\n"


def test_handler_for_an_undeclared_command_is_an_error_at_class_creation() -> None:
    with pytest.raises(TypeError, match="does not declare"):

        class Bad(ToyEmulator):
            @on("no_such_command.get")
            def _x(self) -> int:
                return 0


# --- async handlers ---


class Slow(ToyEmulator):
    """Handlers that wait (as for simulated time) before they answer."""

    def power_on_state(self) -> None:
        super().power_on_state()
        self.gate = asyncio.Event()
        self.seen: list[str] = []

    @on("level.get")
    async def _level_later(self) -> int:
        await self.gate.wait()
        self.seen.append("get")
        return self.level

    @on("level.set")
    async def _level_later_set(self, value: int) -> None:
        await asyncio.sleep(0)
        if value == 13:
            raise ScpiError(-222, "Data out of range")
        self.seen.append(f"set {value}")
        self.level = value


async def test_async_handlers_are_awaited_in_order_within_a_compound_command() -> None:
    emu = Slow()
    task = asyncio.create_task(emu.respond(b":LEV 7;:LEV?;*OPC?"))
    await asyncio.sleep(0.01)
    assert not task.done()  # the query waits for its handler
    assert emu.seen == ["set 7"]
    emu.gate.set()
    assert await task == b"7;1\n"
    assert emu.seen == ["set 7", "get"]


async def test_an_async_handler_can_queue_an_scpi_error() -> None:
    emu = Slow()
    emu.gate.set()
    assert await emu.respond(b":LEV 13;:LEV?") == b"0\n"
    assert await emu.respond(b":SYST:ERR?") == b'-222,"Data out of range"\n'


# --- faults ---


class _Sink:
    """A ByteWriter that keeps what the emulator sends."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


async def serve_bytes(emu: Emulator, data: bytes) -> bytes:
    """Everything ``emu`` sends on a connection that carries ``data`` and then closes."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    sink = _Sink()
    await emu.serve(reader, sink)
    return bytes(sink.data)


def _line_ends(data: bytes, ends: bytes) -> list[int]:
    return [i for i, b in enumerate(data) if b in ends]


@pytest.mark.parametrize(
    ("make", "command"),
    [
        (EPC400Emulator, b"V?\r\n"),
        (EPC400Emulator, b"M?\r\n"),
        (EPC400Emulator, b"V1,100\r\n"),
        (lambda: TSL570Emulator(command_set="scpi"), b":SYST:ALER?\r"),
        (TSL570Emulator, b":SYST:COMM:COD?\r"),
        (ToyEmulator, b"*IDN?\n"),
    ],
)
async def test_garble_corrupts_content_but_keeps_every_line_ending(
    make: Callable[[], Emulator], command: bytes
) -> None:
    clean = await serve_bytes(make(), command)
    emu = make()
    emu.faults.garble_next = True
    garbled = await serve_bytes(emu, command + command)
    first, second = garbled[: len(clean)], garbled[len(clean) :]
    assert second == clean  # the fault hits one reply only
    assert len(first) == len(clean) and first != clean
    ends = b"\r\n" + emu.framing.read_term_bytes
    assert _line_ends(first, ends) == _line_ends(clean, ends)  # still frames as the same lines
    changed = [b for a, b in zip(clean, first, strict=True) if a != b]
    assert all(0x21 <= b <= 0x7E for b in changed)  # printable, no terminator


async def test_a_garbled_reply_reaches_the_driver_as_bad_content_not_a_hang(
    emulator_host: EmulatorHost,
) -> None:
    emu = EPC400Emulator(name="garbled-epc")
    ep = emulator_host.add(emu)
    drv = EPC400.open(ep.address, timeout_s=2.0)
    await drv.connect()
    try:
        await drv.voltage.set(1200, channel=2)
        emu.faults.garble_next = True
        with pytest.raises(ProtocolError):
            await drv.voltages_mv()
        assert (await drv.voltages_mv())[1] == 1200  # the next exchange is in step
    finally:
        await drv.close()


# --- the emulated bench ---


@pytest.mark.parametrize(
    ("override", "field", "problem"),
    [
        ("nodes.bob.instruments.polctrl.emulator.bogus=1", "polctrl.emulator", "bogus"),
        (
            "nodes.alice.instruments.laser.emulator.response_time=1",
            "laser.emulator",
            "response_time",
        ),
        ('nodes.bob.instruments.polctrl.component="nope"', "polctrl.component", "nope"),
    ],
)
def test_a_bench_that_fails_to_start_says_where_and_leaves_nothing_running(
    override: str, field: str, problem: str
) -> None:
    profile = load_profile(None, [override])
    bench = EmulatedBench(profile)
    with pytest.raises(ConfigError) as info:
        bench.start()
    assert info.value.field.endswith(field) and info.value.field.startswith("nodes.")
    assert problem in info.value.problem and info.value.source == profile.source
    # Nothing is left behind: no loop thread, no pty directory, no half-built emulators.
    assert bench.host._thread is None or not bench.host._thread.is_alive()
    assert bench.host._dir == "" or not os.path.exists(bench.host._dir)
    assert bench.emulators == {} and bench.endpoints == {}


def test_qhil_emulate_reports_a_bad_emulator_option_without_a_traceback() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "qhil.cli",
            "emulate",
            "--set",
            "nodes.alice.instruments.polctrl.emulator.bogus=1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "nodes.alice.instruments.polctrl.emulator" in r.stderr and "bogus" in r.stderr
    assert "Traceback" not in r.stderr


# --- serving ---


def _read_until(fd: int, marker: bytes, count: int, deadline_s: float) -> bytes:
    """Read from a (blocking) fd until ``marker`` occurred ``count`` times or time is up."""
    out = bytearray()
    end = time.monotonic() + deadline_s
    while out.count(marker) < count and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            out += os.read(fd, 1 << 16)
    return bytes(out)


def test_a_serial_client_that_does_not_read_blocks_only_its_own_emulator() -> None:
    host = EmulatorHost().start()
    try:
        pty_ep = host.add(EPC400Emulator(name="epc"))
        tcp_ep = host.add(TSL570Emulator(name="tsl"))
        fd = os.open(pty_ep.address, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            n = 3000  # far more replies than the pty buffers
            for _ in range(n):
                os.write(fd, b"V?\r\n")
            # Another emulator on the same host still answers.
            with _connect(tcp_ep) as s:
                s.sendall(b"*IDN?\r")
                assert s.recv(100).startswith(b"SANTEC,TSL-570,")
            # Once the client reads, every reply arrives whole and in order.
            replies = _read_until(fd, b"Done\r\n", n, deadline_s=60)
            assert replies.count(b"Done\r\n") == n
            assert replies == n * b"Voltage(mV): CH1 +0  CH2 +0  CH3 +0  CH4 +0\r\nDone\r\n"
            for _ in range(n):  # and the host can be stopped with replies still pending
                os.write(fd, b"V?\r\n")
        finally:
            os.close(fd)
    finally:
        stopper = threading.Thread(target=host.stop)
        stopper.start()
        stopper.join(30)
    assert not stopper.is_alive()
    assert host._thread is not None and not host._thread.is_alive()
    assert not os.path.exists(host._dir)


class _Blocker:
    """A servable that blocks the host's loop (a bug in some handler) for a while."""

    name = "blocker"
    transport = "tcp"

    def __init__(self) -> None:
        self.blocking = threading.Event()

    def describe(self) -> dict[str, str]:
        return {"model": "blocker"}

    async def serve(self, reader: asyncio.StreamReader, writer: object) -> None:
        await reader.read(1)
        self.blocking.set()
        time.sleep(1.5)  # deliberately blocking: the loop cannot run meanwhile


def test_stop_does_not_raise_when_a_handler_blocks_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = EmulatorHost().start()
    blocker = _Blocker()
    ep = host.add(blocker)
    with _connect(ep) as s:
        s.sendall(b"x")
        assert blocker.blocking.wait(5)  # the loop picked the byte up and is blocked
        host.stop(timeout_s=0.2)
    assert "loop thread still running" in caplog.text
    assert not os.path.exists(host._dir)
    assert host._thread is not None
    host._thread.join(10)
    assert not host._thread.is_alive()  # the loop ends by itself once unblocked


class _Waiter:
    """A servable whose connections wait on something other than the socket."""

    name = "waiter"
    transport = "tcp"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.finished = threading.Event()

    def describe(self) -> dict[str, str]:
        return {"model": "waiter"}

    async def serve(self, reader: asyncio.StreamReader, writer: object) -> None:
        try:
            self.started.set()
            await asyncio.Event().wait()  # e.g. a long acquisition on the world's clock
        finally:
            self.finished.set()


class _SlowLaser(TSL570Emulator):
    """A TSL570 emulator that says when it has its reply ready (then sleeps before sending)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.replying = threading.Event()

    async def respond(self, message: bytes) -> bytes:
        reply = await super().respond(message)
        # No await between here and the response-time sleep: once this is set, the
        # handler is in (or enters without yielding) that sleep.
        self.replying.set()
        return reply


def _connect(ep: Endpoint) -> socket.socket:
    address, port = ep.address.split(":")
    return socket.create_connection((address, int(port)), timeout=5)


def test_stop_ends_every_connection_handler(caplog: pytest.LogCaptureFixture) -> None:
    host = EmulatorHost().start()
    waiter = _Waiter()
    ep = host.add(waiter)
    slow = _SlowLaser(name="slow", response_time_s=30.0)  # asleep before its reply
    slow_ep = host.add(slow)
    conns = [_connect(e) for e in (ep, slow_ep)]
    try:
        conns[1].sendall(b"*IDN?\r")
        assert waiter.started.wait(5)
        assert slow.replying.wait(5)  # *IDN? received and answered: now asleep before sending
        host.stop()
        assert waiter.finished.is_set()  # cancelled and finished, not left pending
        gc.collect()
        assert "Task was destroyed but it is pending" not in caplog.text
        for c in conns:  # the server side closed each connection
            c.settimeout(5)
            assert c.recv(100) == b""
    finally:
        for c in conns:
            c.close()


# --- framing and binary blocks ---


async def frame_all(data: bytes, terminators: bytes = b"\n", *, chunk: int = 0) -> list[bytes]:
    """Every command a block-aware framer yields from ``data`` (fed ``chunk`` bytes at a time)."""
    reader = asyncio.StreamReader()
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        reader.feed_data(data[i : i + step])
    reader.feed_eof()
    framer = MessageFramer(reader, terminators, blocks=True)
    out = []
    while (msg := await asyncio.wait_for(framer.next(), 5)) is not None:
        out.append(msg)
    return out


BLOCK_STREAMS = [
    # a block whose payload ends in whitespace and holds terminators
    (b"DATA:ARB:DAC x,#14\x01\x02\x00 \n", [b"DATA:ARB:DAC x,#14\x01\x02\x00 "]),
    (b"  D #16\n\r\n \t\r;*OPC?  \r\n*IDN?\n", [b"D #16\n\r\n \t\r;*OPC?", b"*IDN?"]),
    (b"D #15\n\n\n\n\n\n", [b"D #15\n\n\n\n\n"]),
    # '#' inside a quoted string is text, not a block header
    (b'SYST:ERR? "#3"\n*IDN?\n', [b'SYST:ERR? "#3"', b"*IDN?"]),
    (b"DISP:TEXT '#9 is not a block'\n", [b"DISP:TEXT '#9 is not a block'"]),
    # an unclosed quote does not hold the connection open past a terminator
    (b'A "unclosed\nB\n', [b'A "unclosed', b"B"]),
    # things that only look like blocks
    (b"A #\nB #1\nC #2x\nD #0\n", [b"A #", b"B #1", b"C #2x", b"D #0"]),
    (b"\n\n  \r\n", []),
]


@pytest.mark.parametrize(("data", "commands"), BLOCK_STREAMS)
@pytest.mark.parametrize("chunk", [0, 1, 3])
async def test_framer_keeps_blocks_whole_and_trims_only_outside_them(
    data: bytes, commands: list[bytes], chunk: int
) -> None:
    assert await frame_all(data, chunk=chunk) == commands


def test_units_split_at_semicolons_outside_quotes_and_blocks() -> None:
    units = split_units(b"A 1;B \"x;y\";C #13;;;;D '#2';E #19ab")
    assert [u for u, _ in units] == [b"A 1", b'B "x;y"', b"C #13;;;", b"D '#2'", b"E #19ab"]
    assert [[(b.start, b.data, b.end) for b in blocks] for _, blocks in units] == [
        [], [], [(2, 5, 8)], [], []  # "#19ab" is cut short: plain text
    ]  # fmt: skip


class BlockToy(ToyEmulator):
    block_fields = frozenset({"load.data"})

    def power_on_state(self) -> None:
        super().power_on_state()
        self.loaded: dict[str, str | bytes] = {}

    @on("load")
    def _load(self, name: str, data: str | bytes) -> None:
        self.loaded[name] = data


ALL_BYTES = bytes(range(256))


async def test_block_payloads_reach_the_handler_as_the_exact_bytes() -> None:
    emu = BlockToy()
    message = b"DATA:LOAD raw,#3256" + ALL_BYTES + b";:LEV 9;:LEV?\n"
    assert await serve_bytes(emu, message) == b"9\n"
    assert emu.loaded == {"raw": ALL_BYTES}
    assert await emu.respond(b"DATA:LOAD txt, 1, 2, 3") == b""
    assert emu.loaded["txt"] == "1, 2, 3"  # ASCII data stays text
    assert await emu.respond(b":SYST:ERR?") == b'0,"No error"\n'


async def test_a_block_where_no_block_is_taken_is_error_168() -> None:
    emu = BlockToy()
    assert await emu.respond(b"DATA:LOAD #14abcd,#11x") == b""  # a block as the name
    assert await emu.respond(b":SYST:ERR?") == b'-168,"Block data not allowed"\n'
    assert await emu.respond(b"DATA:LOAD x,#11x #11y") == b""  # two blocks in one field
    assert await emu.respond(b":SYST:ERR?") == b'-168,"Block data not allowed"\n'
    assert emu.loaded == {}
    # A NUL sent as text is not mistaken for a block.
    assert await emu.respond(b"DATA:LOAD x,\x000\x00") == b""
    assert emu.loaded == {"x": "\ufffd0\ufffd"}


class NaiveFraming(BlockToy):
    """A framer that knows nothing of blocks (the bug run_on_emulator must now catch)."""

    def framer(self, reader: asyncio.StreamReader) -> MessageFramer:
        return MessageFramer(reader, b"\n")


async def test_run_on_emulator_goes_through_the_emulators_framer() -> None:
    # A naive framer ends the command inside the block and runs the "*OPC?" in it.
    exchanges = [(b"DATA:LOAD w,#16\n*OPC?\n", b""), (b":LEV?\n", b"0\n")]
    await run_on_emulator(BlockToy(), exchanges)
    with pytest.raises(AssertionError, match="answered"):
        await run_on_emulator(NaiveFraming(), exchanges)


async def test_run_on_emulator_applies_faults_and_sees_a_dropped_line() -> None:
    emu = ToyEmulator()
    emu.faults.stall_next = 1
    await run_on_emulator(emu, [(b"*OPC?\n", b""), (b"*OPC?\n", b"1\n")])
    emu.faults.drop_next = True
    with pytest.raises(AssertionError, match="closed the connection"):
        await run_on_emulator(emu, [(b"*OPC?\n", b""), (b"*OPC?\n", b"1\n")])
