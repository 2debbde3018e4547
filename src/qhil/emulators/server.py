"""Serving emulators on the wire: TCP sockets and pseudo-terminals.

:class:`EmulatorHost` runs an asyncio loop in a background thread and serves
any number of emulators on it, so a blocking client (raw pyvisa, pyserial,
another lab framework) and qhil's async drivers alike can talk to them.
Serial emulators appear at a stable path (a symlink to the current pty), so a
client can reconnect after an injected drop, as after a USB replug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import tty
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from qhil.emulators.tempdirs import make_emulator_dir

log = logging.getLogger(__name__)

T = TypeVar("T")


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


class Servable(Protocol):
    """What an emulator offers the host: a connection handler and how to describe itself."""

    name: str
    transport: str

    async def serve(self, reader: asyncio.StreamReader, writer: ByteWriter) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class Endpoint:
    """Where an emulator can be reached."""

    name: str
    model: str
    transport: str  # "tcp" or "serial"
    resource: str  # VISA resource string
    address: str  # host:port, or the serial device path (for pyserial)

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "model": self.model,
            "transport": self.transport,
            "resource": self.resource,
            "address": self.address,
        }


class BlockReader(asyncio.StreamReader):
    """A :class:`asyncio.StreamReader` that can also receive straight into a caller's buffer.

    :meth:`readinto` fills a writable view from the socket with no copy in between (the
    protocol hands the view's rest to the transport's ``recv_into``): a 33500B pattern
    upload is two 16 MB definite-length blocks per BB84 block, and the stream path copies
    each byte ~4 times (recv bytes, the reader's buffer, ``read()``, the framer's buffer).
    Only a connection served by :class:`_BlockProtocol` fills it; other readers (ptys)
    are plain StreamReaders.
    """

    def __init__(self, limit: int = 1 << 16) -> None:
        super().__init__(limit=limit)
        self._target: memoryview | None = None
        self._got = 0

    async def readinto(self, view: memoryview) -> int:
        """Fill ``view`` (buffered bytes first); fewer bytes only at end of stream."""
        buffered: bytearray = self._buffer  # type: ignore[attr-defined]
        got = min(len(buffered), len(view))
        if got:
            view[:got] = buffered[:got]
            del buffered[:got]
        while got < len(view):
            exc = self.exception()
            if exc is not None:
                raise exc
            if self._eof:  # type: ignore[attr-defined]
                break
            self._target, self._got = view, got
            try:
                await self._wait_for_data("readinto")  # type: ignore[attr-defined]
            finally:
                got, self._target = self._got, None
        return got

    def _take(self, nbytes: int) -> None:
        """``nbytes`` arrived in the target view: wake the reader once it is full."""
        self._got += nbytes
        assert self._target is not None
        if self._got >= len(self._target):
            self._target = None
            self._wakeup_waiter()  # type: ignore[attr-defined]


class _BlockProtocol(asyncio.StreamReaderProtocol, asyncio.BufferedProtocol):
    """StreamReaderProtocol whose transport receives into buffers (``recv_into``): into the
    reader's :meth:`BlockReader.readinto` target while one is set, else into a scratch
    buffer fed to the reader as the stream path does (the same one copy ``recv`` made)."""

    def __init__(self, reader: BlockReader, cb: Callable[..., Any]) -> None:
        super().__init__(reader, cb)
        self._block_reader = reader
        self._scratch = memoryview(bytearray(1 << 18))

    def get_buffer(self, sizehint: int) -> memoryview:
        r = self._block_reader
        if r._target is not None:
            return r._target[r._got :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        r = self._block_reader
        if r._target is not None:
            r._take(nbytes)
        else:
            r.feed_data(self._scratch[:nbytes])


class _PtyWriter:
    """Writes to a pty master without blocking the loop: what the pty cannot take yet is
    kept and written when the fd becomes writable; :meth:`drain` waits until all is out.

    The master fd is non-blocking (the read pipe made it so), so a client that stops
    reading makes writes fail with EAGAIN; only this emulator's connection then waits.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self._pending = bytearray()
        self._waiters: list[asyncio.Future[None]] = []
        self._error: OSError | None = None
        self._watching = False

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._pending += data
        if not self._watching:
            self._flush()

    def _flush(self) -> None:
        try:
            while self._pending:
                n = os.write(self.fd, self._pending)
                del self._pending[:n]
        except BlockingIOError:
            pass
        except OSError as exc:
            self._fail(exc)
            return
        if self._pending and not self._watching:
            self._loop.add_writer(self.fd, self._flush)
            self._watching = True
        elif not self._pending:
            self._unwatch()
            self._wake()

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_writer(self.fd)
            self._watching = False

    def _fail(self, exc: OSError) -> None:
        self._error = exc
        self._pending.clear()
        self._unwatch()
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def drain(self) -> None:
        if self._pending and self._error is None:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Forget what is unsent and stop watching the fd (before the fd is closed)."""
        self._fail(ConnectionResetError("pty closed"))


class _PtyPort:
    """A pseudo-terminal whose slave side is exposed at a stable symlink."""

    def __init__(self, emulator: Servable, link: str) -> None:
        self.emulator = emulator
        self.link = link
        self.master = self.slave = -1
        self.task: asyncio.Task[None] | None = None
        self.transport: asyncio.ReadTransport | None = None
        self.writer: _PtyWriter | None = None

    async def start(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw mode: no echo or line editing by the kernel; echoing is the instrument's business.
        tty.setraw(self.slave)
        tty.setraw(self.master)
        tmp = self.link + ".new"
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        self.transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader),
            os.fdopen(self.master, "rb", buffering=0, closefd=False),
        )
        self.task = asyncio.create_task(self._serve(reader))

    async def _serve(self, reader: asyncio.StreamReader) -> None:
        writer = self.writer = _PtyWriter(self.master)
        try:
            await self.emulator.serve(reader, writer)
        except (ConnectionError, OSError) as exc:
            log.debug("%s: pty closed: %s", self.emulator.name, exc)
        # serve() returned: the emulator dropped the line. Replace the pty, as a replug would.
        await self.restart()

    async def restart(self) -> None:
        self.close_fds()
        await self.start()

    def close_fds(self) -> None:
        if self.writer is not None:  # stop watching the fd before it is closed
            self.writer.close()
            self.writer = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.close_fds()


class EmulatorHost:
    """Serve emulators from a background event loop.

    >>> with EmulatorHost() as host:                      # doctest: +SKIP
    ...     ep = host.add(TSL570Emulator())
    ...     pyvisa.ResourceManager("@py").open_resource(ep.resource)
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.endpoints: dict[str, Endpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._ptys: list[_PtyPort] = []
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._dir = ""

    # --- lifecycle ---

    def start(self) -> EmulatorHost:
        if self._loop is not None:
            return self
        self._dir = make_emulator_dir()  # marked ours; dead processes' ones removed
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="qhil-emulators", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close every server, connection and pty, end the loop thread, remove the pty links.

        Waits up to ``timeout_s`` for the connections to close and as long again for
        the thread; a loop that a handler keeps blocked is left to exit with the process.
        """
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        # The loop stops once shutdown is through, even if that happens only after we gave up.
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(loop.stop))
        try:
            done.result(timeout_s)
        except Exception as exc:
            log.warning("emulator host: shutdown incomplete: %r", exc)
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # a handler blocks the loop: closing it would raise
            log.warning("emulator host: loop thread still running; left to exit with the process")
        else:
            loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmulatorHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        for srv in self._servers:
            srv.close()
        # A connection may be waiting on anything (a reply delay, an acquisition), not
        # only on its socket: cancel each handler and let it finish (its finally blocks
        # close the connection and stop what it started).
        await _cancel_all(self._conn_tasks)
        for pty in self._ptys:
            await pty.stop()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1)
        # Whatever else the emulators left running (streams, producers) ends with the host.
        await _cancel_all(asyncio.all_tasks() - {asyncio.current_task()})

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the host's loop from another thread and wait for it."""
        assert self._loop is not None, "host not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call_soon(self, fn: Callable[[], Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    # --- serving ---

    def add(self, emulator: Servable, *, port: int = 0, transport: str | None = None) -> Endpoint:
        """Serve ``emulator`` on TCP (``port`` 0 = any free port) or on a pty."""
        if self._loop is None:
            self.start()
        kind = transport or emulator.transport
        if kind == "tcp":
            ep = self.call(self._add_tcp(emulator, port))
        elif kind == "serial":
            ep = self.call(self._add_pty(emulator))
        else:
            raise ValueError(f"unknown transport {kind!r}")
        self.endpoints[emulator.name] = ep
        return ep

    async def _add_tcp(self, emulator: Servable, port: int) -> Endpoint:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._conn_tasks.add(task)
            try:
                await emulator.serve(reader, writer)
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                self._conn_tasks.discard(task)
                writer.close()

        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: _BlockProtocol(BlockReader(), handle), self.host, port
        )
        self._servers.append(srv)
        bound = srv.sockets[0].getsockname()[1]
        d = emulator.describe()
        return Endpoint(
            emulator.name,
            d.get("model", ""),
            "tcp",
            f"TCPIP0::{self.host}::{bound}::SOCKET",
            f"{self.host}:{bound}",
        )

    async def _add_pty(self, emulator: Servable) -> Endpoint:
        link = os.path.join(self._dir, emulator.name)
        pty = _PtyPort(emulator, link)
        await pty.start()
        self._ptys.append(pty)
        d = emulator.describe()
        return Endpoint(emulator.name, d.get("model", ""), "serial", f"ASRL{link}::INSTR", link)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    tasks = set(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2)


async def run_forever(wait: Callable[[], Awaitable[None]] | None = None) -> None:
    """Block until cancelled (used by ``qhil emulate``)."""
    if wait is not None:
        await wait()
    else:
        await asyncio.Event().wait()
