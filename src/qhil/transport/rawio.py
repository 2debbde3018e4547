"""Blocking byte-level I/O that a session runs in its worker thread.

Backends (pyvisa, pyserial, replay) implement :class:`RawIO`. They signal the
two failures the session must tell apart with the internal exceptions below;
the session turns them into the public typed errors of :mod:`qhil.errors`.
"""

from __future__ import annotations

from typing import Protocol


class ReadTimeout(Exception):
    """No terminator within the timeout; ``partial`` holds what did arrive."""

    def __init__(self, partial: bytes = b"") -> None:
        super().__init__("read timeout")
        self.partial = partial


class LinkDown(Exception):
    """The peer closed the connection or the device disappeared."""


class OpenFailed(Exception):
    """The resource could not be opened; the message says why."""


class RawIO(Protocol):
    """Byte transport of one instrument connection."""

    def open(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        """Read up to and including ``terminator``; raise ReadTimeout or LinkDown."""
        ...

    def read_exact(self, count: int, timeout_s: float) -> bytes: ...

    # Optional: ``read_some(count, timeout_s) -> bytes``, up to ``count`` bytes as soon as
    # any have arrived (ReadTimeout if none); streams read through it (`Reader.some`).

    def discard_input(self) -> None:
        """Drop bytes already received."""
        ...

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        """After a timeout or an abandoned exchange: make sure no late reply is left to be
        taken for the next one (drain until the line is quiet, or reconnect a socket).
        Returns how many bytes it dropped, where it can tell; raises ReadTimeout if the
        line is still not quiet after ``max_s`` (None: no bound)."""
        ...
