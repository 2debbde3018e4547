"""SerialIO.read_some (issue 12): a stream's reader gets what has arrived at once, however
much was asked for, instead of waiting out its timeout for a full chunk; nothing within
the timeout is a ReadTimeout. Over a real pseudo-terminal (the emulators' serial path)."""

from __future__ import annotations

import os
import pty
import time
import tty
from collections.abc import Iterator

import pytest

from qhil.transport.framing import Framing
from qhil.transport.rawio import ReadTimeout
from qhil.transport.serial_io import SerialIO


@pytest.fixture
def line() -> Iterator[tuple[int, SerialIO]]:
    master, slave = pty.openpty()
    tty.setraw(master)
    io = SerialIO(os.ttyname(slave), Framing())
    io.open(1.0)
    try:
        yield master, io
    finally:
        io.close()
        os.close(master)
        os.close(slave)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def test_read_some_returns_what_has_arrived(line: tuple[int, SerialIO]) -> None:
    master, io = line
    _write_all(master, b"x" * 3000)
    got = b""
    start = time.monotonic()
    while len(got) < 3000:  # a tty may hand the bytes over in pieces
        got += io.read_some(1 << 20, 30.0)
    assert got == b"x" * 3000
    # Not the 30 s timeout of a read for 1 MiB (half of it: any host is faster than that).
    assert time.monotonic() - start < 15.0
    with pytest.raises(ReadTimeout) as err:
        io.read_some(1 << 20, 0.01)
    assert err.value.partial == b""


def test_read_some_takes_at_most_count(line: tuple[int, SerialIO]) -> None:
    master, io = line
    _write_all(master, bytes(range(100)))
    first = io.read_some(10, 1.0)
    assert first == bytes(range(10))
    rest = b""
    while len(rest) < 90:
        rest += io.read_some(1000, 1.0)
    assert rest == bytes(range(10, 100))
