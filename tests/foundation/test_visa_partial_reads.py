"""pyvisa reads that time out keep the bytes that did arrive.

pyvisa raises ``VisaIOError`` on a timeout and drops whatever the read had already
taken off the line; VisaIO must hand those bytes back (``ReadTimeout.partial``, and
from there ``InstrumentTimeoutError.partial``) and must not lose or duplicate any
byte of the stream. Peers here are a bare pty master (``ASRL/dev/pts/N::INSTR``
through pyvisa-py's serial session) and a bare TCP socket (pyvisa-py's SOCKET
session), so every byte on the wire is under the test's control; a ctypes VISA
library (not installed here) is stood in for at the level pyvisa calls it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pyvisa.constants import StatusCode
from pyvisa.errors import VisaIOError

from qhil.errors import InstrumentTimeoutError
from qhil.transport import Framing, Session
from qhil.transport.rawio import ReadTimeout
from qhil.transport.session import Reader
from qhil.transport.visa_io import VisaIO, chunk_reader

FRAMING = Framing(write_termination="\n", read_termination="\n")
#: Binary payload with the read termination (``\n``) and NUL inside: pyvisa ends a
#: read early at the termination character, which must not end (or cut) a byte block.
PAYLOAD = b"\x00\x01AB\nCD\x0a\xff" * 3
READ_TIMEOUT_S = 0.2


@dataclass
class Peer:
    """The instrument side of one connection: the test writes and reads raw bytes."""

    resource: str
    send: Callable[[bytes], None]
    recv_line: Callable[[], bytes]
    closers: list[Callable[[], None]] = field(default_factory=list)


def _pty_peer() -> Peer:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    pending = bytearray()

    def recv_line() -> bytes:
        while b"\n" not in pending:
            chunk = os.read(master, 4096)
            if not chunk:
                raise EOFError("pty closed")
            pending.extend(chunk)
        end = pending.index(b"\n") + 1
        line = bytes(pending[:end])
        del pending[:end]
        return line

    def send(data: bytes) -> None:
        os.write(master, data)

    return Peer(
        f"ASRL{path}::INSTR", send, recv_line, [lambda: os.close(slave), lambda: os.close(master)]
    )


class _SocketPeer:
    """A listening socket; a connection is accepted when the peer is first used, and
    the next one when the client has closed the current one."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self.pending = bytearray()

    def _conn(self) -> socket.socket:
        if self.conn is None:
            self.server.settimeout(5)
            self.conn, _ = self.server.accept()
            self.conn.settimeout(5)
        return self.conn

    def send(self, data: bytes) -> None:
        self._conn().sendall(data)

    def recv_line(self) -> bytes:
        while b"\n" not in self.pending:
            try:
                chunk = self._conn().recv(4096)
            except ConnectionResetError:  # closed with unread bytes of ours: a reset
                chunk = b""
            if not chunk:  # the session reconnects a socket to resynchronise: follow it
                self._conn().close()
                self.conn = None
                self.pending.clear()
            self.pending.extend(chunk)
        end = self.pending.index(b"\n") + 1
        line = bytes(self.pending[:end])
        del self.pending[:end]
        return line

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


def _socket_peer() -> Peer:
    sp = _SocketPeer()
    return Peer(f"TCPIP0::127.0.0.1::{sp.port}::SOCKET", sp.send, sp.recv_line, [sp.close])


@pytest.fixture(params=["serial", "socket"])
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    p = _pty_peer() if request.param == "serial" else _socket_peer()
    try:
        yield p
    finally:
        for close in p.closers:
            with contextlib.suppress(OSError):
                close()


@pytest.fixture
def visa(peer: Peer) -> Iterator[VisaIO]:
    io = VisaIO(peer.resource, FRAMING)
    io.open(2.0)
    try:
        yield io
    finally:
        io.close()


# --- VisaIO alone ---


@pytest.mark.parametrize("arrived", [1, 4, len(PAYLOAD) - 1])
def test_read_exact_timeout_keeps_the_bytes_that_arrived(
    peer: Peer, visa: VisaIO, arrived: int
) -> None:
    peer.send(PAYLOAD[:arrived])
    with pytest.raises(ReadTimeout) as info:
        visa.read_exact(len(PAYLOAD), READ_TIMEOUT_S)
    assert info.value.partial == PAYLOAD[:arrived]
    # The rest of the block comes later: it follows on exactly where the partial ended.
    peer.send(PAYLOAD[arrived:] + b"next\n")
    assert visa.read_exact(len(PAYLOAD) - arrived, 2.0) == PAYLOAD[arrived:]
    assert visa.read_until(b"\n", 2.0) == b"next\n"


def test_read_exact_with_nothing_arrived_times_out_empty(peer: Peer, visa: VisaIO) -> None:
    with pytest.raises(ReadTimeout) as info:
        visa.read_exact(8, READ_TIMEOUT_S)
    assert info.value.partial == b""
    peer.send(b"late\n")
    assert visa.read_until(b"\n", 2.0) == b"late\n"


