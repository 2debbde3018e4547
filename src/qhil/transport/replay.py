"""Replay a recorded or hand-written exchange as a byte-exact protocol test.

In the spirit of InstrumentKit's ``expected_protocol``: the driver under test
talks to a :class:`ReplayIO` that checks every byte written against what is
expected and answers with the recorded reply bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from qhil.transport.exchange_log import Exchange
from qhil.transport.rawio import ReadTimeout


class ProtocolMismatch(AssertionError):
    """The driver wrote bytes other than the expected ones."""


class ReplayIO:
    """A RawIO whose peer is a script of (bytes out, bytes in) pairs."""

    def __init__(self, exchanges: Iterable[Exchange | tuple[bytes, bytes]]) -> None:
        pairs = [(e.out, e.inp) if isinstance(e, Exchange) else e for e in exchanges]
        self.expected_out = b"".join(o for o, _ in pairs)
        self.replies = b"".join(i for _, i in pairs)
        self.written = b""
        self._rpos = 0

    def open(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += data
        if not self.expected_out.startswith(self.written):
            raise ProtocolMismatch(
                f"driver wrote {self.written!r}, expected a prefix of {self.expected_out!r}"
            )

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        i = self.replies.find(terminator, self._rpos)
        if i < 0:
            partial = self.replies[self._rpos :]
            self._rpos = len(self.replies)
            raise ReadTimeout(partial)
        end = i + len(terminator)
        out = self.replies[self._rpos : end]
        self._rpos = end
        return out

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        out = self.replies[self._rpos : self._rpos + count]
        self._rpos += len(out)
        if len(out) < count:
            raise ReadTimeout(out)
        return out

    def discard_input(self) -> None:
        pass

    def resync(self, quiet_s: float) -> None:
        pass

    def assert_complete(self) -> None:
        """Everything expected was written and every reply was consumed."""
        if self.written != self.expected_out:
            raise ProtocolMismatch(f"driver wrote {self.written!r}, expected {self.expected_out!r}")
        if self._rpos != len(self.replies):
            raise ProtocolMismatch(f"unread reply bytes {self.replies[self._rpos :]!r}")
