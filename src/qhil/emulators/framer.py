"""Splitting an emulator's input stream into commands, and a command into its units.

Instruments differ in what ends a command (CR, LF, either). SCPI program messages
may also carry quoted strings and IEEE 488.2 definite-length binary blocks
(``#3128<128 bytes>``) whose payload may hold any byte, terminators included.
:class:`ProgramScanner` is the one scanner that knows both: it finds the next
terminator (or ``;``) that lies outside every block, with ``#`` inside a quoted
string taken as text. The framer keeps one buffer per connection, reads in large
chunks and resumes the scan where it stopped, so a long pattern upload costs a few
reads and one pass, not one per byte; a block of at least :data:`DIRECT_BLOCK` bytes is
received straight into its message's buffer (when the reader offers ``readinto``) and the
message handed on as a view of it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass, field

import numpy as np

#: Whitespace trimmed around a command (never inside a block).
WHITESPACE = b" \t\r\n"
_LEADING_WHITESPACE = re.compile(b"[" + re.escape(WHITESPACE) + b"]*")
_QUOTES = b"\"'"
_HASH = 0x23
#: A message: bytes, or a view of a big one's buffer (slices of either are of its kind).
Buf = bytes | memoryview


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
        found, in_quote = _patterns(self.hard, self.soft, self.blocks)
        self._next = found.search if found is not None else None
        self._in_quote = {q: pattern.search for q, pattern in in_quote.items()}

    def reset(self) -> None:
        """Start over at the beginning of a new message."""
        self.pos = 0
        self.quote = None
        self.found = []

    def find(self, buf: bytes | bytearray | memoryview, *, final: bool) -> int | None:
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


@functools.cache
def _patterns(
    hard: bytes, soft: bytes, blocks: bool
) -> tuple[re.Pattern[bytes] | None, dict[int, re.Pattern[bytes]]]:
    """A scanner's patterns, compiled once per kind (every SCPI message makes a scanner)."""
    special = hard + soft + (_QUOTES + b"#" if blocks else b"")
    found = re.compile(b"[" + re.escape(special) + b"]") if special else None
    # Inside a quoted string only its closing quote and the terminators matter.
    in_quote = {q: re.compile(b"[" + re.escape(hard + bytes([q])) + b"]") for q in _QUOTES}
    return found, in_quote


def _block_at(buf: bytes | bytearray | memoryview, i: int) -> Block | None:
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


def split_units(message: Buf) -> list[tuple[Buf, list[Block]]]:
    """A complete program message split at ``;`` outside quotes and blocks.

    Each unit comes with its blocks, positions relative to the unit.
    """
    scanner = ProgramScanner(soft=b";")
    units: list[tuple[Buf, list[Block]]] = []
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
    lead, stop = _trimmed(message, blocks)
    return message[lead:stop] if lead < stop else b""


def _trimmed(message: bytes | bytearray | memoryview, blocks: list[Block]) -> tuple[int, int]:
    """Where :func:`trim` cuts: measured without stripping copies (a message is a 16 MB
    upload at times)."""
    after = blocks[-1].end if blocks else 0
    stop = after + len(bytes(message[after:]).rstrip(WHITESPACE))
    m = _LEADING_WHITESPACE.match(message)  # (always matches, maybe empty)
    return (m.end() if m else 0), stop


#: Input buffer of an instrument whose manual states none: no public manual of the
#: emulated instruments gives its size, and every command qhil or the third-party
#: drivers send is far shorter (the longest text commands are < 200 bytes), so this
#: conservative bound accepts them all and keeps an emulator's memory bounded.
DEFAULT_INPUT_BUFFER = 4096

_READ_CHUNK = 1 << 16
#: A block payload at least this long is received straight into the message's buffer
#: (when the reader can: :class:`qhil.emulators.server.BlockReader`) and the message is
#: handed on as a view of it, not copied (see :meth:`MessageFramer.next`).
DIRECT_BLOCK = 1 << 20
_ALIGN = 8


@dataclass(frozen=True)
class Overrun:
    """In place of a message, from :meth:`MessageFramer.next`: the message outgrew the
    instrument's input buffer (``what`` = "line"), or a block header declared more than
    the instrument takes (``what`` = "block"). It is discarded through its terminator."""

    what: str
    size: int