def test_read_exact_takes_exactly_count_and_leaves_the_next_message(
    peer: Peer, visa: VisaIO
) -> None:
    peer.send(PAYLOAD + b"after\n" + PAYLOAD)
    assert visa.read_exact(len(PAYLOAD), 2.0) == PAYLOAD
    assert visa.read_until(b"\n", 2.0) == b"after\n"
    assert visa.read_exact(len(PAYLOAD), 2.0) == PAYLOAD


def test_read_until_timeout_keeps_an_unterminated_reply(peer: Peer, visa: VisaIO) -> None:
    peer.send(b"first\nunterminated")
    assert visa.read_until(b"\n", 2.0) == b"first\n"
    with pytest.raises(ReadTimeout) as info:
        visa.read_until(b"\n", READ_TIMEOUT_S)
    assert info.value.partial == b"unterminated"


def test_read_until_timeout_keeps_a_half_arrived_two_byte_termination(
    peer: Peer, visa: VisaIO
) -> None:
    # pyvisa stops at the last termination byte only; "\r" alone must not be lost either.
    peer.send(b"abc\r")
    with pytest.raises(ReadTimeout) as info:
        visa.read_until(b"\r\n", READ_TIMEOUT_S)
    assert info.value.partial == b"abc\r"


# --- through the session: the typed error, then the next exchange ---


Step = bytes | Callable[[], object]


class _Responder:
    """Answers each command line the session sends by running a script: bytes are
    written to the line, callables run in between (to wait for or signal the test)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.scripts: queue.Queue[list[Step]] = queue.Queue()
        self.commands: list[bytes] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while script := self.scripts.get():
                self.commands.append(self.peer.recv_line())
                for step in script:
                    if isinstance(step, bytes):
                        self.peer.send(step)
                    else:
                        step()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def stop(self) -> None:
        self.scripts.put([])
        self.thread.join(5)


async def test_session_timeout_error_carries_the_partial_block_and_the_next_query_is_clean(
    peer: Peer,
) -> None:
    arrived = 5
    timed_out, rest_sent = threading.Event(), threading.Event()
    responder = _Responder(peer)
    s = Session(peer.resource, FRAMING, timeout_s=READ_TIMEOUT_S, socket_backend="pyvisa")

    def block(r: Reader) -> bytes:
        return r.exact(len(PAYLOAD))

    try:
        async with s:
            # The block stops part-way; its rest turns up only after the session gave up.
            responder.scripts.put(
                [PAYLOAD[:arrived], lambda: timed_out.wait(5), PAYLOAD[arrived:], rest_sent.set]
            )
            with pytest.raises(InstrumentTimeoutError) as info:
                await s.transaction("DATA?", block)
            err = info.value
            assert err.partial == PAYLOAD[:arrived]
            assert err.command == "DATA?"
            assert err.termination == f"{len(PAYLOAD)} bytes"
            assert peer.resource in str(err)
            assert repr(PAYLOAD[:arrived]) in str(err)

            # The late rest is on the line before the next command goes out: it must not
            # be taken for that command's reply, line or block (a serial line is drained,
            # a socket reconnected).
            timed_out.set()
            assert rest_sent.wait(5)
            responder.scripts.put([b"id-reply\n"])
            assert await s.query("ID?", timeout_s=2.0) == "id-reply"
            responder.scripts.put([PAYLOAD])
            assert await s.transaction("DATA?", block, timeout_s=2.0) == PAYLOAD
    finally:
        responder.stop()
        s.shutdown()
    assert responder.error is None
    assert responder.commands == [b"DATA?\n", b"ID?\n", b"DATA?\n"]


# --- a ctypes VISA library (NI, Keysight, R&S), as pyvisa's ctwrapper calls it ---


class _CtypesVisaLib:
    """Stands in for ``visalib.lib`` of pyvisa's ctypes wrapper: viRead fills the
    caller's buffer and count as VISA does, then the wrapper's error check raises on a
    negative status (ctwrapper's ``_return_handler``)."""

    def __init__(self, arrived: bytes, status: int) -> None:
        self.arrived = arrived
        self.status = status

    def viRead(self, session: int, buf: Any, count: int, ret_count: Any) -> int:
        n = min(len(self.arrived), count)
        ctypes.memmove(buf, self.arrived, n)
        ret_count._obj.value = n  # byref(c_uint32) -> the c_uint32 it points to
        if self.status < 0:
            raise VisaIOError(self.status)
        return self.status


@dataclass
class _CtypesResource:
    visalib: Any
    session: int = 7


def _ctypes_visalib(lib: _CtypesVisaLib) -> Any:
    return SimpleNamespace(lib=lib, ignore_warning=lambda *_: contextlib.nullcontext())


def test_ctypes_library_read_keeps_the_bytes_of_a_timed_out_read() -> None:
    lib = _CtypesVisaLib(b"\x00\x01AB", StatusCode.error_timeout)
    read = chunk_reader(_CtypesResource(_ctypes_visalib(lib)))
    assert read(16) == (b"\x00\x01AB", StatusCode.error_timeout)


def test_ctypes_library_read_returns_at_most_count_with_its_status() -> None:
    lib = _CtypesVisaLib(PAYLOAD, StatusCode.success_max_count_read)
    read = chunk_reader(_CtypesResource(_ctypes_visalib(lib)))
    assert read(4) == (PAYLOAD[:4], StatusCode.success_max_count_read)
