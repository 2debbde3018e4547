"""Big definite-length blocks received straight into place (issue 12: the 33500B upload).

A block of at least ``DIRECT_BLOCK`` bytes is read by the emulator host into the message's
own buffer (``BlockReader.readinto``) and the message is handed on as a view: the same
commands, the same payload bytes as the stream path, with no copy of a 16 MB upload.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import numpy as np

from qhil.emulators.framer import DIRECT_BLOCK, MessageFramer
from qhil.emulators.keysight.ks33500b import Keysight33500BEmulator
from qhil.emulators.server import EmulatorHost

N = DIRECT_BLOCK // 2 + 1000  # int16 samples: a payload just over DIRECT_BLOCK bytes


def _codes(seed: int) -> np.ndarray:
    # Codes whose big-endian bytes include the terminator, ';', '#' and quotes.
    rng = np.random.default_rng(seed)
    codes = rng.integers(-8191, 8192, N).astype(np.int16)
    codes[:4] = [0x0A0A, 0x3B23, 0x2227, 0x0D0A]
    return codes


def _dac(channel: int, name: str, codes: np.ndarray) -> bytes:
    payload = codes.astype(">i2").tobytes()
    digits = str(len(payload)).encode()
    head = b"SOUR%d:DATA:ARB:DAC %s,#%d" % (channel, name.encode(), len(digits))
    return head + digits + payload


class _Spy(Keysight33500BEmulator):
    """Records the kind of each message the host hands to the SCPI parser."""

    kinds: list[str]

    def power_on_state(self) -> None:
        super().power_on_state()
        self.kinds = []

    async def respond_units(self, message: bytes | memoryview) -> bytes:
        self.kinds.append(type(message).__name__)
        return await super().respond_units(message)


def _exchange(emu: _Spy, data: bytes, replies: int) -> list[bytes]:
    with EmulatorHost() as host:
        host_, port = host.add(emu).address.split(":")
        with socket.create_connection((host_, int(port)), timeout=10) as s:
            s.sendall(data)
            got = b""
            while got.count(b"\n") < replies:
                chunk = s.recv(4096)
                assert chunk, "the emulator closed the connection"
                got += chunk
    return got.splitlines()


def test_a_big_block_loads_through_a_view_with_the_commands_around_it() -> None:
    emu = _Spy(name="awg")
    a, b = _codes(1), _codes(2)
    # Two big blocks in one compound message, a command before and after in the same send.
    data = (
        b"*CLS\n  "
        + _dac(1, "A", a)
        + b";:"
        + _dac(2, "B", b)
        + b" \n"
        + b"SYST:ERR?\nSOUR1:FUNC:ARB A;:SOUR1:FUNC:ARB:POIN?\n"
    )
    assert _exchange(emu, data, 2) == [b'+0,"No error"', b"+%d" % N]
    assert np.array_equal(emu.channels[1].waveforms["A"].codes, a)
    assert np.array_equal(emu.channels[2].waveforms["B"].codes, b)
    assert emu.kinds == ["bytes", "memoryview", "bytes", "bytes"]


def test_a_small_block_still_comes_as_bytes() -> None:
    emu = _Spy(name="awg")
    codes = _codes(3)[:1000]
    assert _exchange(emu, _dac(1, "S", codes) + b"\nSYST:ERR?\n", 1) == [b'+0,"No error"']
    assert np.array_equal(emu.channels[1].waveforms["S"].codes, codes)
    assert emu.kinds == ["bytes", "bytes"]


class _Pieces:
    """A reader with ``readinto`` that serves given pieces, then end of stream."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.data = bytearray(b"".join(pieces))
        self.sizes = [len(p) for p in pieces]

    async def read(self, n: int) -> bytes:
        k = min(n, self.sizes.pop(0) if self.sizes else len(self.data), len(self.data))
        out = bytes(self.data[:k])
        del self.data[:k]
        return out

    async def readinto(self, view: memoryview) -> int:
        k = min(len(view), len(self.data))
        view[:k] = self.data[:k]
        del self.data[:k]
        return k


def _framer(pieces: list[bytes]) -> MessageFramer:
    return MessageFramer(
        cast(asyncio.StreamReader, _Pieces(pieces)), b"\n", blocks=True, max_block=4 * N
    )


async def test_a_message_view_keeps_its_bytes_when_the_next_arrives() -> None:
    first, second = _dac(1, "A", _codes(4)), _dac(1, "B", _codes(5))
    stream = first + b"\n" + second + b"\nX\n"
    framer = _framer([stream[:40], stream[40:100], stream[100:]])
    got: list[Any] = [await framer.next() for _ in range(4)]
    assert isinstance(got[0], memoryview) and isinstance(got[1], memoryview)
    assert got[0] == first and got[1] == second and got[2:] == [b"X", None]


async def test_a_stream_ending_inside_a_big_block_ends_the_framing() -> None:
    msg = _dac(1, "A", _codes(6))
    framer = _framer([msg[:50], msg[50:-10]])
    assert await framer.next() is None


async def test_a_big_message_buffer_is_reused_once_its_view_is_gone() -> None:
    # A fresh 16 MB buffer per block costs a memset and its page faults again.
    msgs = [_dac(1, name, _codes(7 + i)) for i, name in enumerate("ABC")]
    framer = _framer([b"\n".join(msgs) + b"\n"])
    first = await framer.next()
    assert isinstance(first, memoryview)
    held = first.obj
    del first
    second = await framer.next()  # the first's view is gone: its buffer again
    assert isinstance(second, memoryview) and second.obj is held and second == msgs[1]
    third = await framer.next()  # the second still alive: a buffer of its own
    assert isinstance(third, memoryview) and third.obj is not held and third == msgs[2]
    assert second == msgs[1]


async def test_a_big_payload_lies_8_byte_aligned_in_memory() -> None:
    # numpy byteswaps a misaligned int16 block ~1.7x slower; headers of any length.
    for name in ("A", "AB", "ABC", "ABCD", "ABCDEFG"):
        msg = _dac(1, name, _codes(9))
        framer = _framer([msg[:30], msg[30:] + b"\n"])
        got = await framer.next()
        assert isinstance(got, memoryview) and got == msg
        data = len(msg) - 2 * N
        assert np.frombuffer(got[data:], np.uint8).ctypes.data % 8 == 0