class MessageFramer:
    """Yields one command at a time: up to a terminator, surrounding whitespace trimmed.

    With ``blocks`` on (SCPI instruments) a terminator inside a definite-length block is
    payload, and whitespace at the end of a block's payload is kept.

    Bounded as the instrument's input buffer is: a message whose text (block payloads not
    counted) grows past ``max_line`` bytes without a terminator, or a block whose header
    declares more than ``max_block`` bytes, yields one :class:`Overrun`; its bytes are
    dropped as they come, up to the next terminator, and framing resumes after it.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        terminators: bytes,
        *,
        blocks: bool = False,
        max_line: int = DEFAULT_INPUT_BUFFER,
        max_block: int = DEFAULT_INPUT_BUFFER,
    ) -> None:
        self.reader = reader
        self.terminators = terminators
        self.buf = bytearray()
        self.scanner = ProgramScanner(hard=terminators, blocks=blocks)
        self.max_line = max_line
        self.max_block = max_block
        self._discarding = False
        self._spare: bytearray | None = None
        self._any_terminator = re.compile(b"[" + re.escape(terminators) + b"]").search

    async def next(self) -> bytes | memoryview | Overrun | None:
        """The next command (None: the stream ended); one with a block of at least :data:`DIRECT_BLOCK` bytes
        comes as a read-only view of its own buffer (which the framer then leaves to it),
        whose payload was received straight into place: no copy of a 16 MB upload."""
        while True:
            if self._discarding:
                m = self._any_terminator(self.buf)
                if m is None:
                    self.buf.clear()
                    if not await self._fill():
                        return None
                    continue
                del self.buf[: m.end()]
                self._discarding = False
            idx = self.scanner.find(self.buf, final=False)
            if idx is None:
                overrun = self._overrun()
                if overrun is not None:
                    # What is buffered up to here belongs to the message that overflowed
                    # (no terminator outside its blocks); a block that promises too much
                    # cannot be trusted, so from it on bytes are dropped to any terminator.
                    del self.buf[: self.scanner.pos if overrun.what == "block" else len(self.buf)]
                    self.scanner.reset()
                    self._discarding = True
                    return overrun
                if not await self._fill_block():
                    return None
                continue
            text = idx - sum(b.end - b.data for b in self.scanner.found)
            blocks = self.scanner.found
            msg: bytes | memoryview
            if any(b.end - b.data >= DIRECT_BLOCK for b in blocks):
                # The buffer becomes the message's; what follows it starts a new one.
                whole, self.buf = self.buf, self.buf[idx + 1 :]
                self._spare = whole  # reused for the next big block if its view is gone
                view = memoryview(whole)[:idx].toreadonly()
                lead, stop = _trimmed(view, blocks)
                msg = view[lead:stop] if lead < stop else b""
            else:
                with memoryview(self.buf) as view:  # one copy (a bytearray slice is a second)
                    raw = bytes(view[:idx])
                msg = trim(raw, blocks)
                del self.buf[: idx + 1]
            self.scanner.reset()
            if text > self.max_line:  # it came whole, in one read, but did not fit either
                return Overrun("line", text)
            big = next((b for b in blocks if b.end - b.data > self.max_block), None)
            if big is not None:  # as refused when it arrives in pieces (see _overrun)
                return Overrun("block", big.end - big.data)
            if msg:
                return msg

    def _overrun(self) -> Overrun | None:
        """The overrun the bytes so far make, if any (the message is still incomplete)."""
        allowed = self.max_line + sum(b.end - b.data for b in self.scanner.found)
        pos = self.scanner.pos
        if self.scanner.blocks and self.scanner.quote is None and pos < len(self.buf):
            pending = _block_at(self.buf, pos) if self.buf[pos] == _HASH else None
            if pending is not None:  # a block still arriving: its declared size is the bound
                declared = pending.end - pending.data
                if declared > self.max_block:
                    return Overrun("block", declared)
                allowed += declared
        if len(self.buf) > allowed:
            return Overrun("line", len(self.buf))
        return None

    async def _fill_block(self) -> bool:
        """More bytes: a big block's payload still to come straight into the buffer, grown
        to hold it (its capacity kept for the message's end); else one read."""
        readinto = getattr(self.reader, "readinto", None)
        pos = self.scanner.pos
        if readinto is None or self.scanner.quote is not None or pos >= len(self.buf):
            return await self._fill()
        block = _block_at(self.buf, pos) if self.buf[pos] == _HASH else None
        if block is None or block.end - block.data < DIRECT_BLOCK or block.end <= len(self.buf):
            return await self._fill()
        have = len(self.buf)
        grown = self._big_buffer(block.end + _ALIGN)
        # The payload 8-byte aligned in memory: numpy byteswaps a misaligned int16 block
        # ~1.7x slower (the 33500B's header leaves it at an odd offset). Dropping leading
        # bytes only advances a bytearray's start.
        with memoryview(grown) as view:
            start = np.frombuffer(view, np.uint8, count=1).ctypes.data
        del grown[: -(start + block.data) % _ALIGN]
        del grown[block.end :]
        grown[:have] = self.buf
        with memoryview(grown) as view:
            got = await readinto(view[have:])
        del grown[have + got :]
        self.buf = grown
        return got > 0

    def _big_buffer(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes (contents undefined) with room for a message's end:
        the previous big message's buffer once nothing holds a view of it (its pages are
        mapped already: a fresh 16 MB buffer costs a memset and ~4,000 page faults)."""
        spare, self._spare = self._spare, None
        if spare is not None and len(spare) + _READ_CHUNK >= size:
            try:
                spare.append(0)  # refused while a view of the old message is alive
            except BufferError:
                pass
            else:
                if len(spare) < size:  # within the room it was allocated with
                    spare.extend(bytes(size - len(spare)))
                del spare[size:]  # a small shrink keeps the allocation
                return spare
        buf = bytearray(size + _READ_CHUNK)
        del buf[size:]
        return buf

    async def _fill(self) -> bool:
        chunk = await self.reader.read(_READ_CHUNK)
        if not chunk:
            return False
        self.buf += chunk
        return True
