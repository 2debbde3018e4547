"""RawIO over pyvisa (pyvisa-py by default; any VISA library by name)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pyvisa
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
        self._timeout_ms: int | None = None
        self._termchar: bytes | None = None
        self._open_timeout_s = 3.0

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
        self._timeout_ms = None
        self._termchar = None

    def close(self) -> None:
        res, self._res = self._res, None
        if res is not None:
            # closing a dead link must not mask the original error
            with contextlib.suppress(Exception):
                res.close()

    def _set_timeout(self, timeout_s: float) -> None:
        ms = max(1, int(timeout_s * 1000))
        if ms != self._timeout_ms:
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

    def _raise_for(self, exc: VisaIOError, partial: bytes = b"") -> None:
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

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        if self._res is None:
            raise LinkDown("not open")
        self._set_timeout(timeout_s)
        self._set_termchar(terminator)
        buf = b""
        while not buf.endswith(terminator):
            try:
                chunk = self._res.read_raw()
            except VisaIOError as exc:
                self._raise_for(exc, buf)
            except OSError as exc:
                raise LinkDown(str(exc)) from exc
            if not chunk:
                raise LinkDown("peer closed the connection")
            buf += chunk
        return buf

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        if self._res is None:
            raise LinkDown("not open")
        self._set_timeout(timeout_s)
        try:
            return bytes(self._res.read_bytes(count, break_on_termchar=False))
        except VisaIOError as exc:
            self._raise_for(exc)
        except OSError as exc:
            raise LinkDown(str(exc)) from exc
        raise AssertionError("unreachable")

    def resync(self, quiet_s: float) -> None:
        """A socket is reconnected (a late reply dies with the old connection); other
        interfaces are drained until quiet."""
        if self._res is None:
            return
        if self._socket() is not None:
            self.close()
            self.open(self._open_timeout_s)
            return
        self.discard_input()
        self._set_timeout(quiet_s)
        try:
            while True:
                self._res.read_bytes(1, break_on_termchar=False)
        except VisaIOError as exc:
            if exc.error_code != constants.StatusCode.error_timeout:
                self._raise_for(exc)
        except Exception as exc:
            raise LinkDown(str(exc) or type(exc).__name__) from exc

    def discard_input(self) -> None:
        if self._res is None:
            return
        with contextlib.suppress(Exception):
            self._res.flush(constants.BufferOperation.discard_read_buffer_no_io)
        sess = getattr(self._res.visalib, "sessions", {}).get(self._res.session)
        pending = getattr(sess, "_pending_buffer", None)
        if isinstance(pending, bytearray):  # pyvisa-py keeps its own read-ahead
            pending.clear()
