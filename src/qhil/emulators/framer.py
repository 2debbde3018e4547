"""Splitting an emulator's input stream into commands.

Instruments differ in what ends a command (CR, LF, either) and SCPI program
messages may carry IEEE 488.2 definite-length binary blocks (``#3128<bytes>``)
that contain terminator bytes. The framer keeps one buffer per connection and
reads in large chunks, so a long pattern upload costs a few reads, not one per byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def open_block_end(buf: bytes | bytearray, upto: int) -> int | None:
    """If a definite-length block starting before ``upto`` is unfinished there, its end index."""
    i = 0
    while True:
        j = buf.find(b"#", i, upto)
        if j < 0 or j + 1 >= len(buf) or not (0x31 <= buf[j + 1] <= 0x39):
            return None
        n = buf[j + 1] - 0x30
        header_end = j + 2 + n
        if header_end > len(buf):
            return header_end
        try:
            length = int(buf[j + 2 : header_end])
        except ValueError:
            return None
        end = header_end + length
        if end > upto:
            return end
        i = end


class MessageFramer:
    """Yields one command (terminator and surrounding whitespace stripped) at a time."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        terminators: bytes,
        block_end: Callable[[bytes | bytearray, int], int | None] | None = None,
    ) -> None:
        self.reader = reader
        self.terminators = terminators
        self.block_end = block_end
        self.buf = bytearray()

    def _find(self, start: int) -> int:
        hits = [
            i
            for i in (self.buf.find(t, start) for t in (bytes([b]) for b in self.terminators))
            if i >= 0
        ]
        return min(hits) if hits else -1

    async def next(self) -> bytes | None:
        start = 0
        while True:
            idx = self._find(start)
            if idx >= 0 and self.block_end is not None:
                end = self.block_end(self.buf, idx)
                if end is not None:  # the terminator is inside a binary block: skip past it
                    if end > len(self.buf):
                        if not await self._fill():
                            return None
                        continue
                    start = end
                    continue
            if idx >= 0:
                msg = bytes(self.buf[:idx]).strip(b" \t\r\n")
                del self.buf[: idx + 1]
                start = 0
                if msg:
                    return msg
                continue
            start = max(0, len(self.buf))
            if not await self._fill():
                return None

    async def _fill(self) -> bool:
        chunk = await self.reader.read(1 << 16)
        if not chunk:
            return False
        self.buf += chunk
        return True
