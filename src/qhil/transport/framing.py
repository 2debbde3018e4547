"""How an instrument frames its messages on the wire."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SerialSettings:
    """Line settings of a serial instrument (ignored on sockets)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False


@dataclass(frozen=True)
class Framing:
    """Message framing: what ends a command and what ends a reply line."""

    write_termination: str = "\n"
    read_termination: str = "\n"
    encoding: str = "ascii"
    serial: SerialSettings = SerialSettings()

    @property
    def write_term_bytes(self) -> bytes:
        return self.write_termination.encode(self.encoding)

    @property
    def read_term_bytes(self) -> bytes:
        return self.read_termination.encode(self.encoding)
