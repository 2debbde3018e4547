"""RawIO over pyserial: device paths (/dev/ttyUSB0, /dev/pts/5, COM3) and URLs (socket://)."""

from __future__ import annotations

import contextlib
import os
import time

import serial

from qhil.transport.framing import Framing
from qhil.transport.rawio import LinkDown, OpenFailed, ReadTimeout


class SerialIO:
    """Blocking I/O through a pyserial port."""

    #: A serial line keeps what another client left unread: the session drains it at open.
    serial_line = True

    def __init__(self, port: str, framing: Framing) -> None:
        self.port = port
        self.framing = framing
        self._ser: serial.SerialBase | None = None

    def open(self, timeout_s: float) -> None:
        s = self.framing.serial
        try:
            self._ser = serial.serial_for_url(
                self.port,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                rtscts=s.rtscts,
                xonxoff=s.xonxoff,
                timeout=timeout_s,
                write_timeout=timeout_s,
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise OpenFailed(str(exc)) from exc

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def _port(self) -> serial.SerialBase:
        if self._ser is None or not self._ser.is_open:
            raise LinkDown("not open")
        return self._ser

    def write(self, data: bytes) -> None:
        try:
            self._port().write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(str(exc)) from exc

    def _set_timeout(self, port: serial.SerialBase, timeout_s: float) -> None:
        # Setting a timeout reconfigures the port: on a vanished device that fails too.
        if port.timeout != timeout_s:
            try:
                port.timeout = timeout_s
            except (serial.SerialException, OSError) as exc:
                raise LinkDown(str(exc)) from exc

    def read_until(self, terminator: bytes, timeout_s: float) -> bytes:
        port = self._port()
        self._set_timeout(port, timeout_s)
        try:
            data = port.read_until(terminator)
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(str(exc)) from exc
        if not data.endswith(terminator):
            raise ReadTimeout(data)
        return bytes(data)

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        port = self._port()
        self._set_timeout(port, timeout_s)
        try:
            data = port.read(count)
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(str(exc)) from exc
        if len(data) < count:
            raise ReadTimeout(data)
        return bytes(data)

    def read_some(self, count: int, timeout_s: float) -> bytes:
        """Up to ``count`` bytes: those already received, else the first to arrive within
        ``timeout_s`` and what came with them; ReadTimeout (empty) if none."""
        port = self._port()
        self._set_timeout(port, timeout_s)
        fd = getattr(port, "fd", None)  # a posix port's non-blocking descriptor
        try:
            waiting = port.in_waiting  # what has arrived, else wait for the first byte
            data = bytearray(port.read(min(count, waiting) if waiting else 1))
            if isinstance(fd, int):
                # The rest straight from the descriptor: a tty hands over ~4 KiB per read,
                # and pyserial's read costs ~10x a bare os.read (issue 12: ~1000 reads per
                # 100 ms TDC1 gate).
                while data and len(data) < count:
                    try:
                        chunk = os.read(fd, count - len(data))
                    except BlockingIOError:
                        break
                    if not chunk:  # nothing more yet (raw tty, VMIN 0); a hang-up shows
                        break  # at the next pyserial read
                    data += chunk
            while data and len(data) < count and (waiting := port.in_waiting):
                data += port.read(min(waiting, count - len(data)))
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(str(exc)) from exc
        if not data:
            raise ReadTimeout(b"")
        return bytes(data)

    def resync(self, quiet_s: float, max_s: float | None = None) -> int:
        """Drain until nothing has arrived for ``quiet_s``; return the bytes dropped."""
        port = self._port()
        self._set_timeout(port, quiet_s)
        dropped = 0
        deadline = None if max_s is None else time.monotonic() + max_s
        try:
            while data := port.read(1 << 16):
                dropped += len(data)
                if deadline is not None and time.monotonic() > deadline:
                    raise ReadTimeout(data[-64:])
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(str(exc)) from exc
        return dropped

    def discard_input(self) -> None:
        if self._ser is not None and self._ser.is_open:
            with contextlib.suppress(Exception):
                self._ser.reset_input_buffer()
