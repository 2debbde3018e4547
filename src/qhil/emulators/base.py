"""Emulator base: per-instance state, handlers bound to driver declarations, fault injection.

An emulator's grammar is its driver's declarations: ``@on("wavelength.set")``
binds a handler to the ``wavelength`` Control's set template, whose regex the
emulator matches. A handler named after a command the driver does not declare
is an error at class creation, so driver and emulator cannot drift apart.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from qhil.drivers.declarations import Action, Control, Declaration, Template
from qhil.drivers.instrument import Instrument
from qhil.emulators.framer import DEFAULT_INPUT_BUFFER, MessageFramer, Overrun
from qhil.transport.framing import Framing

if TYPE_CHECKING:
    from qhil.emulators.server import ByteWriter

F = TypeVar("F", bound=Callable[..., Any])


def on(*keys: str) -> Callable[[F], F]:
    """Bind a handler to declarations: ``"name.get"``, ``"name.set"`` or an action ``"name"``."""

    def mark(fn: F) -> F:
        fn._qhil_on = keys  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True)
class Route:
    """One thing the emulator understands: a template, what kind of use, and its handler."""

    key: str
    template: Template
    kind: str  # "get", "set" or "action"
    decl: Declaration
    handler: Callable[..., Any]


@dataclass
class Faults:
    """Faults to inject into the next exchanges (tests set these; reset() clears them)."""

    #: Close the connection when the next command arrives, without replying.
    drop_next: bool = False
    #: Receive but never answer the next N commands (no sleep: the reply just never comes).
    stall_next: int = 0
    #: Corrupt the content of the next reply (its line endings stay: see Emulator.garble).
    garble_next: bool = False
    #: Answer the next command with this instrument error (code, text) instead.
    error_next: tuple[int | str, str] | None = None


class Raw(str):
    """A reply handler's return value sent as-is, bypassing the declaration's formatting."""


class Emulator:
    """Base of every instrument emulator.

    Subclasses set ``driver`` (whose declarations are the grammar) and implement
    :meth:`power_on_state` and handlers. All state lives on the instance;
    :meth:`reset` restores power-on state.
    """

    driver: ClassVar[type[Instrument]]
    routes: ClassVar[list[Route]]
    #: Transport the real instrument uses: "tcp" or "serial".
    transport: ClassVar[str] = "tcp"
    #: The port the real instrument listens on (documentation; emulators bind any free port).
    default_port: ClassVar[int | None] = None

    def __init__(
        self,
        *,
        name: str = "",
        seed: int = 0,
        world: Any = None,
        component: str = "",
        response_time_s: float = 0.0,
    ) -> None:
        self.name = name or type(self).__name__
        # Realtime mode: the instrument's own processing time per reply. 0 (fast mode)
        # answers at once; the physics of acquisitions runs on the world's clock instead.
        self.response_time_s = response_time_s
        self.seed = seed
        self.world = world
        self.component = component
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.reset()

    @property
    def framing(self) -> Framing:
        return self.driver.framing

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        drv = getattr(cls, "driver", None)
        if drv is None:
            return
        decls = drv.declarations()
        # Base classes first, so the SCPI core's commands keep their place in the match
        # order; a subclass's handler for the same key replaces the inherited one there.
        routes: dict[str, Route] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                for key in getattr(attr, "_qhil_on", ()):
                    routes[key] = _route(cls, decls, key, attr)
        cls.routes = list(routes.values())

    def power_on_state(self) -> None:
        """Set every state attribute to its power-on value."""

    def reset(self) -> None:
        """Back to power-on state, faults cleared, randomness re-seeded."""
        self.faults = Faults()
        self.rng = random.Random(self.seed)
        self.power_on_state()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.driver.model, "transport": self.transport}

    def extra_endpoints(self) -> dict[str, Any]:
        """Further ports to serve (name -> servable), e.g. a count stream; none by default."""
        return {}

    # --- the wire ---

    #: Bytes any of which ends a command (None: the last byte of the driver's write termination).
    input_terminators: ClassVar[bytes | None] = None

    #: The instrument's input buffer: the longest command (text) it takes; a longer one
    #: overruns it (see :meth:`input_overrun`). Set from the manual where it says.
    input_buffer_bytes: ClassVar[int] = DEFAULT_INPUT_BUFFER

    def framer(self, reader: asyncio.StreamReader) -> MessageFramer:
        terms = self.input_terminators or self.framing.write_term_bytes[-1:]
        return MessageFramer(reader, terms, max_line=self.input_buffer_bytes)

    def input_overrun(self, overrun: Overrun) -> bytes:
        """What the instrument answers when a command overruns its input buffer (the
        command is dropped through its terminator); by default its usual error reply."""
        return self.error_reply(b"", "Error", "Input buffer overrun")

    async def serve(self, reader: asyncio.StreamReader, writer: ByteWriter) -> None:
        """Answer commands on one connection until it closes or a drop is injected."""
        framer = self.framer(reader)
        while True:
            msg = await framer.next()
            if msg is None:
                return
            if isinstance(msg, Overrun):
                await self._send(writer, self.input_overrun(msg))
                continue
            if self.faults.drop_next:
                self.faults.drop_next = False
                writer.close()
                return
            if self.faults.stall_next > 0:
                self.faults.stall_next -= 1
                continue
            if self.faults.error_next is not None:
                code, text = self.faults.error_next
                self.faults.error_next = None
                reply = self.error_reply(bytes(msg), code, text)
            elif isinstance(msg, memoryview):
                reply = await self.respond_view(msg)
            else:
                reply = await self.respond(msg)
            if reply and self.faults.garble_next:
                self.faults.garble_next = False
                reply = self.garble(reply)
            del msg  # a big message's buffer is the framer's to reuse once no view holds it
            await self._send(writer, reply)

    async def _send(self, writer: ByteWriter, reply: bytes) -> None:
        if reply:
            if self.response_time_s > 0:
                await asyncio.sleep(self.response_time_s)
            writer.write(reply)
            await writer.drain()

    def garble(self, reply: bytes) -> bytes:
        """The garble fault: corrupt the content of the reply's first line, keep its framing.

        Every other content byte becomes a different printable byte that ends no line,
        so the reply still frames as the same lines: the driver sees bad content (a
        protocol error), not a reply cut short or run together with the next one.
        """
        protect = b"\r\n" + self.framing.read_term_bytes
        start = next((i for i, b in enumerate(reply) if b not in protect), len(reply))
        end = next((i for i in range(start, len(reply)) if reply[i] in protect), len(reply))
        out = bytearray(reply)
        out[start:end:2] = out[start:end:2].translate(_garble_table(protect))
        return bytes(out)

    async def respond(self, message: bytes) -> bytes:
        """The complete reply bytes (with terminations) to one command; b"" for none."""
        raise NotImplementedError

    async def respond_view(self, message: memoryview) -> bytes:
        """:meth:`respond` to a message that came as a view (one with a big block, see
        :meth:`MessageFramer.next`); emulators that parse views override it."""
        return await self.respond(bytes(message))

    def error_reply(self, message: bytes, code: int | str, text: str) -> bytes:
        """How this instrument answers a command that fails with (code, text)."""
        raise NotImplementedError

    def find_route(self, command: str) -> tuple[Route, dict[str, Any]] | None:
        for route in self.routes:
            raw = route.template.match(command)
            if raw is not None:
                return route, raw
        return None


def _garble_table(protect: bytes) -> bytes:
    """A byte -> a different printable byte (``!`` to ``~``) that is not in ``protect``."""
    table = bytearray(256)
    for b in range(256):
        c = 0x21 + (b + 47) % 94
        while c == b or c in protect:
            c = 0x21 + (c - 0x21 + 1) % 94
        table[b] = c
    return bytes(table)


def _route(cls: type, decls: dict[str, Declaration], key: str, fn: Callable[..., Any]) -> Route:
    name, _, kind = key.partition(".")
    decl = decls.get(name)
    if decl is None:
        driver = getattr(cls, "driver", None)
        raise TypeError(f"{cls.__name__}: handler for {key!r}, which {driver!r} does not declare")
    if isinstance(decl, Action):
        if kind:
            raise TypeError(f"{cls.__name__}: {name!r} is an action; bind it as {name!r}")
        return Route(key, decl.template, "action", decl, fn)
    assert isinstance(decl, Control)
    template = decl.get_template if kind == "get" else decl.set_template if kind == "set" else None
    if template is None:
        raise TypeError(f"{cls.__name__}: {key!r}: {name} has no {kind or '?'} template")
    return Route(key, template, kind, decl, fn)
