"""What the S-Fifteen boards share: separators, silent setters and their error lines.

Every S-Fifteen board is a USB CDC-ACM virtual serial port (baud rate irrelevant).
Commands are ASCII, case-insensitive, and end with ``;``, CR or LF (several may be
chained with ``;``). A query is answered by one line ending in LF (CR LF in
practice); a setter is answered by nothing when it succeeds and by one error line
when it fails. The boards have no error codes or error queue, so the error
convention is the text of that line.

The error texts themselves are not documented anywhere public
(docs/protocols/s-fifteen-*.md, UNVERIFIED): this driver takes a line that starts
with ``Error`` or reads ``Unknown command`` to be an error report, which is what
the emulators answer.
"""

from __future__ import annotations

from typing import ClassVar

from qhil.drivers.declarations import Control
from qhil.drivers.instrument import Instrument
from qhil.errors import InstrumentError
from qhil.transport.framing import Framing
from qhil.transport.rawio import ReadTimeout
from qhil.transport.session import Reader

#: The boards have no numeric codes; every error report carries this code.
ERROR_CODE = "Error"
UNKNOWN_COMMAND = "Unknown command"
OUT_OF_RANGE = "value out of range"


def parse_error_line(line: str) -> tuple[str, str] | None:
    """``Error: value out of range`` -> ``("Error", "value out of range")``; None if no error."""
    text = line.strip()
    if text[:5].lower() == "error":
        rest = text[5:].lstrip(" :")
        return ERROR_CODE, rest or text
    if text.lower() == UNKNOWN_COMMAND.lower():
        return ERROR_CODE, text
    return None


def format_error_line(text: str) -> str:
    """The line an emulated board answers a failed command with (no terminator)."""
    return text if text == UNKNOWN_COMMAND else f"{ERROR_CODE}: {text}"


class S15Instrument(Instrument):
    """Base of the S-Fifteen drivers."""

    # S15lib ends every command with ";" (SerialConnection.writeline) and reads to LF.
    framing: ClassVar[Framing] = Framing(write_termination=";", read_termination="\n")
    timeout_s: ClassVar[float] = 1.0
    #: Termination of setters if it differs from the framing's (the SPD's S15lib class
    #: sends setters with CR LF but queries with ";").
    setter_termination: ClassVar[str | None] = None
    #: Name of a cheap query declaration sent after every setter: a failed setter's
    #: error line arrives before its reply, a good setter leaves the reply alone.
    error_probe: ClassVar[str | None] = None
    #: Quiet time that ends a multi-line reply (HELP has no end marker).
    multiline_idle_s: ClassVar[float] = 0.2

    async def ask(self, command: str, *, timeout_s: float | None = None) -> str:
        line = (await self.session.query(command, timeout_s=timeout_s)).rstrip("\r")
        err = parse_error_line(line)
        if err is not None:
            raise InstrumentError(self.resource, err[0], err[1], command)
        return line

    async def command(self, command: str, *, check_errors: bool = True) -> None:
        async with self.session.locked():
            if self.setter_termination is None:
                await self.session.write(command)
            else:
                data = (command + self.setter_termination).encode(self.framing.encoding)
                await self.session.write_raw(data)
            if check_errors:
                await self.check_errors(command)

    async def check_errors(self, command: str | None = None) -> None:
        if self.error_probe is None:
            return
        decl = self.declarations()[self.error_probe]
        assert isinstance(decl, Control) and decl.get_template is not None
        probe = decl.get_template.render()

        def read(r: Reader) -> str | None:
            first = r.line().rstrip("\r")
            if parse_error_line(first) is None:
                return None
            r.line()  # the probe's own reply follows the error line
            return first

        error = await self.session.transaction(probe, read)
        if error is not None:
            code, text = parse_error_line(error) or (ERROR_CODE, error)
            raise InstrumentError(self.resource, code, text, command)

    async def read_multiline(self, decl: Control[str]) -> list[str]:
        """Send a query whose reply is several lines with no end marker (HELP)."""
        assert decl.get_template is not None
        command = decl.get_template.render()
        idle = self.multiline_idle_s

        def read(r: Reader) -> list[str]:
            lines = [r.line().rstrip("\r")]
            r.timeout_s = idle
            while True:
                try:
                    lines.append(r.line().rstrip("\r"))
                except ReadTimeout:
                    return lines

        result = await self.session.transaction(command, read)
        assert result is not None
        return result
