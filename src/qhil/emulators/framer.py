"""Splitting an emulator's input stream into commands, and a command into its units.

Instruments differ in what ends a command (CR, LF, either). SCPI program messages
may also carry quoted strings and IEEE 488.2 definite-length binary blocks
(``#3128<128 bytes>``) whose payload may hold any byte, terminators included.
:class:`ProgramScanner` is the one scanner that knows both: it finds the next
terminator (or ``;``) that lies outside every block, with ``#`` inside a quoted
string taken as text. The framer keeps one buffer per connection, reads in large
chunks and resumes the scan where it stopped, so a long pattern upload costs a few
reads and one pass, not one per byte.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

#: Whitespace trimmed around a command (never inside a block).
WHITESPACE = b" \t\r\n"
_QUOTES = b"\"'"
_HASH = 0x23


@dataclass(frozen=True)
class Block:
    """Where a definite-length block lies in a message: ``#``, first payload byte, end."""

    start: int
    data: int
    end: int


@dataclass
class ProgramScanner:
    """Finds the bytes that split a program message, outside quotes and binary blocks.

    ``hard`` bytes always split (message terminators: an unclosed quote does not hold a
    connection open); ``soft`` bytes split outside quoted strings only (``;``). With
    ``blocks`` off (instruments without IEEE 488.2 blocks) quotes and ``#`` mean nothing.
    The scan is incremental: :meth:`find` resumes at :attr:`pos` after more bytes arrive.
    """

    hard: bytes = b""
    soft: bytes = b""
    blocks: bool = True
    pos: int = 0
    quote: int | None = None
    found: list[Block] = field(default_factory=list)

    def __post_init__(self) -> None:
        special = self.hard + self.soft + (_QUOTES + b"#" if self.blocks else b"")
        self._next = re.compile(b"[" + re.escape(special) + b"]").search if special else None
        # Inside a quoted string only its closing quote and the terminators matter.
        self._in_quote = {
            q: re.compile(b"[" + re.escape(self.hard + bytes([q])) + b"]").search for q in _QUOTES
        }

    def reset(self) -> None:
        """Start over at the beginning of a new message."""
        self.pos = 0
        self.quote = None
        self.found = []

    def find(self, buf: bytes | bytearray, *, final: bool) -> int | None:
        """Index of the next split byte from :attr:`pos`, or None if ``buf`` ends first.

        ``final`` says ``buf`` is the whole message: a block header or payload cut
        short by its end is then plain text; otherwise None means "wait for more
        bytes" and :attr:`pos` rests where the scan must resume.
        """
        while True:
            if self.quote is not None:
                m = self._in_quote[self.quote](buf, self.pos)
                if m is None:
                    self.pos = len(buf)
                    return None
                i = m.start()
                if buf[i] == self.quote:
                    self.quote = None
                    self.pos = i + 1
                    continue
                self.quote = None  # a terminator ends the message, quote or not
                self.pos = i
                return i
            m = self._next(buf, self.pos) if self._next is not None else None
            if m is None:
                self.pos = len(buf)
                return None
            i = m.start()
            c = buf[i]
            if c in self.hard or c in self.soft:
                self.pos = i
                return i
            if c in _QUOTES:
                self.quote = c
                self.pos = i + 1
                continue
            block = _block_at(buf, i)  # c is '#'
            if block is None:  # not a block header: '#' is text
                self.pos = i + 1
                continue
            if block.end > len(buf):  # header or payload not all here yet
                if final:
                    self.pos = i + 1
                    continue
                self.pos = i
                return None
            self.found.append(block)
            self.pos = block.end


def _block_at(buf: bytes | bytearray, i: int) -> Block | None:
    """The block whose ``#`` is at ``i``; its ``end`` past ``len(buf)`` if cut short; None
    if the bytes there cannot start a block (``#0`` indefinite blocks are not supported)."""
    if i + 1 >= len(buf):
        return Block(i, i + 2, i + 2)  # the digit count has not arrived yet
    n = buf[i + 1] - 0x30
    if not 1 <= n <= 9:
        return None
    digits = bytes(buf[i + 2 : i + 2 + n])
    if digits and not digits.isdigit():
        return None
    if len(digits) < n:
        return Block(i, i + 2 + n, i + 2 + n + 1)  # length digits still to come
    data = i + 2 + n
    return Block(i, data, data + int(digits))


def split_units(message: bytes) -> list[tuple[bytes, list[Block]]]:
    """A complete program message split at ``;`` outside quotes and blocks.

    Each unit comes with its blocks, positions relative to the unit.
    """
    scanner = ProgramScanner(soft=b";")
    units: list[tuple[bytes, list[Block]]] = []
    start = 0
    while True:
        i = scanner.find(message, final=True)
        end = len(message) if i is None else i
        units.append(
            (
                message[start:end],
                [Block(b.start - start, b.data - start, b.end - start) for b in scanner.found],
            )
        )
        if i is None:
            return units
        start = i + 1
        scanner.found = []
        scanner.pos = start


def trim(message: bytes, blocks: list[Block]) -> bytes:
    """``message`` without surrounding whitespace, but never cutting into its last block."""
    stop = len(message.rstrip(WHITESPACE))
    if blocks:
        stop = max(stop, blocks[-1].end)
    lead = len(message) - len(message.lstrip(WHITESPACE))
    return message[lead:stop] if lead < stop else b""


class MessageFramer:
    """Yields one command at a time: up to a terminator, surrounding whitespace trimmed.

    With ``blocks`` on (SCPI instruments) a terminator inside a definite-length block is
    payload, and whitespace at the end of a block's payload is kept.
    """

    def __init__(
        self, reader: asyncio.StreamReader, terminators: bytes, *, blocks: bool = False
    ) -> None:
        self.reader = reader
        self.terminators = terminators
        self.buf = bytearray()
        self.scanner = ProgramScanner(hard=terminators, blocks=blocks)

    async def next(self) -> bytes | None:
        while True:
            idx = self.scanner.find(self.buf, final=False)
            if idx is None:
                if not await self._fill():
                    return None
                continue
            msg = trim(bytes(self.buf[:idx]), self.scanner.found)
            del self.buf[: idx + 1]
            self.scanner.reset()
            if msg:
                return msg

    async def _fill(self) -> bool:
        chunk = await self.reader.read(1 << 16)
        if not chunk:
            return False
        self.buf += chunk
        return True
