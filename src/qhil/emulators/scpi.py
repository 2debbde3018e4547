"""The shared SCPI / IEEE 488.2 emulator core.

Gives every SCPI emulator: common commands (``*IDN? *RST *CLS *OPC? *ESR?
*ESE *SRE *STB? *TST? *WAI``), the status byte and standard event register,
a ``SYST:ERR?`` FIFO with standard codes, short/long keyword forms (from the
driver's templates), ``;`` compound commands with relative paths and a leading
``:`` back to the root, MIN/MAX/DEF parameters and IEEE definite-length
binary blocks (framed and split by :mod:`qhil.emulators.framer`; a field named in
``block_fields`` gets a block's payload as bytes, or as a read-only memoryview when the
block was big enough to be received in place, of a buffer no later message reuses while
the view lives). Handlers may be coroutine functions. Setters reply nothing; each query
contributes one reply, and the replies of one compound command share one line separated
by ``;``.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from qhil.drivers.declarations import Control
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import Float, Int, SuffixError, ValueTypeError
from qhil.emulators.base import Emulator, Raw, Route, on
from qhil.emulators.framer import Block, MessageFramer, Overrun, split_units

# Standard SCPI error codes (SCPI-99 vol. 2, chapter 21).
NO_ERROR = (0, "No error")
COMMAND_ERROR = (-100, "Command error")
SYNTAX_ERROR = (-102, "Syntax error")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
UNDEFINED_HEADER = (-113, "Undefined header")
BLOCK_NOT_ALLOWED = (-168, "Block data not allowed")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
ILLEGAL_PARAMETER = (-224, "Illegal parameter value")
QUEUE_OVERFLOW = (-350, "Queue overflow")
INPUT_BUFFER_OVERRUN = (-363, "Input buffer overrun")
TOO_MUCH_DATA = (-223, "Too much data")

# Standard event status register bits (IEEE 488.2 11.5.1).
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME, ESR_PON = 1, 4, 8, 16, 32, 128

# How a definite-length block stands in a unit's text while templates are matched.
_BLOCK_TOKEN = "\x00{}\x00"
_BLOCK_TOKEN_RE = re.compile("\x00(\\d+)\x00")

_SPECIAL = re.compile(r"(MIN(?:IMUM)?|MAX(?:IMUM)?|DEF(?:AULT)?)\s*$", re.IGNORECASE)


class ScpiError(Exception):
    """Raised by a handler to queue an SCPI error (code, text)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code},{text}")
        self.code = code
        self.text = text


