"""Replay a recorded or hand-written exchange as a byte-exact protocol test.

In the spirit of InstrumentKit's ``expected_protocol``: the driver under test
talks to a :class:`ReplayIO` that checks every byte written against what is
expected and answers with the recorded reply bytes.

A sensitive exchange recorded as a placeholder (lengths only, see
:class:`~qhil.transport.exchange_log.Exchange`) accepts any bytes of the recorded
length; its reply, never recorded, cannot be replayed. Bytes written into a
placeholder never appear in a mismatch message.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from qhil.transport.exchange_log import Exchange
from qhil.transport.rawio import ReadTimeout


class ProtocolMismatch(AssertionError):
    """The driver wrote bytes other than the expected ones."""


@dataclass(frozen=True)
class _Span:
    """A stretch of the expected stream: literal bytes, or a placeholder of ``length``."""

    start: int
    length: int
    literal: bytes | None

    @property
    def end(self) -> int:
        return self.start + self.length


class _Stream:
    """Expected bytes in order, with placeholder holes; shown with the holes redacted."""

    def __init__(self, parts: list[bytes | int]) -> None:
        self.spans: list[_Span] = []
        pos = 0
        for part in parts:
            n = part if isinstance(part, int) else len(part)
            if n:
                self.spans.append(_Span(pos, n, None if isinstance(part, int) else part))
            pos += n
        self.length = pos
        self._starts = [s.start for s in self.spans]
        # Holes read as NUL bytes; reading them is refused (see hole_in).
        self.data = b"".join(s.literal or bytes(s.length) for s in self.spans)

    def _spans_in(self, a: int, b: int) -> list[_Span]:
        i = max(bisect.bisect_right(self._starts, a) - 1, 0)
        out = []
        while i < len(self.spans) and self.spans[i].start < b:
            if self.spans[i].end > a:
                out.append(self.spans[i])
            i += 1
        return out

    def matches(self, buf: bytes, a: int, b: int) -> bool:
        """``buf[a:b]`` agrees with the expected stream (holes take anything)."""
        if b > self.length:
            return False
        for s in self._spans_in(a, b):
            if s.literal is None:
                continue
            lo, hi = max(a, s.start), min(b, s.end)
            if buf[lo:hi] != s.literal[lo - s.start : hi - s.start]:
                return False
        return True

    def hole_in(self, a: int, b: int) -> bool:
        return any(s.literal is None for s in self._spans_in(a, b))

    def show(self, buf: bytes | None = None) -> str:
        """``buf`` (default: the expected bytes) with the placeholders' bytes redacted."""
        buf = self.data if buf is None else buf
        parts, pos = [], 0
        for s in self.spans:
            if s.start >= len(buf):
                break
            if s.literal is None:
                parts.append(repr(buf[pos : s.start])[2:-1])
                parts.append(f"<{s.length} sensitive bytes>")
                pos = min(s.end, len(buf))
        parts.append(repr(buf[pos:])[2:-1])
        return "b'" + "".join(parts) + "'"


class ReplayIO:
    """A RawIO whose peer is a script of (bytes out, bytes in) pairs."""

    def __init__(self, exchanges: Iterable[Exchange | tuple[bytes, bytes]]) -> None:
        out: list[bytes | int] = []
        replies: list[bytes | int] = []
        for e in exchanges:
            if isinstance(e, Exchange) and e.sensitive is not None:
                out.append(e.sensitive[0])
                replies.append(e.sensitive[1])
            else:
                o, i = (e.out, e.inp) if isinstance(e, Exchange) else e
                out.append(o)
                replies.append(i)
        self._expected = _Stream(out)
        self._replies = _Stream(replies)
        self.written = b""
        self._rpos = 0

    @property
    def expected_out(self) -> bytes:
        """The expected bytes (placeholders as NUL bytes)."""
        return self._expected.data

    def open(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        start = len(self.written)
        self.written += data
        if not self._expected.matches(self.written, start, len(self.written)):
            raise ProtocolMismatch(
                f"driver wrote {self._expected.show(self.written)}, expected a prefix of "
                f"{self._expected.show()}"
            )

    def _take(self, end: int) -> bytes:
        if self._replies.hole_in(self._rpos, end):
            raise ProtocolMismatch(
                "the reply to a sensitive exchange was not recorded (a length-only "
                "placeholder); it cannot be replayed"
            )
        out = self._replies.data[self._rpos : end]
        self._rpos = end
        return out

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        i = self._replies.data.find(terminator, self._rpos)
        if i < 0:
            raise ReadTimeout(self._take(self._replies.length))
        return self._take(i + len(terminator))

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        end = min(self._rpos + count, self._replies.length)
        out = self._take(end)
        if len(out) < count:
            raise ReadTimeout(out)
        return out

    def read_some(self, count: int, timeout_s: float) -> bytes:
        out = self._take(min(self._rpos + count, self._replies.length))
        if not out:
            raise ReadTimeout(b"")
        return out

    def discard_input(self) -> None:
        pass

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        return 0

    def assert_complete(self) -> None:
        """Everything expected was written and every reply was consumed."""
        n = len(self.written)
        if n != self._expected.length or not self._expected.matches(self.written, 0, n):
            raise ProtocolMismatch(
                f"driver wrote {self._expected.show(self.written)}, "
                f"expected {self._expected.show()}"
            )
        if self._rpos != self._replies.length:
            rest = self._replies.data[self._rpos :]
            if self._replies.hole_in(self._rpos, self._replies.length):
                raise ProtocolMismatch(f"{len(rest)} reply bytes unread (some sensitive)")
            raise ProtocolMismatch(f"unread reply bytes {rest!r}")
