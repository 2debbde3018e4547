"""RawIO over pyserial: device paths (/dev/ttyUSB0, /dev/pts/5, COM3) and URLs (socket://)."""

from __future__ import annotations

import contextlib
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
        try:
            data = bytearray(port.read(1))
            while data and len(data) < count:
                waiting = port.in_waiting
                if not waiting:
                    break
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
