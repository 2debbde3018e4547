"""The driver base class: a session, its declarations, and the instrument's error convention."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from qhil.drivers.declarations import SENSITIVE, Declaration, declarations, methods_needed
from qhil.transport.exchange_log import ExchangeLog
from qhil.transport.framing import Framing
from qhil.transport.rawio import RawIO
from qhil.transport.session import Reader, ReconnectPolicy, Session


class Instrument:
    """Base of every driver.

    Subclasses declare their commands (:class:`~qhil.drivers.declarations.Control`,
    ``Measurement``, ``Action``) and, where the instrument frames replies in its
    own way, override :meth:`ask` and :meth:`command`. :meth:`check_errors` is
    the instrument-error hook: SCPI instruments query ``SYST:ERR?``; others
    recognise their own error replies.
    """

    framing: ClassVar[Framing] = Framing()
    #: SCPI header notation in templates (short/long keyword forms).
    scpi: ClassVar[bool] = False
    #: Typical model string, for profiles and listings.
    model: ClassVar[str] = ""
    timeout_s: ClassVar[float] = 2.0
    #: The instrument's own command that stops what a client may have left it doing (a
    #: stream a killed client never stopped). Sent at connect only if the serial line does
    #: not fall quiet when drained (see :meth:`Session._drain_stale`); None: never sent.
    quiesce_command: ClassVar[str | None] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        # A sensitive declaration goes through ask_sensitive/command_sensitive. A driver
        # that frames its exchanges its own way (its own ask/command) but keeps the
        # generic sensitive ones would send such bytes with the wrong framing: refuse it.
        for name, decl in declarations(cls).items():
            if not decl.sensitive:
                continue
            for method in methods_needed(decl):
                own = getattr(cls, method) is not getattr(Instrument, method)
                generic = getattr(cls, f"{method}_sensitive") is getattr(
                    Instrument, f"{method}_sensitive"
                )
                if own and generic:
                    raise TypeError(
                        f"{cls.__name__}.{name} is sensitive: {cls.__name__} has its own "
                        f"{method}() but no {method}_sensitive() to keep the bytes out of logs"
                    )

    def __init__(self, session: Session, *, name: str | None = None) -> None:
        self.session = session
        self.name = name or type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.session.resource!r})"

    @classmethod
    def open(
        cls,
        resource: str,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
        open_timeout_s: float = 3.0,
        reconnect: ReconnectPolicy | None = None,
        io: RawIO | None = None,
        exchange_log: ExchangeLog | None = None,
        visa_library: str = "@py",
        socket_backend: str = "asyncio",
    ) -> Self:
        """A driver on a new (not yet connected) session to ``resource``."""
        session = Session(
            resource,
            cls.framing,
            timeout_s=timeout_s or cls.timeout_s,
            open_timeout_s=open_timeout_s,
            reconnect=reconnect,
            io=io,
            exchange_log=exchange_log,
            visa_library=visa_library,
            socket_backend=socket_backend,
            quiesce=cls.quiesce_command,
        )
        return cls(session, name=name)

    @property
    def resource(self) -> str:
        return self.session.resource

    @classmethod
    def declarations(cls) -> dict[str, Declaration]:
        return declarations(cls)

    async def connect(self) -> None:
        """Open the session and bring the instrument into the state the driver expects."""
        await self.session.open()
        await self.start_clean()
        await self.on_connect()

    async def start_clean(self) -> None:
        """Hook run first on a new connection: clear and report what another client left
        (an SCPI error queue; stale bytes on a serial line are drained by the session)."""

    async def on_connect(self) -> None:
        """Hook run after opening (e.g. select the SCPI command set)."""

    async def close(self) -> None:
        await self.session.close()
        self.session.shutdown()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the instrument's message conventions (override where they differ) ---

    async def ask(self, command: str) -> str:
        """Send a query; return its reply line."""
        return await self.session.query(command)

    async def command(self, command: str, *, check_errors: bool = True) -> None:
        """Send a setting or action, then run the error hook as one locked unit."""
        async with self.session.locked():
            await self.session.write(command)
            if check_errors:
                await self.check_errors(command)

    async def ask_sensitive(self, command: str) -> str:
        """:meth:`ask` for key material: the exchange stays out of every log."""
        reply = await self.session.transaction(command, Reader.line, sensitive=True)
        assert reply is not None
        return reply

    async def command_sensitive(self, command: str, *, check_errors: bool = True) -> None:
        """:meth:`command` for key material: out of every log, and out of error messages."""
        async with self.session.locked():
            await self.session.write(command, sensitive=True)
            if check_errors:
                await self.check_errors(SENSITIVE)

    async def check_errors(self, command: str | None = None) -> None:
        """Raise :class:`~qhil.errors.InstrumentError` if the instrument reports one."""

    async def identity(self) -> str:
        """The instrument's identity string (``*IDN?`` or its own equivalent)."""
        raise NotImplementedError

    def snapshot_fields(self) -> dict[str, Any]:
        return {
            "driver": f"{type(self).__module__}.{type(self).__name__}",
            "resource": self.resource,
        }
