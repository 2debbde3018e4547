"""The async instrument session: one per instrument connection.

pyvisa and pyserial are blocking, so each session owns one worker thread and
runs every *whole transaction* (write, then all the reads that belong to it)
there as a single job, behind a per-session asyncio lock. Concurrent tasks can
therefore never interleave one query's write and read, and a query costs one
thread hop, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from qhil.errors import ConnectionLostError, InstrumentConnectionError, InstrumentTimeoutError
from qhil.transport.exchange_log import ExchangeLog
from qhil.transport.framing import Framing
from qhil.transport.rawio import LinkDown, OpenFailed, RawIO, ReadTimeout
from qhil.transport.socket_io import NeedMore

log = logging.getLogger(__name__)

#: After a timeout on a serial line, the line must stay quiet for twice as long as the
#: reply was waited for (an instrument that was too slow once may answer that late),
#: but at least and at most these. Sockets are reconnected instead.
RESYNC_QUIET_MIN_S = 0.05
RESYNC_QUIET_MAX_S = 1.0
#: At open a serial line is drained until quiet this long: another client's unread reply,
#: or the tail of one still on its way, must not be taken for the answer to our first command.
OPEN_DRAIN_QUIET_S = 0.1
#: ... but not for longer than this: a line that never goes quiet (an instrument another
#: client left streaming) gets the driver's stop command (``quiesce``), is drained as long
#: again, and only then fails the connect with a message that says so.
OPEN_DRAIN_MAX_S = 2.0

T = TypeVar("T")

_VISA_PREFIX = re.compile(r"^(?:(?:TCPIP|USB|GPIB|VXI|PXI)\d*::|ASRL.+::INSTR$)", re.IGNORECASE)


@dataclass(frozen=True)
class ReconnectPolicy:
    """Bounded retries with exponential backoff after a dropped connection."""

    attempts: int = 3
    initial_delay_s: float = 0.05
    factor: float = 2.0
    max_delay_s: float = 1.0

    def delays(self) -> list[float]:
        out, d = [], self.initial_delay_s
        for _ in range(self.attempts):
            out.append(min(d, self.max_delay_s))
            d *= self.factor
        return out


def make_io(
    resource: str, framing: Framing, visa_library: str = "@py", socket_backend: str = "asyncio"
) -> RawIO:
    """Pick the backend from the resource string.

    VISA resource strings (``TCPIP0::host::port::SOCKET``, ``ASRL/dev/pts/3::INSTR``,
    ``GPIB0::7::INSTR``, ``USB0::...``) go through pyvisa; device paths and
    pyserial URLs (``/dev/ttyUSB0``, ``COM3``, ``socket://host:port``) through pyserial.
    With the pure-Python VISA library, raw ``SOCKET`` resources are driven by the
    event loop itself (``socket_backend="asyncio"``, see socket_io.py); pass
    ``socket_backend="pyvisa"`` to go through pyvisa-py's socket session instead.
    """
    from qhil.transport.serial_io import SerialIO
    from qhil.transport.socket_io import AsyncSocketIO, parse_socket_resource
    from qhil.transport.visa_io import VisaIO

    if socket_backend not in ("asyncio", "pyvisa"):
        raise ValueError(f"socket_backend must be 'asyncio' or 'pyvisa', not {socket_backend!r}")
    if visa_library == "@py" and socket_backend == "asyncio" and parse_socket_resource(resource):
        return AsyncSocketIO(resource)
    if _VISA_PREFIX.match(resource):
        return VisaIO(resource, framing, visa_library)
    if resource.startswith("/") or "://" in resource or re.fullmatch(r"COM\d+", resource):
        return SerialIO(resource, framing)
    raise InstrumentConnectionError(
        resource,
        "not a VISA resource string (TCPIP::host::port::SOCKET, ASRL/dev/ttyX::INSTR, "
        "GPIB0::n::INSTR, USB0::...), a serial device path or a pyserial URL",
    )


class Reader:
    """What a transaction's reader function uses, in the worker thread."""

    def __init__(self, io: RawIO, framing: Framing, timeout_s: float) -> None:
        self._io = io
        self._framing = framing
        self.timeout_s = timeout_s
        self.received = bytearray()
        self.awaiting = framing.read_termination

    def until(self, terminator: bytes) -> bytes:
        self.awaiting = terminator.decode("latin-1")
        data = self._io.read_until(terminator, self.timeout_s)
        self.received += data
        return data

    def line(self) -> str:
        """One reply line, termination stripped."""
        term = self._framing.read_term_bytes
        data = self.until(term)
        return data[: -len(term)].decode(self._framing.encoding, errors="replace")

    def exact(self, count: int) -> bytes:
        self.awaiting = f"{count} bytes"
        data = self._io.read_exact(count, self.timeout_s)
        self.received += data
        return data

    def some(self, count: int) -> bytes:
        """Up to ``count`` bytes, returning as soon as some have arrived (a stream's reader
        need not wait out a timeout for the rest of a chunk that never comes); ReadTimeout
        if none arrive. A backend without ``read_some`` reads exactly ``count``."""
        self.awaiting = f"up to {count} bytes"
        read_some = getattr(self._io, "read_some", None)
        if read_some is None:
            return self.exact(count)
        data: bytes = read_some(count, self.timeout_s)
        self.received += data
        return data


class Session:
    """An async, locked, logged, reconnecting connection to one instrument."""

    def __init__(
        self,
        resource: str,
        framing: Framing | None = None,
        *,
        timeout_s: float = 2.0,
        open_timeout_s: float = 3.0,
        reconnect: ReconnectPolicy | None = None,
        io: RawIO | None = None,
        visa_library: str = "@py",
        socket_backend: str = "asyncio",
        exchange_log: ExchangeLog | None = None,
        quiesce: str | None = None,
    ) -> None:
        self.resource = resource
        #: The instrument's own command that stops what another client left it doing
        #: (a stream): sent at open only if the serial line does not fall quiet.
        self.quiesce = quiesce
        self.framing = framing or Framing()
        self.timeout_s = timeout_s
        self.open_timeout_s = open_timeout_s
        self.reconnect = reconnect or ReconnectPolicy()
        self.exchange_log = exchange_log
        self._io: RawIO = (
            io if io is not None else make_io(resource, self.framing, visa_library, socket_backend)
        )
        self._async = bool(getattr(self._io, "async_native", False))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"qhil-io:{resource}")
        self._lock: asyncio.Lock | None = None
        self._open = False
        self._lost = False
        self._dirty = False
        # Who holds the lock: a context variable, so child tasks of the holder inherit it.
        self._held: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"qhil-held-{id(self)}", default=False
        )
        self._io_lock: asyncio.Lock | None = None
        self._dirty_wait_s = 0.0
        self._reader = Reader(self._io, self.framing, timeout_s)

    def __repr__(self) -> str:
        return f"Session({self.resource!r})"

    @property
    def lock(self) -> asyncio.Lock:
        """The per-instrument lock; hold it to make several transactions one unit."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def is_open(self) -> bool:
        return self._open

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def open(self) -> None:
        if self._open:
            return
        try:
            await self._io_open()
        except OpenFailed as exc:
            raise InstrumentConnectionError(self.resource, f"cannot open: {exc}") from exc
        self._open, self._lost, self._dirty = True, False, False
        await self._drain_stale()

    async def _drain_stale(self) -> None:
        """Drop what a serial line holds from before we opened it (logged if anything).

        No bare terminator is sent first to end a command another client left half-sent:
        an instrument may answer an empty command, later than the drain waits. A line that
        does not fall quiet is an instrument left streaming (a client killed mid-stream
        never stopped it; a real one streams until told to stop): it is sent its own stop
        command (``quiesce``), as a careful lab script would, and drained again.
        """
        if not getattr(self._io, "serial_line", False):
            return
        quiesce = self.quiesce
        tried = ""
        try:
            try:
                dropped = await self._run(self._drain_until_quiet)
            except ReadTimeout as exc:
                if quiesce is None:
                    raise
                log.warning(
                    "%s: the line was not quiet after draining it for %g s (another client "
                    "left the instrument streaming? last bytes %r): sending its stop command %r",
                    self.resource,
                    OPEN_DRAIN_MAX_S,
                    bytes(exc.partial[-16:]),
                    quiesce,
                )
                tried = f" (after sending its stop command {quiesce!r})"
                stop = quiesce.encode(self.framing.encoding) + self.framing.write_term_bytes

                def stop_and_drain() -> int:
                    self._io.write(stop)
                    return self._drain_until_quiet()

                dropped = await self._run(stop_and_drain)
        except (LinkDown, ReadTimeout) as exc:
            await self._io_close()
            self._open = False
            drained = f"draining it for {OPEN_DRAIN_MAX_S:g} s" + (
                f", sending the instrument's stop command {quiesce!r} and draining "
                f"{OPEN_DRAIN_MAX_S:g} s more"
                if tried
                else ""
            )
            why = (
                f"the line was still not quiet after {drained} (another client may be using "
                f"the instrument or have left it streaming; last bytes {exc.partial[-16:]!r}): "
                "stop that client, or power-cycle the instrument"
                if isinstance(exc, ReadTimeout)
                else f"lost while draining what an earlier client left{tried}: {exc}"
            )
            raise InstrumentConnectionError(self.resource, why) from exc
        if dropped:
            log.warning(
                "%s: dropped %d byte(s) left unread on the line by an earlier client",
                self.resource,
                dropped,
            )

    def _drain_until_quiet(self) -> int:
        """In the worker: drain until quiet (bounded); the bytes dropped."""
        return self._io.resync(OPEN_DRAIN_QUIET_S, OPEN_DRAIN_MAX_S)

    async def _io_open(self) -> None:
        if self._async:
            await self._io.aopen(self.open_timeout_s)  # type: ignore[attr-defined]
        else:
            await self._run(lambda: self._io.open(self.open_timeout_s))

    async def _io_close(self) -> None:
        if self._async:
            await self._io.aclose()  # type: ignore[attr-defined]
        else:
            await self._run(self._io.close)

    async def close(self) -> None:
        # Always close the backend: an open cancelled mid-way may have finished in the
        # worker thread after the session stopped waiting for it.
        await self._io_close()
        self._open = self._lost = False

    def shutdown(self) -> None:
        """Release the worker thread (after close)."""
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Session:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
        self.shutdown()

    async def _reopen(self) -> None:
        last = "unknown"
        for delay in self.reconnect.delays():
            await asyncio.sleep(delay)
            try:
                await self._io_close()
                await self._io_open()
            except OpenFailed as exc:
                last = str(exc)
                continue
            try:  # what the line held from before the reconnect is not a reply of ours
                await self._drain_stale()
            except InstrumentConnectionError as exc:
                last = str(exc)
                continue
            log.info("%s: reconnected", self.resource)
            self._open, self._lost, self._dirty = True, False, False
            return
        raise InstrumentConnectionError(
            self.resource,
            f"connection was lost and {self.reconnect.attempts} reconnect attempts failed; "
            f"last: {last}",
        )

    async def transaction(
        self,
        command: str | None,
        reader: Callable[[Reader], T] | None = None,
        *,
        payload: bytes | memoryview | None = None,
        timeout_s: float | None = None,
        sensitive: bool = False,
    ) -> T | None:
        """Write ``command`` (terminated) or raw ``payload``, then run ``reader``.

        The exchange runs as one unit under the instrument's lock (in the worker
        thread, or on the event loop for raw sockets). ``sensitive`` keeps the
        bytes out of logs and the exchange log (key material sent to a pattern
        generator, for instance).
        """
        args = (command, reader, payload, timeout_s, sensitive)
        if self._held.get():  # inside locked(): this task (or a child of it) holds the lock
            return await self._exchange(*args)
        async with self.lock:
            token = self._held.set(True)
            try:
                return await self._exchange(*args)
            finally:
                self._held.reset(token)

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the instrument for several transactions.

        A setter followed by its error query, or a multi-step acquisition, is
        made one unit this way, so no other task's query can slip in between.
        Re-entrant, also for child tasks (``wait_for``, ``gather``) started inside;
        those still never interleave their single exchanges (inner I/O lock).
        """
        if self._held.get():
            yield
            return
        async with self.lock:
            token = self._held.set(True)
            try:
                yield
            finally:
                self._held.reset(token)

    async def _exchange(
        self,
        command: str | None,
        reader: Callable[[Reader], T] | None,
        payload: bytes | memoryview | None,
        timeout_s: float | None,
        sensitive: bool,
    ) -> T | None:
        if self._io_lock is None:
            self._io_lock = asyncio.Lock()
        async with self._io_lock:
            return await self._transaction_locked(command, reader, payload, timeout_s, sensitive)

    async def _resync(self) -> None:
        """Make sure no late reply of an abandoned exchange answers the next one."""
        if self._async:  # a late reply dies with the old connection
            await self._io_close()
            await self._io_open()
        else:
            quiet = min(max(2 * self._dirty_wait_s, RESYNC_QUIET_MIN_S), RESYNC_QUIET_MAX_S)
            await self._run(lambda: self._io.resync(quiet))
        self._dirty = False

    async def _transaction_locked(
        self,
        command: str | None,
        reader: Callable[[Reader], T] | None,
        payload: bytes | memoryview | None,
        timeout_s: float | None,
        sensitive: bool,
    ) -> T | None:
        shown = "<sensitive>" if sensitive else (command if command is not None else "<binary>")
        if self._lost:
            await self._reopen()
        elif not self._open:
            await self.open()
        out: bytes | memoryview = payload if payload is not None else b""
        if command is not None:
            out = command.encode(self.framing.encoding) + self.framing.write_term_bytes + out
        self._reader = Reader(self._io, self.framing, timeout_s or self.timeout_s)
        try:
            if self._dirty:
                await self._resync()
            if self._async:
                result = await self._async_job(out, reader)
            else:
                rd = self._reader

                def job() -> T | None:
                    if out:
                        self._io.write(bytes(out))  # blocking backends take bytes
                    return reader(rd) if reader is not None else None

                result = await self._run(job)
        except ReadTimeout as exc:
            self._dirty = True
            rd = self._reader
            self._dirty_wait_s = rd.timeout_s
            raise InstrumentTimeoutError(
                self.resource, shown, rd.awaiting, rd.timeout_s, bytes(exc.partial)
            ) from None
        except (LinkDown, OpenFailed) as exc:
            self._open, self._lost = False, True
            raise ConnectionLostError(self.resource, shown, str(exc)) from None
        except BaseException:
            # Cancelled (or failed) mid-exchange: its reply may still be on the way.
            self._dirty = True
            self._dirty_wait_s = self._reader.timeout_s
            raise
        rd = self._reader
        if self.exchange_log is not None:  # a sensitive exchange as a length-only placeholder
            self.exchange_log.record(out, bytes(rd.received), sensitive=sensitive)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s: %r -> %r",
                self.resource,
                shown,
                b"<sensitive>" if sensitive else bytes(rd.received),
            )
        return result

    async def _async_job(
        self, out: bytes | memoryview, reader: Callable[[Reader], T] | None
    ) -> T | None:
        """The exchange on the event loop: run the reader on buffered bytes, await more."""
        io: Any = self._io
        if out:
            await io.awrite(out)
        if reader is None:
            return None
        timeout = self._reader.timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        if not io.buf:  # nothing can parse yet: wait for the reply before the first attempt
            await io.fill(deadline)
        while True:
            io.pos = 0
            self._reader = Reader(self._io, self.framing, timeout)
            try:
                result = reader(self._reader)
            except NeedMore:
                await io.fill(deadline)
                continue
            io.consume()
            return result

    async def write(self, command: str, *, sensitive: bool = False) -> None:
        await self.transaction(command, None, sensitive=sensitive)

    async def write_raw(self, payload: bytes | memoryview, *, sensitive: bool = False) -> None:
        await self.transaction(None, None, payload=payload, sensitive=sensitive)

    async def query(self, command: str, *, timeout_s: float | None = None) -> str:
        """Send ``command`` and return the one reply line, termination stripped."""
        result = await self.transaction(command, Reader.line, timeout_s=timeout_s)
        assert result is not None
        return result

    async def query_lines(self, command: str, count: int) -> list[str]:
        result = await self.transaction(command, lambda r: [r.line() for _ in range(count)])
        assert result is not None
        return result

    async def query_until(
        self, command: str, is_last: Callable[[str], bool], max_lines: int = 256
    ) -> list[str]:
        """Read reply lines until ``is_last(line)``; e.g. ``Done`` / ``Error!`` framing."""

        def read(r: Reader) -> list[str]:
            lines: list[str] = []
            while len(lines) < max_lines:
                lines.append(r.line())
                if is_last(lines[-1]):
                    return lines
            return lines

        result = await self.transaction(command, read)
        assert result is not None
        return result
