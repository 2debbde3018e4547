"""What the emulated S-Fifteen boards share: command splitting, matching, error lines.

The boards accept ``;``, CR and LF as command separators (the vendor library
ends queries with ``;`` and, for some boards, setters with CR LF), ignore empty
commands, match commands case-insensitively and, on the TDC1, take a numeric
argument with or without a space (``TIME400``). Replies end with CR LF. A
setter that succeeds is silent; what a failing one answers is not documented
(UNVERIFIED): these emulators answer one line, ``Unknown command`` or
``Error: <what>``, which the qhil drivers recognise.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, ClassVar

from qhil.drivers.declarations import Control
from qhil.drivers.sfifteen.common import OUT_OF_RANGE, UNKNOWN_COMMAND, format_error_line
from qhil.drivers.values import ValueTypeError
from qhil.emulators.base import Emulator, Raw, Route, on
from qhil.emulators.framer import Overrun

CRLF = "\r\n"
_SEPARATORS = re.compile(rb"[;\r\n]")


class CommandRefused(Exception):
    """A handler refuses a command; the board answers an error line with this text."""


class S15Emulator(Emulator):
    """Base of the S-Fifteen emulators (USB virtual serial)."""

    transport: ClassVar[str] = "serial"
    input_terminators: ClassVar[bytes | None] = b";\r\n"
    #: Reply to an unknown command (None: ignore it silently).
    unknown_reply: ClassVar[str | None] = UNKNOWN_COMMAND
    #: Reply to a parameter the board refuses (None: ignore it silently).
    refused_reply: ClassVar[bool] = True
    _matchers: ClassVar[list[tuple[Route, re.Pattern[str]]]]

    @classmethod
    def matchers(cls) -> list[tuple[Route, re.Pattern[str]]]:
        """Each route's template, matched case-insensitively, any spacing before an argument."""
        if "_matchers" not in cls.__dict__:
            out = []
            for route in cls.routes:
                body = route.template.compiled.pattern.replace(r"\ ", r"\s*")
                out.append((route, re.compile(rf"\s*{body}\s*", re.IGNORECASE)))
            cls._matchers = out
        return cls._matchers

    def match(self, command: str) -> tuple[Route, dict[str, str]] | None:
        for route, rx in self.matchers():
            m = rx.fullmatch(command)
            if m is not None:
                return route, m.groupdict()
        return None

    def line(self, text: str) -> bytes:
        return (text + CRLF).encode("ascii", errors="replace")

    def error_reply(self, message: bytes, code: int | str, text: str) -> bytes:
        return self.line(format_error_line(text))

    def input_overrun(self, overrun: Overrun) -> bytes:
        # Our choice (the firmware is not public): answered as an unknown command would be.
        return self.line(self.unknown_reply) if self.unknown_reply is not None else b""

    async def respond(self, message: bytes) -> bytes:
        """Replies to every command in ``message`` (a chain like ``singles;counts?``)."""
        out = b""
        for part in _SEPARATORS.split(message):
            command = part.decode("ascii", errors="replace").strip()
            if command:
                out += await self.execute(command)
        return out

    def _parse_fields(self, route: Route, raw: dict[str, str]) -> dict[str, Any]:
        decl = route.decl
        args: dict[str, Any] = dict(getattr(decl, "args", {}))
        if isinstance(decl, Control):
            args["value"] = decl.value
        return {k: args[k].validate(args[k].parse(v)) for k, v in raw.items()}

    async def execute(self, command: str) -> bytes:
        found = self.match(command)
        if found is None:
            return self.line(self.unknown_reply) if self.unknown_reply else b""
        route, raw = found
        try:
            fields = self._parse_fields(route, raw)
            result = route.handler(self, **fields)
            if inspect.isawaitable(result):
                result = await result
        except (ValueTypeError, ValueError):
            # Includes the world's WorldSettingError: a value beyond the physical limits.
            return self.line(format_error_line(OUT_OF_RANGE)) if self.refused_reply else b""
        except CommandRefused as exc:
            return self.line(format_error_line(str(exc))) if self.refused_reply else b""
        if result is None:
            return b""
        if isinstance(result, bytes):
            return result
        if route.kind == "get" and not isinstance(result, Raw):
            assert isinstance(route.decl, Control)
            result = route.decl.reply_template.emit(value=result)
        return self.line(str(result))

    # Every S-Fifteen board answers these the same way; the subclasses' drivers declare both.
    identity: str

    @on("idn.get")
    def _idn(self) -> str:
        return self.identity

    @on("help_text.get")
    def _help(self) -> bytes:
        return self.help_reply()

    def help_reply(self) -> bytes:
        """The HELP text: one line per command the board knows, from the driver's declarations."""
        lines = []
        for decl in self.driver.declarations().values():
            forms = " / ".join(t.text.replace("{", "<").replace("}", ">") for t in decl.templates())
            lines.append(f"{forms}: {decl.doc}")
        return b"".join(self.line(s) for s in lines)