class ScpiEmulator(Emulator):
    """Base of SCPI instrument emulators."""

    driver: ClassVar[type[ScpiInstrument]] = ScpiInstrument
    #: (maker, model, serial, firmware) as ``*IDN?`` reports them.
    identity: ClassVar[tuple[str, str, str, str]] = ("QHIL", "SCPI-EMULATOR", "0", "0")
    error_queue_size: ClassVar[int] = 30
    #: Fields that take an IEEE 488.2 definite-length block, as "declaration.field":
    #: their handler gets the payload as bytes; a block anywhere else is error -168.
    block_fields: ClassVar[frozenset[str]] = frozenset()

    def power_on_state(self) -> None:
        self.errors: deque[tuple[int, str]] = deque()
        self.esr = ESR_PON
        self.ese = 0
        self.sre = 0

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["model"] = self.identity[1]
        d["identity"] = ",".join(self.identity)
        return d

    # --- error queue and status ---

    def push_error(self, code: int, text: str) -> None:
        if len(self.errors) >= self.error_queue_size:
            self.errors[-1] = QUEUE_OVERFLOW
        else:
            self.errors.append((code, text))
        if -199 <= code <= -100:
            self.esr |= ESR_CME
        elif -299 <= code <= -200:
            self.esr |= ESR_EXE
        elif -399 <= code <= -300 or code > 0:
            self.esr |= ESR_DDE
        elif -499 <= code <= -400:
            self.esr |= ESR_QYE

    def status_byte_value(self) -> int:
        stb = 0
        if self.errors:
            stb |= 1 << 2
        if self.esr & self.ese:
            stb |= 1 << 5
        if stb & self.sre:
            stb |= 1 << 6
        return stb

    # --- IEEE 488.2 common commands ---

    @on("idn.get")
    def _idn(self) -> str:
        return Raw(",".join(self.identity))

    @on("reset")
    def _rst(self) -> None:
        # *RST restores settings but keeps the error queue and status registers.
        errors, esr, ese, sre = self.errors, self.esr, self.ese, self.sre
        self.power_on_state()
        self.errors, self.esr, self.ese, self.sre = errors, esr, ese, sre

    @on("clear_status")
    def _cls(self) -> None:
        self.errors.clear()
        self.esr = 0

    @on("operation_complete.get")
    def _opc_q(self) -> int:
        return 1

    @on("operation_complete_flag")
    def _opc(self) -> None:
        self.esr |= ESR_OPC

    @on("wait")
    def _wai(self) -> None:
        pass

    @on("event_status.get")
    def _esr(self) -> int:
        value, self.esr = self.esr, 0
        return value

    @on("event_status_enable.get")
    def _ese_q(self) -> int:
        return self.ese

    @on("event_status_enable.set")
    def _ese(self, value: int) -> None:
        self.ese = value

    @on("service_request_enable.get")
    def _sre_q(self) -> int:
        return self.sre

    @on("service_request_enable.set")
    def _sre(self, value: int) -> None:
        self.sre = value

    @on("status_byte.get")
    def _stb(self) -> int:
        return self.status_byte_value()

    @on("self_test.get")
    def _tst(self) -> int:
        return 0

    @on("next_error.get")
    def _err(self) -> str:
        code, text = self.errors.popleft() if self.errors else NO_ERROR
        return Raw(f'{code},"{text}"')

    # --- parsing and dispatch ---

    #: Largest definite-length block payload the instrument takes (None: as much as its
    #: input buffer); a header declaring more is error -223 at once, not a wait for the
    #: bytes it promises.
    max_block_bytes: ClassVar[int | None] = None

    def framer(self, reader: asyncio.StreamReader) -> MessageFramer:
        terms = self.input_terminators or self.framing.write_term_bytes[-1:]
        return MessageFramer(
            reader,
            terms,
            blocks=True,
            max_line=self.input_buffer_bytes,
            max_block=(
                self.input_buffer_bytes if self.max_block_bytes is None else self.max_block_bytes
            ),
        )

    def input_overrun(self, overrun: Overrun) -> bytes:
        # SCPI-99 21.8.10: -363 when the input buffer overflows; -223 a block too large.
        self.push_error(*(TOO_MUCH_DATA if overrun.what == "block" else INPUT_BUFFER_OVERRUN))
        return b""

    def error_reply(self, message: bytes, code: int | str, text: str) -> bytes:
        # SCPI: the command is ignored, nothing is sent back, the error is queued.
        self.push_error(int(code), text)
        return b""

    async def respond(self, message: bytes) -> bytes:
        return await self.respond_units(message)

    async def respond_view(self, message: memoryview) -> bytes:
        # A 16 MB upload: its units and block payloads are views, never copies.
        return await self.respond_units(message)

    async def respond_units(self, message: bytes | memoryview) -> bytes:
        """The reply to a program message, unit by unit (bytes or a view alike)."""
        replies: list[str] = []
        path = ""
        for unit, blocks in split_units(message):
            text, payloads = self._unit_text(unit, blocks)
            text = text.strip()
            if not text:
                continue
            header = text.split(None, 1)[0]
            if not text.startswith((":", "*")) and path:
                text = f"{path}:{text}"
            try:
                out = await self.execute(text, payloads)
            except ScpiError as exc:
                self.push_error(exc.code, exc.text)
                out = None
            if out is not None:
                replies.append(out)
            if not header.startswith("*"):
                full = text.split(None, 1)[0].rstrip("?")
                path = full.rsplit(":", 1)[0] if ":" in full.lstrip(":") else ""
        if not replies:
            return b""
        return (";".join(replies) + self.framing.read_termination).encode(self.framing.encoding)

    def _unit_text(
        self, unit: bytes | memoryview, blocks: list[Block]
    ) -> tuple[str, list[bytes | memoryview]]:
        """The unit as text, each block replaced by a token; the blocks' payloads as bytes
        (views of a message that came as a view)."""
        parts: list[str] = []
        payloads: list[bytes | memoryview] = []
        pos = 0
        for block in blocks:
            parts.append(self._text(unit[pos : block.start]))
            parts.append(_BLOCK_TOKEN.format(len(payloads)))
            payloads.append(unit[block.data : block.end])
            pos = block.end
        parts.append(self._text(unit[pos:]))
        return "".join(parts), payloads

    def _text(self, data: bytes | memoryview) -> str:
        # NUL marks block tokens, so a NUL sent as text becomes a character no template takes.
        return str(data, self.framing.encoding, errors="replace").replace("\x00", "\ufffd")

    async def execute(self, command: str, blocks: Sequence[bytes | memoryview] = ()) -> str | None:
        """Run one command; return its reply text for a query.

        ``blocks`` are the payloads of the definite-length blocks in ``command`` (there
        as tokens): a field listed in :attr:`block_fields` that is one whole block gets
        its payload as bytes. A handler may be a coroutine function (one that waits,
        e.g. for simulated time); it is awaited before the next command of the message.
        """
        found = self.find_route(command)
        if found is None:
            raise ScpiError(*UNDEFINED_HEADER)
        route, raw = found
        decl = route.decl
        parsed: dict[str, Any] = {}
        for name, text in raw.items():
            if "\x00" in text:
                parsed[name] = self._block_field(decl, name, text, blocks)
            elif name != "value" or route.kind == "set":
                parsed[name] = self._parse(decl, name, text)
        result = route.handler(self, **parsed)
        if inspect.isawaitable(result):
            result = await result
        if route.kind != "get":
            return None
        if isinstance(result, Raw):
            return str(result)
        assert isinstance(decl, Control)
        return decl.reply_template.emit(value=result, **parsed)

    def _block_field(
        self, decl: Any, field: str, text: str, blocks: Sequence[bytes | memoryview]
    ) -> bytes | memoryview:
        m = _BLOCK_TOKEN_RE.fullmatch(text.strip())
        if m is None or f"{decl.name}.{field}" not in self.block_fields:
            raise ScpiError(*BLOCK_NOT_ALLOWED)
        return blocks[int(m.group(1))]

    def _parse(self, decl: Any, field: str, text: str) -> Any:
        vt = decl.value if field == "value" else decl.args[field]
        special = _SPECIAL.match(text.strip())
        try:
            if special and isinstance(vt, (Float, Int)):
                word = special.group(1).upper()[:3]
                if word == "DEF":
                    return self.default_for(decl.name, field)
                bound = vt.min if word == "MIN" else vt.max
                if bound is None:
                    raise ScpiError(*ILLEGAL_PARAMETER)
                return bound
            return vt.validate(vt.parse(text))
        except ValueTypeError:
            raise ScpiError(*DATA_OUT_OF_RANGE) from None
        except SuffixError as exc:  # a unit the parameter does not take: -131
            raise ScpiError(exc.code, exc.text) from None
        except ValueError:
            raise ScpiError(*ILLEGAL_PARAMETER) from None

    def default_for(self, name: str, field: str) -> Any:
        """The value DEF stands for; emulators override for their parameters."""
        raise ScpiError(*ILLEGAL_PARAMETER)

    def find_route(self, command: str) -> tuple[Route, dict[str, Any]] | None:
        # Query templates must win over set templates for "X?" and vice versa.
        is_query = command.split(None, 1)[0].endswith("?")
        for route in self.routes:
            if (route.kind == "get") != is_query:
                continue
            raw = route.template.match(command)
            if raw is not None:
                return route, raw
        return None
