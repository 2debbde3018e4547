"""RawIO over pyvisa (pyvisa-py by default; any VISA library by name)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import pyvisa
import serial
from pyvisa import constants
from pyvisa.errors import VisaIOError

from qhil.transport.framing import Framing
from qhil.transport.rawio import LinkDown, OpenFailed, ReadTimeout

_MANAGERS: dict[str, pyvisa.ResourceManager] = {}
_MANAGERS_LOCK = threading.Lock()

# VISA status codes that mean the link itself is gone, not that a reply is late.
_LINK_DOWN_CODES = {
    constants.StatusCode.error_connection_lost,
    constants.StatusCode.error_io,
    constants.StatusCode.error_invalid_object,
    constants.StatusCode.error_closing_failed,
}


#: One viRead of at most n bytes -> (the bytes it read, its VISA status), a timeout included.
ChunkReader = Callable[[int], tuple[bytes, int]]

#: Longest single read while waiting for a terminator (pyvisa's default chunk size).
_CHUNK = 20 * 1024
#: pyvisa warns when a read filled its count, unless told not to (as its read_bytes does).
_FULL_READ = constants.StatusCode.success_max_count_read
#: How far past its deadline a read may wait rather than re-set the timeout first.
_TIMEOUT_SLACK_MS = 2


def chunk_reader(res: Any) -> ChunkReader:
    """A viRead for ``res`` that keeps what a timed-out read had already taken off the line.

    pyvisa's ``visalib.read`` raises ``VisaIOError`` on a timeout and drops the bytes
    that arrived (and ``read_bytes`` / ``read_raw`` drop every earlier chunk too), so
    the read goes one level down: pyvisa-py's session objects return (bytes, status)
    themselves; a ctypes VISA library (NI, Keysight, R&S) fills a buffer and a count
    that we own even though pyvisa's error check raises afterwards. Any other library
    falls back to ``visalib.read``, which may lose the bytes of the read that timed out.
    """
    visalib, session = res.visalib, res.session
    sessions = getattr(visalib, "sessions", None)
    backend = sessions.get(session) if isinstance(sessions, dict) else None
    if backend is not None and callable(getattr(backend, "read", None)):  # pyvisa-py
        read: ChunkReader = backend.read
        return read
    if hasattr(getattr(visalib, "lib", None), "viRead"):
        return ctypes_chunk_reader(visalib, session)

    def fallback(count: int) -> tuple[bytes, int]:
        try:
            with visalib.ignore_warning(session, _FULL_READ):
                data, status = visalib.read(session, count)
        except VisaIOError as exc:
            return b"", exc.error_code
        return bytes(data), int(status)

    return fallback


def block_reader(res: Any, chunk: ChunkReader) -> ChunkReader:
    """The viRead for a byte block of known length (no termination to stop at).

    pyvisa-py's serial session reads one byte per Python call (~0.2 MB/s measured on a
    pty); a block is read from the pyserial port under it in one call instead (same
    port, same timeout, also partial on a timeout). Everything else reads as ``chunk``.
    """
    sessions = getattr(res.visalib, "sessions", None)
    backend = sessions.get(res.session) if isinstance(sessions, dict) else None
    port = getattr(backend, "interface", None)
    if not isinstance(port, serial.SerialBase):
        return chunk

    def read(count: int) -> tuple[bytes, int]:
        data = bytes(port.read(count))
        if len(data) < count:
            return data, constants.StatusCode.error_timeout
        return data, _FULL_READ

    return read


def ctypes_chunk_reader(visalib: Any, session: int) -> ChunkReader:
    """viRead through pyvisa's ctypes wrapper (``visalib.lib``), with our own buffer and count.

    VISA sets the returned count also when viRead fails with a timeout; the wrapper's
    error check raises before returning, but the buffer and count are ours to read.
    """
    lib = visalib.lib

    def read(count: int) -> tuple[bytes, int]:
        buf = ctypes.create_string_buffer(count)
        got = ctypes.c_uint32(0)
        try:
            with visalib.ignore_warning(session, _FULL_READ):
                status = int(lib.viRead(session, buf, count, ctypes.byref(got)))
        except VisaIOError as exc:
            status = exc.error_code
        return buf.raw[: min(got.value, count)], status

    return read


def resource_manager(visa_library: str = "@py") -> pyvisa.ResourceManager:
    """One ResourceManager per VISA library and process (pyvisa's own advice)."""
    with _MANAGERS_LOCK:
        rm = _MANAGERS.get(visa_library)
        if rm is None:
            rm = pyvisa.ResourceManager(visa_library)
            _MANAGERS[visa_library] = rm
        return rm


class VisaIO:
    """Blocking I/O through a pyvisa message-based resource."""

    def __init__(self, resource: str, framing: Framing, visa_library: str = "@py") -> None:
        self.resource = resource
        self.framing = framing
        self.visa_library = visa_library
        self._res: Any = None
        self._read_chunk: ChunkReader | None = None
        self._read_block: ChunkReader | None = None
        self._timeout_ms: int | None = None
        self._termchar: bytes | None = None
        self._open_timeout_s = 3.0

    @property
    def serial_line(self) -> bool:
        """A serial line keeps what another client left unread (a socket or GPIB link
        does not, and reading an idle GPIB instrument would make it report -420)."""
        return isinstance(self._res, pyvisa.resources.SerialInstrument)

    def open(self, timeout_s: float) -> None:
        rm = resource_manager(self.visa_library)
        try:
            res: Any = rm.open_resource(self.resource, open_timeout=int(timeout_s * 1000))
        except VisaIOError as exc:
            raise OpenFailed(f"VISA could not open it: {exc.description}") from exc
        except (
            Exception
        ) as exc:  # malformed string, refused, unknown host (pyvisa-py raises bare Exception)
            raise OpenFailed(str(exc) or type(exc).__name__) from exc
        if isinstance(res, pyvisa.resources.SerialInstrument):
            s = self.framing.serial
            res.baud_rate = s.baudrate
            res.data_bits = s.bytesize
            res.parity = {
                "N": constants.Parity.none,
                "E": constants.Parity.even,
                "O": constants.Parity.odd,
            }[s.parity]
            res.stop_bits = {
                1: constants.StopBits.one,
                1.5: constants.StopBits.one_and_a_half,
                2: constants.StopBits.two,
            }[s.stopbits]
            res.end_input = constants.SerialTermination.termination_char
        self._res = res
        self._open_timeout_s = timeout_s
        sock = self._socket()
        if sock is not None:
            # pyvisa-py connects non-blocking and reports a refused port as success.
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            try:
                sock.getpeername()
            except OSError:
                self.close()
                reason = os.strerror(err) if err else "not connected"
                raise OpenFailed(f"TCP connection failed: {reason}") from None
        # Terminations are handled here, byte-exactly, not by pyvisa's str layer.
        res.write_termination = ""
        res.read_termination = None
        self._res = res
        self._read_chunk = chunk_reader(res)
        self._read_block = block_reader(res, self._read_chunk)
        self._timeout_ms = None
        self._termchar = None

    def close(self) -> None:
        res, self._res = self._res, None
        self._read_chunk = self._read_block = None
        if res is not None:
            # closing a dead link must not mask the original error
            with contextlib.suppress(Exception):
                res.close()

    def _set_timeout(self, timeout_s: float, slack_ms: int = 0) -> None:
        """Set the VISA timeout unless it is already ``timeout_s``, or (with ``slack_ms``)
        already at most that much longer."""
        ms = max(1, int(timeout_s * 1000))
        cur = self._timeout_ms
        if cur is None or ms > cur or ms < cur - slack_ms:
            self._configure(lambda: setattr(self._res, "timeout", ms))
            self._timeout_ms = ms

    def _set_termchar(self, terminator: bytes) -> None:
        if terminator != self._termchar:

            def apply() -> None:
                self._res.set_visa_attribute(constants.ResourceAttribute.termchar, terminator[-1])
                self._res.set_visa_attribute(constants.ResourceAttribute.termchar_enabled, True)

            self._configure(apply)
            self._termchar = terminator

    def _configure(self, apply: Callable[[], None]) -> None:
        """Change a port attribute; on a vanished device that fails like any I/O."""
        try:
            apply()
        except VisaIOError as exc:
            self._raise_for(exc)
        except Exception as exc:  # pyvisa-py's serial backend raises pyserial's own errors
            raise LinkDown(str(exc) or type(exc).__name__) from exc

    def _socket(self) -> socket.socket | None:
        """The TCP socket under a pyvisa-py SOCKET session, if that is what this is."""
        try:
            sess = self._res.visalib.sessions[self._res.session]
        except Exception:
            return None
        sock = getattr(sess, "interface", None)
        return sock if isinstance(sock, socket.socket) else None

    def _peer_closed(self) -> bool:
        """pyvisa-py reports a closed TCP peer as a timeout; look at the socket itself."""
        sock = self._socket()
        if sock is None:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _raise_for(self, exc: VisaIOError, partial: bytes = b"") -> NoReturn:
        if exc.error_code == constants.StatusCode.error_timeout:
            if self._peer_closed():
                raise LinkDown("peer closed the connection") from exc
            raise ReadTimeout(partial) from exc
        if exc.error_code in _LINK_DOWN_CODES:
            raise LinkDown(exc.description) from exc
        raise LinkDown(f"VISA error {exc.error_code}: {exc.description}") from exc

    def write(self, data: bytes) -> None:
        if self._res is None:
            raise LinkDown("not open")
        try:
            self._res.write_raw(data)
        except VisaIOError as exc:
            self._raise_for(exc)
        except OSError as exc:
            raise LinkDown(str(exc)) from exc

    def _read_some(
        self, read: ChunkReader | None, count: int, deadline: float, so_far: bytearray
    ) -> None:
        """Append up to ``count`` bytes to ``so_far``, waiting at most until ``deadline``
        (``time.monotonic``); on a timeout raise ReadTimeout with everything read so far."""
        if self._res is None or read is None:
            raise LinkDown("not open")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._raise_for(VisaIOError(constants.StatusCode.error_timeout), bytes(so_far))
        # Re-setting a serial port's timeout reconfigures the port: let a read outlast
        # the deadline by a few ms rather than do that before every read.
        self._set_timeout(remaining, slack_ms=_TIMEOUT_SLACK_MS)
        try:
            data, status = read(count)
        except VisaIOError as exc:
            self._raise_for(exc, bytes(so_far))
        except OSError as exc:  # pyserial's and the socket's own errors, from pyvisa-py
            raise LinkDown(str(exc) or type(exc).__name__) from exc
        so_far += data
        if status < 0:
            self._raise_for(VisaIOError(status), bytes(so_far))
        if not data:
            raise LinkDown("peer closed the connection")

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        if self._res is None:
            raise LinkDown("not open")
        self._set_termchar(terminator)
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        # A read ends at the termination character (the terminator's last byte), so a
        # complete terminator can only ever sit at the end of buf.
        while not buf.endswith(terminator):
            self._read_some(self._read_chunk, _CHUNK, deadline, buf)
        return bytes(buf)

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        if self._res is None:
            raise LinkDown("not open")
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        # A termination character inside the block ends one read early: read on.
        while len(buf) < count:
            self._read_some(self._read_block, count - len(buf), deadline, buf)
        return bytes(buf)

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        """A socket is reconnected (a late reply dies with the old connection); other
        interfaces are drained until quiet. Returns the bytes drained (those already
        in the VISA library's own buffer are dropped uncounted)."""
        if self._res is None:
            return 0
        if self._socket() is not None:
            self.close()
            self.open(self._open_timeout_s)
            return 0
        self.discard_input()
        self._set_timeout(quiet_s)
        read = self._read_block
        if read is None:
            raise LinkDown("not open")
        dropped = 0
        deadline = None if max_s is None else time.monotonic() + max_s
        # Blocks, not bytes: pyvisa-py's serial session reads one byte per Python call
        # (~0.2 MB/s), slower than an instrument can stream.
        try:
            while True:
                data, status = read(_CHUNK)
                if status < 0 and status != constants.StatusCode.error_timeout:
                    self._raise_for(VisaIOError(status))
                if not data:
                    return dropped  # a whole quiet period: nothing late is left
                dropped += len(data)
                if deadline is not None and time.monotonic() > deadline:
                    raise ReadTimeout(data[-64:])
        except VisaIOError as exc:
            if exc.error_code != constants.StatusCode.error_timeout:
                self._raise_for(exc)
        except OSError as exc:
            raise LinkDown(str(exc) or type(exc).__name__) from exc
        return dropped

    def discard_input(self) -> None:
        if self._res is None:
            return
        with contextlib.suppress(Exception):
            self._res.flush(constants.BufferOperation.discard_read_buffer_no_io)
        sess = getattr(self._res.visalib, "sessions", {}).get(self._res.session)
        pending = getattr(sess, "_pending_buffer", None)
        if isinstance(pending, bytearray):  # pyvisa-py keeps its own read-ahead
            pending.clear()
